"""The classroom: who may change the factory (the presenter) and who only watches (visitors)."""
