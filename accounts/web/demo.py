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
          notify: dict | None = None) -> None:
    """Serve the API and the pages until interrupted (Ctrl-C); logs as text, or one JSON object per line
    (``log_format="json"``: start, stop and errors; no access log)."""
    import uvicorn

    from meters.logs import dict_config

    from ..api.app import served_app

    level = "INFO" if log_format == "json" else "WARNING"
    uvicorn.run(served_app(store, web_channel, notify), host=host, port=port, log_config=dict_config(log_format, level),
                log_level=level.lower(), access_log=False, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                timeout_graceful_shutdown=5)
