"""The account service: a transactional account store (SQLite or PostgreSQL) and the HTTP API that
payment channels talk to (docs/accounts.md). A pipeline stage beside ingest/ and billing/: it imports
meters/ only."""
