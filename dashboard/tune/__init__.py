"""The tuner: from a question (workload, load, goal, limits, budgets) to the fastest measured settings.

question.py   what the user asks (goal, limit, load, budgets), parsed from the CLI's words
intervals.py  distribution-free intervals of percentiles and the rule "better = intervals apart"
space.py      the search space from the flag catalog, pruned before any start; request-side options
search.py     the Optuna study: restart-aware order, early stops, confirmation, resume, history rows
verdict.py    the explanation in Vietnamese and English, generated from the numbers
"""
