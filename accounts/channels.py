"""Channels and operators: API keys (stored as SHA-256 of a 256-bit random key, shown once), roles
and optional HMAC-SHA256 request signing."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from meters import webhooks
from meters.errors import MetersError

from .errors import Conflict, Invalid, NotFound
from .schema import channels, counters
from .store import Store, utcnow

ROLES = ("channel", "operator")
KEY_PREFIX = "mk_"
SIGNATURE_WINDOW_S = 300
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a channel or operator, with its signing secret (None: requests unsigned)."""

    name: str
    role: str
    signing_secret: str | None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def add_channel(store: Store, name: str, role: str = "channel", *, signing: bool = False, **target) -> dict:
    """Create a channel or operator; returns ``{"name", "role", "key"}`` (plus ``"signing_secret"``
    with ``signing``, and the delivery target of ``target``: see :func:`delivery_target`) — the only
    time the key is shown."""
    if not NAME.match(name or ""):
        raise Invalid(f"channel name {name!r}: letters, digits, '_', '.', '-' (at most 64)")
    if role not in ROLES:
        raise Invalid(f"role {role!r} must be one of {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    secret = secrets.token_hex(32) if signing else None
    deliver = delivery_target(**target)
    with store.write() as conn:
        if conn.execute(sa.select(channels.c.name).where(channels.c.name == name)).first():
            raise Conflict(f"channel {name!r} exists already")
        conn.execute(sa.insert(channels).values(name=name, role=role, key_sha256=key_hash(key),
                                                signing_secret=secret, created_at=utcnow(), **deliver))
        _changed(store, conn)
    out = {"name": name, "role": role, "key": key}
    if secret:
        out["signing_secret"] = secret
    return out | _shown_target(deliver)


def delivery_target(webhook: str | None = None, secret: str | None = None, mqtt: bool = False,
                    apprise: str | None = None) -> dict:
    """The channel columns of an alert delivery target: a webhook (``secret``: its Standard Webhooks
    ``whsec_…`` signing secret, made up when not given), the managed MQTT broker, or an apprise URL."""
    if sum(map(bool, (webhook, mqtt, apprise))) > 1:
        raise Invalid("a channel delivers to one target: give one of --webhook, --mqtt, --apprise")
    if secret and not webhook:
        raise Invalid("--secret signs webhook deliveries: give --webhook URL too")
    if webhook:
        if not re.match(r"^https?://[^\s/]+", webhook) or len(webhook) > 500:
            raise Invalid(f"webhook URL {webhook!r} must be an http:// or https:// URL")
        secret = secret or webhooks.new_secret()
        try:
            webhooks.secret_key(secret)
        except MetersError as e:
            raise Invalid(f"--secret: {e}") from None
    if apprise and ("://" not in apprise or len(apprise) > 500):
        raise Invalid(f"apprise URL {apprise!r} must be a service URL such as mailto://user:pass@host")
    return {"webhook_url": webhook or None, "webhook_secret": secret if webhook else None, "mqtt": bool(mqtt),
            "apprise_url": apprise or None}


def _shown_target(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def set_target(store: Store, name: str, **target) -> dict:
    """Set (or, with no target, clear) the alert delivery target of channel ``name``."""
    deliver = delivery_target(**target)
    with store.write() as conn:
        if not conn.execute(sa.update(channels).where(channels.c.name == name).values(**deliver)).rowcount:
            raise NotFound(f"no channel {name!r}")
    return {"name": name} | _shown_target(deliver)


def rotate_key(store: Store, name: str) -> dict:
    """Give channel ``name`` a new API key (returned, shown once): the old key is refused from now on —
    by this process at once, by every other server process of the store within :data:`KEY_RECHECK_S`."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with store.write() as conn:
        if not conn.execute(sa.update(channels).where(channels.c.name == name).values(key_sha256=key_hash(key))).rowcount:
            raise NotFound(f"no channel {name!r}")
        _changed(store, conn)
    return {"name": name, "key": key}


KEY_RECHECK_S = 1.0   # how often a server process reads the channels' version (how soon it sees a change)
_VERSION = sa.select(counters.c.value).where(counters.c.name == "channels")


def _changed(store: Store, conn) -> None:
    """Count up the channels' version (``counters`` row ``channels``): every process drops its keys."""
    conn.execute(sa.update(counters).where(counters.c.name == "channels").values(value=counters.c.value + 1))
    store.cache.pop("api_keys_version", None)


def authenticate(store: Store, key: str) -> Principal | None:
    """The channel whose key is ``key`` (None: no such key). Keys are 256-bit random, so their
    SHA-256 is the lookup (no slow KDF). A process keeps the keys it has seen (no hash per request)
    until the channels' version in the store changes, which it reads at most every
    :data:`KEY_RECHECK_S` seconds."""
    known = store.cache.setdefault("api_keys", {})     # key → its channel (the keys seen: no hash per request)
    now = time.monotonic()
    seen = store.cache.get("api_keys_version")
    if seen is None or now - seen[1] >= KEY_RECHECK_S:
        with store.read() as conn:
            version = conn.execute(_VERSION).scalar()
        if seen is None or version != seen[0]:
            known.clear()
        store.cache["api_keys_version"] = (version, now)
    who = known.get(key)
    if who is not None:
        return who
    h = key_hash(key)
    with store.read() as conn:
        r = conn.execute(sa.select(channels).where(channels.c.key_sha256 == h)).first()
    if r is None:
        return None
    who = known[key] = Principal(r.name, r.role, r.signing_secret)
    return who


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The request signature: hex HMAC-SHA256 of ``<timestamp>.<body>`` under the channel's secret."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_signature(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise :class:`Invalid` unless ``signature`` signs ``timestamp`` + ``body`` and the timestamp
    (Unix seconds) is within 5 minutes of ``now``."""
    if not timestamp or not signature:
        raise Invalid("this channel signs its requests: X-Meters-Timestamp and X-Meters-Signature are required")
    try:
        ts = int(timestamp)
    except ValueError:
        raise Invalid(f"X-Meters-Timestamp {timestamp!r} is not Unix seconds") from None
    if abs(now - ts) > SIGNATURE_WINDOW_S:
        raise Invalid(f"X-Meters-Timestamp is more than {SIGNATURE_WINDOW_S} s from the server's clock")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.lower()):
        raise Invalid("X-Meters-Signature does not match the request")
