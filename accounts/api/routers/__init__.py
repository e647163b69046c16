"""One router per resource: accounts, payments, operator endpoints."""
