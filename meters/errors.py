"""Errors that the CLI reports as one clear line (exit status 1)."""


class MetersError(Exception):
    """A user-facing error: bad input, missing lake, broker not running …"""
