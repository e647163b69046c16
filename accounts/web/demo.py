"""What ``meters demo`` sets up for the pages: the store imported from the demo lake, the resident
page's channel, and an operator with a fresh console password; then it serves them on a free
loopback port until Ctrl-C."""
from __future__ import annotations

import secrets

from meters.lake import Lake

from ..channels import add_channel
from ..passwords import set_password
from ..registry import import_from_lake
from ..store import Store, open_store
from . import DEFAULT_CHANNEL

OPERATOR = "admin"


def configure(lake: Lake) -> tuple[Store, dict]:
    """Open (and fill) the lake's embedded store; create channel ``web`` and operator ``admin`` with a
    random password. Returns the store and ``{"channel", "operator", "password"}``."""
    store = open_store(lake)
    import_from_lake(store, changed_by="demo")
    add_channel(store, DEFAULT_CHANNEL, "channel")
    add_channel(store, OPERATOR, "operator")
    password = secrets.token_urlsafe(12)
    set_password(store, OPERATOR, password)
    return store, {"channel": DEFAULT_CHANNEL, "operator": OPERATOR, "password": password}


def serve(store: Store, host: str = "127.0.0.1", port: int = 8080, *, web_channel: str | None = None,
          tls_cert: str | None = None, tls_key: str | None = None, log_format: str = "text",
          notify: dict | None = None, workers: int = 1) -> None:
    """Serve the API and the pages until interrupted (Ctrl-C, SIGTERM); logs as text, or one JSON object
    per line (``log_format="json"``: start, stop and errors; no access log). ``workers`` > 1: that many
    server processes on one socket (:mod:`accounts.workers`), the alert dispatcher (``notify``) in
    worker 0 only."""
    import uvicorn

    from ..api.app import served_app
    from ..api.protocol import OneWriteHttpTools

    # a response's head and body in one write; no access log, no X-Forwarded-* rewriting (the server
    # is not set up behind a proxy) and no "server: uvicorn" header: per-request work nothing reads
    options = dict(host=host, port=port, log_level=_level(log_format).lower(), access_log=False,
                   http=OneWriteHttpTools, proxy_headers=False, server_header=False,
                   ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_graceful_shutdown=5)
    if workers == 1:
        uvicorn.run(served_app(store, web_channel, notify), log_config=_log_config(log_format, None), **options)
        return
    from ..workers import supervise

    sock = uvicorn.Config(None, **options).bind_socket()
    store.engine.dispose()   # no connection crosses the fork: each worker opens its own
    if store.checkpointer is not None:   # nor a checkpoint holding the writer lock: each worker runs its own
        store.checkpointer.close()

    def serve_one(slot, sock):
        store.engine.dispose(close=False)
        _label_records(slot)
        app = served_app(store, web_channel, notify if slot == 0 else None)
        uvicorn.Server(uvicorn.Config(app, log_config=_log_config(log_format, slot), **options)).run(sockets=[sock])

    supervise(serve_one, sock, workers)
    sock.close()


def _level(log_format: str) -> str:
    return "INFO" if log_format == "json" else "WARNING"


def _log_config(log_format: str, slot: int | None) -> dict:
    """uvicorn's logging, its text lines naming the worker (``slot``)."""
    from meters.logs import TEXT_FORMAT, dict_config

    cfg = dict_config(log_format, _level(log_format))
    if slot is not None and log_format == "text":
        cfg["formatters"]["main"]["format"] = TEXT_FORMAT.replace("%(message)s", f"worker {slot}: %(message)s")
    return cfg


def _label_records(slot: int) -> None:
    """Every log record of this process carries ``worker: "serve-<slot>"`` (a key of JSON lines)."""
    import logging

    make = logging.getLogRecordFactory()

    def labelled(*args, **kwargs):
        record = make(*args, **kwargs)
        record.worker = f"serve-{slot}"
        return record

    logging.setLogRecordFactory(labelled)
