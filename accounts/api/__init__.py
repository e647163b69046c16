"""The HTTP API of the account service (FastAPI): ``meters serve``."""
