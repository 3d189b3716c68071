"""Spending: cost estimates, budgets, the ledger and submit claims (plain Python, no Prefect)."""
