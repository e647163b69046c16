"""Errors of the account service; each is a :class:`MetersError` (one clear line in the CLI) and maps
to one HTTP status in the API."""
from meters.errors import MetersError


class NotFound(MetersError):
    """An unknown user number, channel … (HTTP 404)."""


class Conflict(MetersError):
    """A payment reference already used with another body, a duplicate name (HTTP 409)."""


class Invalid(MetersError):
    """A bad amount, date or setting (HTTP 422)."""


STATUS = {NotFound: 404, Conflict: 409, Invalid: 422}   # other MetersError: 400


def refusal(e: MetersError) -> tuple[int, dict]:
    """(HTTP status, JSON) of a refusal: ``{"detail": "<one line>"}``."""
    return STATUS.get(type(e), 400), {"detail": str(e)}
