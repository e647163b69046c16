"""The hot routes' handwritten body check never accepts what the FastAPI route's model refuses, and
accepts the ordinary payment bodies with the same values (what it passes on gets the model's answer)."""
import json

import pytest
from pydantic import ValidationError

from accounts.api.fastpath import payment_fields
from accounts.api.models import PaymentIn

OK = {"user_number": "1003", "amount": "25.50", "channel_ref": "ref-1"}
BODIES = [OK, {**OK, "payer": "儿子"}, {**OK, "payer": None}, {**OK, "amount": 10}, {**OK, "amount": 10.5},
          {**OK, "amount": True}, {**OK, "amount": None}, {**OK, "amount": []}, {**OK, "amount": {"v": 1}},
          {**OK, "user_number": ""}, {**OK, "user_number": "1" * 64}, {**OK, "user_number": "1" * 65},
          {**OK, "user_number": 1003}, {**OK, "channel_ref": ""}, {**OK, "channel_ref": "x" * 128},
          {**OK, "channel_ref": "x" * 129}, {**OK, "channel_ref": 7}, {**OK, "payer": ""}, {**OK, "payer": "p" * 200},
          {**OK, "payer": "p" * 201}, {**OK, "payer": 5}, {**OK, "extra": 1}, {"user_number": "1003", "amount": 1},
          {"amount": 1, "channel_ref": "r"}, [], [OK], "text", 5, None]
RAW = [json.dumps(b).encode() for b in BODIES] + [b"{not json", b"", b"{\"user_number\": \"1\"", b"\xff"]


@pytest.mark.parametrize("raw", RAW, ids=range(len(RAW)))
def test_the_fast_check_accepts_only_what_the_model_accepts(raw):
    got = payment_fields(raw)
    try:
        model = PaymentIn.model_validate_json(raw).model_dump()
    except ValidationError:
        assert got is None
        return
    if got is not None:
        assert {k: got.get(k) for k in model} == model and type(got["amount"]) is type(model["amount"])


def test_the_ordinary_bodies_take_the_fast_path():
    for body in (OK, {**OK, "payer": "儿子"}, {**OK, "amount": 10}, {**OK, "amount": 10.5}, {**OK, "payer": None}):
        assert payment_fields(json.dumps(body).encode()) == body


def test_the_fast_path_answers_as_the_routes_do(tmp_path):
    """Through the app: payments and account reads on the fast path, the same answers as the routes
    give for what it passes on (a repeated Authorization header counts by its first value)."""
    from fastapi.testclient import TestClient

    from accounts.adopt import import_from_lake
    from accounts.api.app import served_app
    from accounts.channels import add_channel
    from accounts.store import open_store
    from accounts_support import make_lake

    store = open_store(make_lake(tmp_path / "lake"))
    import_from_lake(store, changed_by="test")
    key = add_channel(store, "wechat")["key"]
    h = {"Authorization": f"Bearer {key}"}
    try:
        with TestClient(served_app(store)) as c:
            r = c.post("/v1/payments", json=OK | {"user_number": "1001"}, headers=h)
            assert r.status_code == 201 and r.json()["status"] == "applied"
            again = c.post("/v1/payments", content=json.dumps(OK | {"user_number": "1001"}),
                           headers=h | {"Content-Type": "application/json; charset=utf-8"})
            assert again.status_code == 200 and again.json() == r.json() | {"status": "duplicate"}
            assert c.post("/v1/payments", json=OK | {"user_number": "1002"}, headers=h).status_code == 409
            assert c.post("/v1/payments", json=OK | {"channel_ref": "x", "user_number": "9"}, headers=h).json() == {
                "detail": "unknown user number '9'"}
            assert c.post("/v1/payments", json=OK | {"amount": "1.005", "channel_ref": "y"}, headers=h).status_code == 422
            a = c.get("/v1/accounts/1001", headers=h)
            assert a.status_code == 200 and a.json()["balance"] == r.json()["balance"]
            assert c.get("/v1/accounts/9", headers=h).status_code == 404
            twice = [("authorization", "Bearer mk_unknown"), ("authorization", f"Bearer {key}")]
            assert c.get("/v1/accounts/1001", headers=twice).status_code == 401
            assert c.get("/v1/accounts/1001").status_code == 401
    finally:
        store.close()


def test_a_response_head_waits_for_its_body_and_leaves_in_one_write():
    """accounts.api.protocol: a head and the body behind it in one write; a head alone at the event
    loop's next turn; a close writes what is held first; the bytes and their order unchanged."""
    import asyncio

    from accounts.api.protocol import OneWrite

    class Transport:
        def __init__(self):
            self.writes, self.closed = [], False

        def write(self, data):
            assert not self.closed
            self.writes.append(bytes(data))

        def close(self):
            self.closed = True

        def get_write_buffer_size(self):
            return 0

    async def main():
        t = Transport()
        w = OneWrite(t, asyncio.get_running_loop())
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert t.writes == [] and w.get_write_buffer_size() > 0
        w.write(b"{}")
        assert t.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        w.write(b"HTTP/1.1 204 No Content\r\n\r\n")              # no body follows
        await asyncio.sleep(0)
        assert t.writes[1:] == [b"HTTP/1.1 204 No Content\r\n\r\n"]
        w.write(b"chunk")                                           # not a head: at once
        w.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        w.close()
        assert t.writes[2:] == [b"chunk", b"HTTP/1.1 400 Bad Request\r\n\r\n"] and t.closed
        await asyncio.sleep(0)                                      # the turn after: nothing more
        assert len(t.writes) == 4

    asyncio.run(main())
