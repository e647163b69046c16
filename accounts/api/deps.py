"""Dependencies of the API routes: the store, the caller (API key + optional request signature) and
role checks."""
from __future__ import annotations

import time

from fastapi import Depends, HTTPException, Request

from ..channels import Principal, authenticate, check_signature
from ..errors import Invalid
from ..store import Store


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def caller(request: Request, store: Store = Depends(get_store)) -> Principal:
    """The channel or operator of ``Authorization: Bearer <key>``; its signature checked when it has a
    signing secret (401 otherwise)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, "missing API key: send Authorization: Bearer <key>",
                            headers={"WWW-Authenticate": "Bearer"})
    who = authenticate(store, key.strip())
    if who is None:
        raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    if who.signing_secret:
        try:
            check_signature(who.signing_secret, request.headers.get("x-meters-timestamp"),
                            request.headers.get("x-meters-signature"), await request.body(), time.time())
        except Invalid as e:
            raise HTTPException(401, str(e)) from None
    request.state.caller = who.name
    return who


async def operator(who: Principal = Depends(caller)) -> Principal:
    """Only operators (403 for a channel)."""
    if who.role != "operator":
        raise HTTPException(403, f"{who.name} is a {who.role}; this needs an operator key")
    return who
