"""The memory predictor lives in dashboard.engine.predict (the carousel budgets memory with it, and the
engine never imports measure). This name stays so older imports keep working: it is the same module."""

import sys

from dashboard.engine import predict as _predict

sys.modules[__name__] = _predict
