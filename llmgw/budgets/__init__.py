"""Monthly budgets per key, per ``x-budget-key`` and global (SPEC §11): the ``front``
(admission, settlement) over the database (``store/budgets.py``) or, with
``limits.backend: redis``, Redis (``redis``); ``scopes`` says which budgets apply and
``alerts`` fires the alert fractions once per scope and month."""
