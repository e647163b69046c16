"""The account API over real HTTP (``meters serve`` on a free loopback port), on SQLite and PostgreSQL:
status codes, idempotency under 50 concurrent clients, roles, request signing, settings, lake outputs,
and kill -9 of the server during a stream of payments."""
from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from decimal import Decimal
from types import SimpleNamespace

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa
from accounts_support import USERS, Server, db_url, make_lake, ref_for, request_bytes, send_all  # noqa: F401  (db_url: fixture)

from accounts.channels import add_channel, sign
from accounts.registry import import_from_lake
from accounts.schema import accounts, outbox, payments
from accounts.status import set_name
from accounts.store import open_store


def start_service(tmp, db):
    lake = make_lake(tmp / "lake")
    store = open_store(lake, db)
    import_from_lake(store, changed_by="test")
    set_name(store, "1001", "张三明")
    keys = {n: add_channel(store, n, role, signing=signing)
            for n, role, signing in (("wechat", "channel", False), ("ops", "operator", False),
                                     ("bank", "channel", True))}
    server = Server(tmp / "lake", db).start()
    return SimpleNamespace(lake=lake, store=store, keys=keys, server=server, url=server.url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def svc(request, tmp_path_factory):
    db = None if request.param == "sqlite" else request.getfixturevalue("pg_cluster").create_database()
    s = start_service(tmp_path_factory.mktemp("svc"), db)
    yield s
    s.server.stop()
    s.store.close()


def auth(svc, name: str) -> dict:
    return {"Authorization": f"Bearer {svc.keys[name]['key']}"}


def n_payments(store) -> int:
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one()


def test_openapi_and_docs(svc):
    assert httpx.get(svc.url + "/docs").status_code == 200
    spec = httpx.get(svc.url + "/openapi.json").json()
    assert {"/v1/payments", "/v1/accounts/{user_number}", "/v1/runs"} <= set(spec["paths"])


def test_get_account_shows_masked_name_balance_and_status(svc):
    r = httpx.get(svc.url + "/v1/accounts/1001", headers=auth(svc, "wechat"))
    assert r.status_code == 200
    a = r.json()
    assert (a["name"], a["utility"], a["mode"], a["last_settled_day"]) == ("张*明", "electricity", "prepaid", None)
    assert a["status"] in ("ok", "low") and Decimal(a["balance"]) >= Decimal("50.00")
    assert httpx.get(svc.url + "/v1/accounts/0000", headers=auth(svc, "wechat")).status_code == 404


def test_payment_status_codes_and_nothing_changed_by_bad_requests(svc):
    h = auth(svc, "wechat")
    post = lambda body, **kw: httpx.post(svc.url + "/v1/payments", json=body, headers=h, **kw)  # noqa: E731
    before = httpx.get(svc.url + "/v1/accounts/1003", headers=h).json()["balance"]
    body = {"user_number": "1003", "amount": "25.50", "channel_ref": "codes-1", "payer": "儿子"}
    r = post(body)
    assert r.status_code == 201 and r.json()["status"] == "applied"
    assert Decimal(r.json()["balance"]) == Decimal(before) + Decimal("25.50")
    r2 = post(body)
    assert r2.status_code == 200 and r2.json() == {**r.json(), "status": "duplicate"}
    assert post({**body, "amount": 26}).status_code == 409
    assert "already used" in post({**body, "user_number": "1001"}).json()["detail"]
    assert post({**body, "user_number": "9999", "channel_ref": "codes-2"}).status_code == 404
    n = n_payments(svc.store)
    for amount in (-5, 0, "0", "1.005", 1.005, "1e30", 1e300, "ten", True, None, [], "NaN"):
        r = post({**body, "amount": amount, "channel_ref": "codes-bad"})
        assert r.status_code == 422, (amount, r.text)
        assert r.json()["detail"]
    for raw, status in ((b"{not json", 422), (b"[]", 422), (b'{"user_number": "1003"}', 422),
                        (json.dumps({**body, "channel_ref": "x", "extra": 1}).encode(), 422),
                        (json.dumps({**body, "channel_ref": "x" * 129}).encode(), 422),
                        (json.dumps({**body, "payer": "p" * 100_000}).encode(), 413)):
        r = httpx.post(svc.url + "/v1/payments", content=raw, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == status, (raw[:40], r.text)
        assert r.json()["detail"]

    def chunks():
        for _ in range(100):
            yield b"x" * 1000

    r = httpx.post(svc.url + "/v1/payments", content=chunks(), headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert n_payments(svc.store) == n
    assert httpx.get(svc.url + "/v1/accounts/1003", headers=h).json()["balance"] == r2.json()["balance"]


def test_roles_decide_what_a_key_may_do(svc):
    ch, op = auth(svc, "wechat"), auth(svc, "ops")
    for path in ("/v1/runs", "/v1/accounts", "/metrics"):
        assert httpx.get(svc.url + path, headers=ch).status_code == 403, path
        assert httpx.get(svc.url + path, headers=op).status_code == 200, path
    assert [a["user_number"] for a in httpx.get(svc.url + "/v1/accounts", headers=op).json()["accounts"]] == list(USERS)
    assert httpx.get(svc.url + "/v1/accounts/1001").status_code == 401
    assert httpx.get(svc.url + "/v1/accounts/1001", headers={"Authorization": "Bearer mk_wrong"}).status_code == 401
    assert httpx.get(svc.url + "/v1/accounts/1001", headers={"Authorization": svc.keys["wechat"]["key"]}).status_code == 401
    assert "meters_payments_total" in httpx.get(svc.url + "/metrics", headers=op).text
    assert httpx.get(svc.url + "/healthz").json()["status"] == "ok"


def test_a_signing_channel_must_sign(svc):
    secret = svc.keys["bank"]["signing_secret"]
    body = json.dumps({"user_number": "1002", "amount": 10, "channel_ref": "bank-1"}).encode()
    h = {**auth(svc, "bank"), "Content-Type": "application/json"}
    url = svc.url + "/v1/payments"
    n = n_payments(svc.store)
    r = httpx.post(url, content=body, headers=h)
    assert r.status_code == 401 and "signs its requests" in r.json()["detail"]
    ts = str(int(time.time()))
    stale = str(int(time.time()) - 301)
    assert httpx.post(url, content=body, headers={**h, "X-Meters-Timestamp": stale,
                                                  "X-Meters-Signature": sign(secret, stale, body)}).status_code == 401
    tampered = body.replace(b"10", b"99")
    assert httpx.post(url, content=tampered, headers={**h, "X-Meters-Timestamp": ts,
                                                      "X-Meters-Signature": sign(secret, ts, body)}).status_code == 401
    assert n_payments(svc.store) == n
    r = httpx.post(url, content=body, headers={**h, "X-Meters-Timestamp": ts, "X-Meters-Signature": sign(secret, ts, body)})
    assert r.status_code == 201 and r.json()["channel"] == "bank"


def test_settings_endpoints(svc):
    h, u = auth(svc, "wechat"), svc.url + "/v1/accounts/1002"
    r = httpx.put(u + "/auto-topup", json={"below": "15", "amount": 200}, headers=h)
    assert r.status_code == 200 and r.json()["settings"]["auto_topup"] == {"below": "15.00", "amount": "200.00"}
    assert httpx.put(u + "/auto-topup", json={"below": "15", "amount": 0}, headers=h).status_code == 422
    assert httpx.put(u + "/warnings", json={"levels": ["50", "25.5"]}, headers=h).json()["settings"]["warnings"] == \
        ["50.00", "25.50"]
    assert httpx.put(u + "/warnings", json={"levels": ["5", "25.5"]}, headers=h).status_code == 422
    r = httpx.post(u + "/contacts", json={"recipient": "+8613700000000", "relation": "daughter", "language": "en"},
                   headers=h)
    assert {"recipient": "+86*******0000", "relation": "daughter", "language": "en"} in r.json()["contacts"]
    full = httpx.get(u, headers=auth(svc, "ops")).json()["contacts"]   # operators see recipients in full
    assert {"recipient": "+8613700000000", "relation": "daughter", "language": "en"} in full
    assert httpx.delete(u + "/contacts", params={"recipient": "+8613700000000"}, headers=h).status_code == 200
    assert httpx.delete(u + "/contacts", params={"recipient": "+8613700000000"}, headers=h).status_code == 404
    assert httpx.delete(u + "/auto-topup", headers=h).json()["settings"]["auto_topup"] is None
    a = httpx.get(u, headers=h).json()
    assert a["settings"]["auto_topup"] is None and a["settings"]["warnings"] == ["50.00", "25.50"]
    assert [c["recipient"] for c in a["contacts"]] == ["+86*******0002", "+86*******0003"]
    assert httpx.put(svc.url + "/v1/accounts/0/warnings", json={"levels": [1, 1]}, headers=h).status_code == 404


def test_bills_usage_ledger_alerts_and_runs_come_from_the_lake(svc):
    lake, h = svc.lake, auth(svc, "wechat")
    ts = dt.datetime(2026, 11, 20, 16, tzinfo=dt.timezone.utc)
    money = pa.decimal128(18, 2)
    for day, q in (("2026-11-20", 3.5), ("2026-11-21", 4.0)):
        lake.write("charges", pa.table({"account_id": ["1001"], "quantity": [q],
                                        "amount": pa.array([Decimal("1.75")], money)}), day)
    lake.write("ledger", pa.table({"account_id": ["1001"], "ts": pa.array([ts], pa.timestamp("ms", tz="UTC")),
                                   "kind": ["charge"], "amount": pa.array([Decimal("-1.75")], money),
                                   "balance_after": pa.array([Decimal("48.25")], money), "ref": ["2026-11-20"]}), "2026-11")
    lake.write("alerts", pa.table({"account_id": ["1001"], "ts": pa.array([ts], pa.timestamp("ms", tz="UTC")),
                                   "kind": ["low_balance"], "recipient": ["+8613800000001"], "message": ["low"]}),
               "2026-11-20")
    u = svc.url + "/v1/accounts/1001"
    usage = httpx.get(u + "/usage", params={"from": "2026-11-21", "to": "2026-11-30"}, headers=h).json()["usage"]
    assert [(r["day"], r["quantity"]) for r in usage] == [("2026-11-21", 4.0)]
    assert httpx.get(u + "/usage", params={"from": "2026-13-01"}, headers=h).status_code == 422
    assert httpx.get(u + "/ledger", headers=h).json()["ledger"][0]["balance_after"] == "48.25"
    assert httpx.get(u + "/alerts", headers=h).json()["alerts"][0]["kind"] == "low_balance"
    assert httpx.get(u + "/bills", headers=h).json()["bills"] == []
    assert httpx.get(svc.url + "/v1/runs", headers=auth(svc, "ops")).json()["runs"] == []
    assert httpx.get(svc.url + "/v1/accounts/0/ledger", headers=h).status_code == 404


def test_50_clients_post_the_same_payments_twice_each_applied_once(svc):
    """10,000 payments, each posted twice, shuffled, from 50 keep-alive connections: each applied once
    (one 201, one 200 with the same body), the stored rows, running totals, balances, pending ledger
    and payment alerts exact."""
    n = 10_000
    h = auth(svc, "wechat")
    key = svc.keys["wechat"]["key"]
    rng = random.Random(11)
    bodies = [{"user_number": USERS[i % 3], "amount": f"{rng.randint(1, 50000) / 100:.2f}", "channel_ref": ref_for(i)}
              for i in range(n)]
    before = {u: Decimal(httpx.get(f"{svc.url}/v1/accounts/{u}", headers=h).json()["balance"]) for u in USERS}
    work = bodies + bodies
    rng.shuffle(work)
    _, answers = send_all(svc.server.port, [request_bytes("POST", "/v1/payments", key, b) for b in work], 50)
    got: dict[str, list] = {}
    for body, (code, text, _) in zip(work, answers):
        got.setdefault(body["channel_ref"], []).append((code, json.loads(text)))
    assert len(got) == n
    for ref, two in got.items():
        assert sorted(c for c, _ in two) == [200, 201], "each payment applied exactly once"
        (_, first), (_, again) = sorted(two, key=lambda a: a[0], reverse=True)
        assert first["status"] == "applied" and again["status"] == "duplicate" and first["seq"] == again["seq"]
    with svc.store.read() as conn:
        rows = conn.execute(sa.select(payments.c.account_id, sa.func.count(), sa.func.sum(payments.c.amount_cents))
                            .where(payments.c.channel_ref.like("wx-%")).group_by(payments.c.account_id)).all()
        totals = dict(conn.execute(sa.select(accounts.c.account_id, accounts.c.paid_cents)).all())
        sums = dict(conn.execute(sa.select(payments.c.account_id, sa.func.sum(payments.c.amount_cents))
                                 .group_by(payments.c.account_id)).all())
        alerts = dict(conn.execute(sa.select(outbox.c.account_id, sa.func.count())
                                   .where(outbox.c.kind == "payment", outbox.c.data.like('%"ref":"wx-%'))
                                   .group_by(outbox.c.account_id)).all())
    paid = {u: sum(round(Decimal(b["amount"]) * 100) for b in bodies if b["user_number"] == u) for u in USERS}
    counts = {u: len(range(i, n, 3)) for i, u in enumerate(USERS)}
    assert {r[0]: (r[1], r[2]) for r in rows} == {u: (counts[u], paid[u]) for u in USERS}
    assert totals == {u: sums.get(u, 0) for u in totals}          # the running totals are the sums
    assert alerts == {"1001": counts["1001"], "1002": 2 * counts["1002"]}  # one per payment and contact
    for u in USERS:
        after = Decimal(httpx.get(f"{svc.url}/v1/accounts/{u}", headers=h).json()["balance"])
        assert after - before[u] == Decimal(paid[u]) / 100
        pending = httpx.get(f"{svc.url}/v1/accounts/{u}/ledger", params={"limit": 1}, headers=h).json()
        mine = [p for p in pending["pending_payments"] if p["channel_ref"].startswith("wx-")]
        assert len(mine) == counts[u] and sum(Decimal(p["amount"]) for p in mine) == Decimal(paid[u]) / 100


def test_kill_9_during_a_stream_of_payments_loses_no_answered_payment(tmp_path, db_url):
    s = start_service(tmp_path, db_url)
    h = auth(s, "wechat")
    answered, attempted, stop = {}, [], threading.Event()

    def client(k):
        with httpx.Client(base_url=s.url, headers=h, timeout=10) as c:
            i = 0
            while not stop.is_set():
                body = {"user_number": USERS[i % 3], "amount": f"{k + 1}.{i % 100:02d}", "channel_ref": f"k{k}-{i}"}
                attempted.append(body)
                try:
                    r = c.post("/v1/payments", json=body)
                except httpx.TransportError:
                    return
                if r.status_code in (200, 201):
                    answered[body["channel_ref"]] = body
                i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(answered) < 100 and time.time() < deadline:
        time.sleep(0.05)
    s.server.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(answered) >= 100
    with s.store.read() as conn:
        stored = {r.channel_ref: r for r in conn.execute(sa.select(payments)).all()}
    for ref, body in answered.items():
        assert ref in stored and stored[ref].amount_cents == int(Decimal(body["amount"]) * 100)
    assert len(stored) <= len(attempted)
    s.server.start()  # the same store after the crash: re-sending everything applies the rest once
    try:
        with httpx.Client(base_url=s.server.url, headers=h, timeout=30) as c:
            codes = [c.post("/v1/payments", json=b).status_code for b in attempted]
        assert codes.count(200) == len(stored) and codes.count(201) == len(attempted) - len(stored)
        assert n_payments(s.store) == len(attempted)
    finally:
        s.server.stop()
        s.store.close()


def test_operators_reverse_a_payment_once(svc):
    ch, op = auth(svc, "wechat"), auth(svc, "ops")
    paid = httpx.post(svc.url + "/v1/payments", headers=ch,
                      json={"user_number": "1003", "amount": "12.50", "channel_ref": "rv-1"})
    assert paid.status_code == 201
    body = {"channel": "wechat", "channel_ref": "rv-1"}
    before = n_payments(svc.store)
    assert httpx.post(svc.url + "/v1/reversals", headers=ch, json=body).status_code == 403   # channels may not
    r = httpx.post(svc.url + "/v1/reversals", headers=op, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["amount"] == "-12.50" and out["channel_ref"] == "reversal:rv-1"
    assert Decimal(out["balance"]) == Decimal(paid.json()["balance"]) - Decimal("12.50")
    assert httpx.post(svc.url + "/v1/reversals", headers=op, json=body).status_code == 200   # the same again
    again = httpx.post(svc.url + "/v1/reversals", headers=op, json=body | {"reversal_ref": "other"})
    assert again.status_code == 409 and "already reversed" in again.json()["detail"]
    assert httpx.post(svc.url + "/v1/reversals", headers=op,
                      json={"channel": "wechat", "channel_ref": "reversal:rv-1"}).status_code == 422
    assert httpx.post(svc.url + "/v1/reversals", headers=op,
                      json={"channel": "wechat", "channel_ref": "nope"}).status_code == 404
    assert n_payments(svc.store) == before + 1
