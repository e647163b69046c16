"""The Standard Webhooks signature scheme (https://www.standardwebhooks.com, the one Svix uses), as
alert deliveries are signed and receivers verify them.

A secret is ``whsec_`` + base64 of 24-64 random bytes (the bytes are the HMAC key). A message carries
the headers ``webhook-id`` (the alert id: the idempotency key), ``webhook-timestamp`` (Unix seconds)
and ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from functools import lru_cache

from .errors import MetersError

PREFIX = "whsec_"
TOLERANCE_S = 300


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@lru_cache(maxsize=256)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (kept: every message of a channel needs it)."""
    body = secret[len(PREFIX):] if isinstance(secret, str) and secret.startswith(PREFIX) else None
    try:
        key = base64.b64decode(body or "", validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if body is None or not 24 <= len(key) <= 64:
        raise MetersError("a webhook secret is whsec_ followed by the base64 of 24 to 64 random bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of a message."""
    mac = hmac.digest(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, "sha256")   # one-shot, in C
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, msg_id, timestamp, body)}


def verify(secret: str, headers: dict, body: bytes, now: float) -> str:
    """The message id when ``headers`` carry a valid signature of ``body`` made within
    :data:`TOLERANCE_S` of ``now``; raise :class:`MetersError` otherwise."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        raise MetersError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        t = int(ts)
    except ValueError:
        raise MetersError(f"webhook-timestamp {ts!r} is not Unix seconds") from None
    if abs(now - t) > TOLERANCE_S:
        raise MetersError("webhook-timestamp is too far from now")
    want = signature(secret, msg_id, t, body).split(",", 1)[1]
    for s in sigs.split():
        version, _, sig = s.partition(",")
        if version == "v1" and hmac.compare_digest(sig, want):
            return msg_id
    raise MetersError("no webhook-signature matches the message")
