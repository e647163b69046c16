"""meters — shared domain: schemas, lake, broker, tariffs, accounts, config and the CLI."""

__version__ = "0.1.0"
