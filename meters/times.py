"""Dates and instants as people type them (options, arguments): the one set of parsers every command
and library entry point uses. Errors are :class:`MetersError` lines naming the option."""
from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import MetersError


def parse_date(text: str, name: str = "date") -> dt.date:
    """``YYYY-MM-DD`` → date."""
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise MetersError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None


def parse_instant(value: str | dt.datetime, tz: dt.tzinfo | None = None, name: str = "time") -> dt.datetime:
    """An ISO 8601 date or date-time (or a datetime) → the instant, in UTC. Without an offset it is
    local time in ``tz``; without ``tz`` an offset is required."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise MetersError(f"{name} {value!r} is not an ISO 8601 date or time") from None
    elif not isinstance(value, dt.datetime):
        raise MetersError(f"{name}: give an instant (datetime with tz), not {value!r}")
    if value.tzinfo is None:
        if tz is None:
            raise MetersError(f"{name} {value.isoformat()} has no UTC offset")
        value = value.replace(tzinfo=tz)
    return value.astimezone(dt.timezone.utc)


def parse_duration(text: str, name: str = "interval") -> int:
    """``15m`` / ``30min`` / ``1h`` / ``1d`` / ``900s`` / ``900`` → seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*(min|[smhd])?\s*", str(text).lower())
    if not m:
        raise MetersError(f"{name} {text!r} is not a duration like 15m, 30min, 1h or 900s")
    return int(m.group(1)) * {None: 1, "s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def local_midnight(tz: dt.tzinfo) -> dt.datetime:
    """Today's midnight in ``tz``."""
    return dt.datetime.combine(dt.datetime.now(tz).date(), dt.time(), tz)


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone name → the zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MetersError(f"unknown time zone {name!r}") from None
