"""``meters serve --workers 2``: two real server processes on one socket answer payments and balances;
a payment reference sent to both is stored once; a console session made through one is known to the
other and a sign-out ends it in both; a rotated key is refused by both; ``--notify`` delivers each
alert once (worker 0 only); a dead worker is started again; SIGTERM stops all."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import httpx
import pytest
import sqlalchemy as sa
from accounts_support import Server, db_url, make_lake, request_bytes, send_all  # noqa: F401  (fixtures)

from accounts.channels import KEY_RECHECK_S, add_channel, rotate_key
from accounts.passwords import set_password
from accounts.registry import import_from_lake
from accounts.schema import payments
from accounts.store import open_store

PASSWORD = "a long enough password"


def worker_pids(server: Server) -> set[int]:
    """The pids of the server's workers (children of the parent process)."""
    with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
        return {int(p) for p in f.read().split()}


@pytest.fixture
def lake_dir(tmp_path, db_url):  # noqa: F811
    store = open_store(make_lake(tmp_path / "lake"), db_url)
    import_from_lake(store, changed_by="test")
    keys = {name: add_channel(store, name, role)["key"] for name, role in (("c", "channel"), ("ops", "operator"))}
    set_password(store, "ops", PASSWORD)
    store.close()
    return tmp_path / "lake", db_url, keys


@pytest.fixture
def two(lake_dir):
    path, db, keys = lake_dir
    server = Server(path, db, "--workers", "2").start()
    try:
        deadline = time.time() + 60
        while len(worker_pids(server)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        yield server, keys
    finally:
        server.stop()


def test_two_workers_answer_and_store_a_reference_once(two):
    """Payments and balances from 20 connections: both workers answer (the kernel spreads the
    connections), every distinct reference is stored once although each was sent four times, on separate
    connections, and the balance counts it once."""
    server, keys = two
    assert len(worker_pids(server)) == 2
    pays = [request_bytes("POST", "/v1/payments", keys["c"], {"user_number": "1001", "amount": "1.00",
                                                               "channel_ref": f"r{i % 100}"}) for i in range(400)]
    _, answers = send_all(server.port, pays, clients=20)
    got = sorted((json.loads(body)["status"], code) for code, body, _ in answers)
    assert got == [("applied", 201)] * 100 + [("duplicate", 200)] * 300
    r = httpx.get(server.url + "/v1/accounts/1001", headers={"Authorization": f"Bearer {keys['c']}"})
    assert r.status_code == 200 and r.json()["balance"] == "150.00"          # 50.00 opening + 100 × 1.00
    path, db = server.lake_dir, server.db
    store = open_store(path, db)
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one() == 100
    store.close()
    log = open(server.log.name).read()
    assert "database is locked" not in log and "Traceback" not in log, log


def test_a_session_made_on_one_worker_is_valid_on_all_and_sign_out_ends_it_everywhere(two):
    """Every request goes over a new connection, so the two workers take turns; the session cookie
    is accepted by each of many connections (both workers) and refused by all after sign-out."""
    server, _ = two
    with httpx.Client(base_url=server.url) as c:
        c.get("/console/login")
        csrf = c.cookies["meters_csrf"]
        r = c.post("/console/login", data={"name": "ops", "password": PASSWORD, "csrf": csrf})
        assert r.status_code == 303
        cookies = {"meters_csrf": csrf, "meters_session": c.cookies["meters_session"]}
    assert all(_fresh(server, "GET", "/console", cookies).status_code == 200 for _ in range(20))
    assert _fresh(server, "POST", "/console/logout", cookies, data={"csrf": csrf}).status_code == 303
    assert all(_fresh(server, "GET", "/console", cookies).status_code == 401 for _ in range(20))


def _fresh(server, method, path, cookies, **kw):
    """One request over a new connection (a connection stays with the worker that accepted it)."""
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as c:
        return c.request(method, path, **kw)


def test_a_rotated_key_is_refused_by_every_worker(two):
    server, keys = two
    ok = [_fresh(server, "GET", "/v1/accounts/1001", {}, headers={"Authorization": f"Bearer {keys['c']}"})
          for _ in range(10)]                                  # both workers keep the key now
    assert {r.status_code for r in ok} == {200}
    store = open_store(server.lake_dir, server.db)
    new = rotate_key(store, "c")["key"]
    store.close()
    time.sleep(KEY_RECHECK_S + 0.5)
    old = [_fresh(server, "GET", "/v1/accounts/1001", {}, headers={"Authorization": f"Bearer {keys['c']}"})
           for _ in range(20)]
    assert {r.status_code for r in old} == {401}
    assert _fresh(server, "GET", "/v1/accounts/1001", {}, headers={"Authorization": f"Bearer {new}"}).status_code == 200


def test_a_dead_worker_is_started_again_and_sigterm_stops_all(two):
    server, keys = two
    first = worker_pids(server)
    os.kill(min(first), signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline and not (len(worker_pids(server)) == 2 and worker_pids(server) != first):
        time.sleep(0.1)
    now = worker_pids(server)
    assert len(now) == 2 and min(first) not in now
    deadline = time.time() + 30
    while time.time() < deadline:      # the new worker answers (it serves once it has started)
        if all(_fresh(server, "GET", "/healthz", {}).status_code == 200 for _ in range(10)):
            break
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    for pid in now:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()
    log = open(server.log.name).read()
    assert re.search(r"worker \d \(pid \d+\) exited with signal SIGKILL", log), log
    assert "all workers stopped" in log and "Traceback" not in log, log


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_notify_runs_in_one_worker_and_delivers_each_alert_once(lake_dir):
    from delivery_support import Receiver
    from test_delivery import alert

    from meters import outbox, webhooks

    path, db, keys = lake_dir
    receiver = Receiver(webhooks.new_secret())
    try:
        store = open_store(path, db)
        add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
        batch = [alert(i, f"wechat:o6_{i}") for i in range(20)]
        outbox.enqueue(store.engine, batch)
        store.close()
        server = Server(path, db, "--workers", "2", "--notify", "--log-format", "json").start()
        try:
            deadline = time.time() + 60
            while len(receiver.got) < len(batch) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)                      # a second dispatcher, if there were one, would send again
        finally:
            server.stop()
        assert set(receiver.got) == {a["alert_id"] for a in batch}
        assert set(receiver.requests.values()) == {1}
        events = [json.loads(line) for line in open(server.log.name) if line.startswith("{")]
        started = [e for e in events if e.get("logger") == "meters.notify" and e.get("event") == "started"]
        assert [e.get("worker") for e in started] == ["serve-0"]
    finally:
        receiver.close()
