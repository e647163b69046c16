"""Alembic migrations of the account store, run programmatically (accounts.store.migrate)."""
