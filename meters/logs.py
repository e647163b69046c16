"""Logging of the services: plain lines for a terminal, or one JSON object per line (``--log-format
json``) for journald / Loki / Elasticsearch::

    {"ts": "2026-12-03T04:40:00.123+00:00", "level": "WARNING", "logger": "meters.ingest",
     "message": "…", "worker": "meters-ingest-0", "event": "disconnected"}

Keys given as ``extra={...}`` to a log call are added to the object.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

import click

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_RECORD_KEYS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

log_format_option = click.option("--log-format", type=click.Choice(FORMATS), default="text", show_default=True,
                                 help="Log lines as text, or one JSON object per line (for the journal "
                                      "or a log collector).")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, message and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        out.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_KEYS and not k.startswith("_")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: int = logging.INFO, fmt: str = "text") -> None:
    """Configure the root logger of a service process (stderr) for ``fmt`` (``text`` or ``json``).
    Like :func:`logging.basicConfig`, it leaves logging alone that someone else (a test harness, an
    embedding program) configured."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    root = logging.getLogger()
    if any(not getattr(h, "_meters", False) for h in root.handlers):
        return
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler._meters = True
    root.addHandler(handler)
    root.setLevel(level)


def dict_config(fmt: str = "text", level: str = "INFO") -> dict:
    """A :func:`logging.config.dictConfig` for servers that take one (uvicorn's ``log_config``): the
    ``meters`` and ``uvicorn`` loggers to stderr in ``fmt``."""
    formatter = {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["main"], "level": level, "propagate": False}
               for name in ("meters", "uvicorn", "uvicorn.access")}
    loggers["uvicorn.error"] = {"level": level}
    return {"version": 1, "disable_existing_loggers": False, "formatters": {"main": formatter},
            "handlers": {"main": handler}, "loggers": loggers}
