"""Errors of the account service; each is a :class:`MetersError` (one clear line in the CLI) and maps
to one HTTP status in the API."""
from meters.errors import MetersError


class NotFound(MetersError):
    """An unknown user number, channel … (HTTP 404)."""


class Conflict(MetersError):
    """A payment reference already used with another body, a duplicate name (HTTP 409)."""


class Invalid(MetersError):
    """A bad amount, date or setting (HTTP 422)."""
