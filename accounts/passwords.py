"""Operators' console passwords: salted scrypt hashes in ``channels.password_hash`` (never the
password), checked in constant time."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import sqlalchemy as sa

from .errors import Invalid, NotFound
from .schema import channels
from .store import Store

SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MIN_LENGTH = 10
MAX_LENGTH = 200


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$<salt>$<hash>`` (base64) of ``password``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches the stored hash (False for no hash or a malformed one)."""
    try:
        kind, n, r, p, salt, digest = (stored or "").split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def set_password(store: Store, name: str, password: str) -> dict:
    """Set operator ``name``'s console password (at least :data:`MIN_LENGTH` characters)."""
    if not isinstance(password, str) or not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Invalid(f"a console password has {MIN_LENGTH} to {MAX_LENGTH} characters")
    with store.write() as conn:
        role = conn.execute(sa.select(channels.c.role).where(channels.c.name == name)).scalar()
        if role is None:
            raise NotFound(f"no operator {name!r} (create it with meters channels add {name} --role operator)")
        if role != "operator":
            raise Invalid(f"{name} is a {role}; only operators sign in to the console")
        conn.execute(sa.update(channels).where(channels.c.name == name).values(password_hash=hash_password(password)))
    return {"name": name, "password": "set"}


def check_login(store: Store, name: str, password: str) -> bool:
    """True when ``name`` is an operator whose password is ``password``."""
    with store.read() as conn:
        r = conn.execute(sa.select(channels.c.role, channels.c.password_hash).where(channels.c.name == name)).first()
    if r is None or r.role != "operator":
        verify_password(password, hash_password("-"))  # the same work for unknown names
        return False
    return verify_password(password, r.password_hash)
