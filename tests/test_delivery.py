"""Alert delivery: the outbox, stable ids, templates, webhooks (a real receiver on loopback that
fails, times out, answers 500, 429 and 410 and verifies every signature), MQTT through the managed
broker, kill -9 of the dispatcher, re-runs, and the daughter's story end to end."""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from accounts.channels import add_channel, set_target
from accounts.registry import import_from_lake
from accounts.store import open_store
from billing.batch import bill_day
from billing.payments import pay
from delivery import dispatcher
from delivery.messages import render, template_names
from delivery.retry import Policy, http_outcome, retry_after, transient
from delivery_support import Receiver
from meters import outbox, webhooks
from meters.errors import MetersError
from meters.mqtt import make_client, parse_broker_url
from meters.recipients import channel_of, parse_contact
from test_billing_batch import D0, make_lake, write_registers

ROOT = Path(__file__).resolve().parents[1]
FAST = Policy(initial_s=0.1, max_wait_s=0.3)
DAUGHTER = "wechat:o6_bmjrPTlm6_2sgVt7hMZOPfL2M"


def settings(**kw):
    return dispatcher.Settings(**({"timeout_s": 2.0, "poll_s": 0.05, "until_idle_s": 1.5, "policy": FAST} | kw))


@pytest.fixture
def receiver():
    r = Receiver(webhooks.new_secret(), slow_s=3.0)
    yield r
    r.close()


def alert(i, recipient, kind="low_balance", account=None, lang="zh-CN", **values):
    account = account or f"10{i:02d}"
    data = {"account_id": account, "day": "2026-11-01", "currency": "CNY", "utility": "electricity",
            "balance": 1500, "threshold": 2000, "level": 2} | values
    return {"alert_id": outbox.alert_id(account, D0, kind, recipient), "account_id": account, "day": D0,
            "kind": kind, "recipient": recipient, "language": lang, "data": json.dumps(data, sort_keys=True)}


def states(engine):
    with engine.connect() as conn:
        return {r.alert_id: r for r in conn.execute(sa.select(outbox.outbox))}


# -- pure parts ------------------------------------------------------------------------------------------
def test_contacts_recipients_and_languages():
    assert parse_contact(f"daughter:{DAUGHTER}@zh-CN") == ("daughter", DAUGHTER, "zh-CN")
    assert parse_contact("son:email:li@example.com@en") == ("son", "email:li@example.com", "en")
    assert parse_contact("self:email:li@example.com") == ("self", "email:li@example.com", None)
    assert parse_contact("self:13800000001") == ("self", "13800000001", None)
    assert [channel_of(r) for r in ("operator", "account:1001", "13800000001", DAUGHTER)] == [
        "operator", None, "sms", "wechat"]
    with pytest.raises(MetersError, match="relation:channel:address"):
        parse_contact("daughter")


def test_alert_ids_are_stable_and_distinct():
    a = outbox.alert_id("1001", D0, "auto_topup", DAUGHTER)
    assert a == outbox.alert_id("1001", "2026-11-01", "auto_topup", DAUGHTER) and a.startswith("al_")
    others = {outbox.alert_id("1002", D0, "auto_topup", DAUGHTER), outbox.alert_id("1001", D0, "low_balance", DAUGHTER),
              outbox.alert_id("1001", D0 + dt.timedelta(1), "auto_topup", DAUGHTER),
              outbox.alert_id("1001", D0, "auto_topup", "sms:+8613800000001"),
              outbox.alert_id("1001", D0, "payment", DAUGHTER, "ref-1"), outbox.alert_id("1001", D0, "payment", DAUGHTER, "ref-2")}
    assert a not in others and len(others) == 6


def test_templates_speak_chinese_and_english():
    v = {"account_id": "1001", "day": "2026-11-05", "currency": "CNY", "utility": "electricity", "amount": 10000,
         "balance": 10031}
    assert render("auto_topup", "zh-CN", v).startswith("电表账户余额不足，已自动缴费100元。当前余额100.31元")
    assert "2026年11月5日" in render("auto_topup", "zh-CN", v)
    assert render("auto_topup", "en", v).startswith("Balance low, auto-paid CN¥100.00 for account 1001 on November 5, 2026")
    assert render("auto_topup", "zh-CN", v | {"utility": "water"}).startswith("水表账户余额不足")
    assert render("auto_topup", "zh-CN", v, corrects="al_x").startswith("【更正】")
    assert render("auto_topup", "en", v | {"currency": "USD"}).startswith("Balance low, auto-paid $100.00")
    # every kind has a template in every language
    assert {(lang, p.stem) for lang, _ in template_names()
            for p in (ROOT / "delivery" / "templates" / lang).glob("*.txt")} == set(template_names())


def test_retry_rules():
    now = dt.datetime(2026, 11, 2, tzinfo=dt.timezone.utc)
    p = Policy()
    assert http_outcome(204, "", {}, 1, now, now, p).state == "sent"
    for status in (400, 401, 404, 410, 422):
        assert http_outcome(status, "x", {}, 1, now, now, p).state == "dead"
    for status in (408, 429, 500, 502, 503):
        o = http_outcome(status, "x", {}, 1, now, now, p)
        assert o.state == "failed" and now < o.next_attempt_at <= now + dt.timedelta(seconds=p.initial_s)
    o = http_outcome(429, "Too Many Requests", {"retry-after": "120"}, 3, now, now, p)
    assert o.next_attempt_at == now + dt.timedelta(seconds=120)
    assert retry_after("Mon, 02 Nov 2026 00:00:30 GMT", now) == 30
    waits = [p.wait(n) for n in range(1, 40)]
    assert max(waits) <= p.max_wait_s and max(waits[20:]) > 60        # exponential, capped at an hour
    late = transient("HTTP 503", 30, now - dt.timedelta(hours=24), now, p)
    assert late.state == "dead" and "gave up" in late.error


# -- the outbox ------------------------------------------------------------------------------------------
def test_enqueue_is_idempotent_and_changes_are_corrections(lake):
    store = open_store(lake)
    a = alert(1, DAUGHTER)
    assert outbox.enqueue(store.engine, [a, alert(2, "account:1002"), alert(3, "sms:1", kind="data_gap")]) == {
        "queued": 1, "corrections": 0, "unchanged": 0, "skipped": 2}
    assert outbox.enqueue(store.engine, [a])["unchanged"] == 1
    changed = a | {"data": a["data"].replace("1500", "1400")}
    assert outbox.enqueue(store.engine, [changed])["corrections"] == 1
    rows = states(store.engine)
    assert len(rows) == 2 and rows[a["alert_id"]].state == "dead"      # never sent: superseded quietly
    [new] = [r for r in rows.values() if r.alert_id != a["alert_id"]]
    assert new.state == "pending" and new.corrects is None and "superseded" in rows[a["alert_id"]].last_error
    outbox.record(store.engine, [{"alert_id": new.alert_id, "state": "sent"}])
    again = changed | {"data": changed["data"].replace("1400", "1300")}
    assert outbox.enqueue(store.engine, [again])["corrections"] == 1
    [third] = [r for r in states(store.engine).values() if r.alert_id not in (a["alert_id"], new.alert_id)]
    assert third.corrects == new.alert_id                                # it was sent: the new one corrects it


def test_a_nights_data_gaps_reach_the_operator_as_one_digest_with_the_query_that_lists_them(lake):
    """620,000 data_gap alerts of a 1M-meter night are one operator message, not 620,000: its count,
    accounts, and the lake query that lists them (which does)."""
    import pyarrow as pa

    from meters import sql
    from meters.schemas import ALERTS

    store = open_store(lake)
    rows = [alert(i, "operator", kind="data_gap", meter_id=i, estimated=3, intervals=96, reasons={"gap": 3})
            for i in range(5)] + [alert(9, DAUGHTER), alert(10, "operator", kind="disconnect_held", meter_id=10)]
    ts = dt.datetime(2026, 11, 1, 16, tzinfo=dt.timezone.utc)
    lake.write("alerts", pa.Table.from_pylist([{k: r[k] for k in ("alert_id", "account_id", "kind", "recipient",
                                                                   "language", "data")} | {"ts": ts, "message": r["kind"]}
                                               for r in rows], ALERTS), D0.isoformat(), file_name="billing.parquet")
    assert outbox.enqueue_day(lake, D0)["queued"] == 3        # the digest, the daughter's, the held disconnection
    assert outbox.enqueue_day(lake, D0)["unchanged"] == 3     # a re-run sends nothing new
    [digest] = [r for r in states(store.engine).values() if r.kind == "data_gap"]
    v = json.loads(digest.data)
    assert digest.recipient == "operator" and v["count"] == 5 and v["accounts"] == 5
    listed = sql.arrow(lake.root, v["query"])
    assert sorted(listed.column("account_id").to_pylist()) == [f"10{i:02d}" for i in range(5)]
    text = render("data_gap", "en", v)
    assert text.startswith("5 meters (5 accounts) had estimated intervals on November 1, 2026") and v["query"] in text


# -- webhooks --------------------------------------------------------------------------------------------
def test_webhook_delivery_through_failures_timeouts_and_refusals(lake, receiver):
    store = open_store(lake)
    add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
    add_channel(store, "operator", "operator", webhook=receiver.url, secret=receiver.secret)
    batch = ([alert(i, f"wechat:flaky-{i}") for i in range(20)]
             + [alert(20, "wechat:slow-1"), alert(21, "wechat:fivehundred-1"), alert(22, "wechat:limited-1"),
                alert(23, "wechat:gone-1"), alert(24, "operator", kind="data_gap", meter_id=24, estimated=3,
                                                  intervals=96, reasons={"gap": 3})]
             + [alert(25, "sms:+8613800000025")])                                  # a channel with no target
    outbox.enqueue(store.engine, batch)
    totals = dispatcher.run(store.engine, settings(until_idle_s=3.0))
    rows = states(store.engine)
    deliverable = {a["alert_id"] for a in batch[:23]} | {batch[24]["alert_id"]}
    assert set(receiver.got) == deliverable                                 # each at least once, kept once
    assert receiver.bad_signatures == 0
    assert all(rows[i].state == "sent" and rows[i].sent_at is not None for i in deliverable)
    gone = rows[batch[23]["alert_id"]]
    assert gone.state == "dead" and gone.attempts == 1 and "410" in gone.last_error and "unsubscribed" in gone.last_error
    nowhere = rows[batch[25]["alert_id"]]
    assert nowhere.state == "failed" and "no delivery target" in nowhere.last_error and nowhere.attempts > 1
    assert receiver.requests[batch[20]["alert_id"]] >= 2 and rows[batch[20]["alert_id"]].attempts >= 2   # timed out
    assert receiver.requests[batch[21]["alert_id"]] == 2 and receiver.requests[batch[22]["alert_id"]] == 2
    assert sum(receiver.requests[a["alert_id"]] for a in batch[:20]) >= 30             # half failed, retried
    assert receiver.got[batch[24]["alert_id"]]["text"].startswith("表计24（户号1024）")
    assert totals["sent"] == len(deliverable) and totals["dead"] == 1
    # dead ones are re-queued by hand
    outbox.requeue(store.engine, gone.alert_id)
    assert states(store.engine)[gone.alert_id].state == "pending"
    with pytest.raises(MetersError, match="only a dead or failed"):
        outbox.requeue(store.engine, batch[0]["alert_id"])


def _notify(lake, *extra):
    return subprocess.Popen([sys.executable, "-m", "meters", "notify", "--lake", str(lake.root), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_of_the_dispatcher_loses_no_alert(lake):
    store = open_store(lake)
    rcv = Receiver(webhooks.new_secret(), delay_s=0.02)
    try:
        add_channel(store, "wechat", webhook=rcv.url, secret=rcv.secret)
        batch = [alert(i, f"wechat:o6_{i}", account=f"2{i:04d}") for i in range(300)]
        outbox.enqueue(store.engine, batch)
        p = _notify(lake, "--concurrency", "4", "--lease", "2")
        deadline = time.time() + 60
        while len(rcv.got) < 40 and time.time() < deadline:
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        got_before = len(rcv.got)
        assert 40 <= got_before < 300
        dispatcher.run(store.engine, settings(until_idle_s=3.0))
        assert set(rcv.got) == {a["alert_id"] for a in batch}
        assert {r.state for r in states(store.engine).values()} == {"sent"}
        assert rcv.bad_signatures == 0
    finally:
        rcv.close()


def test_sigterm_stops_cleanly_and_cli_shows_state(lake, receiver):
    store = open_store(lake)
    add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
    batch = [alert(i, f"wechat:o6_{i}") for i in range(5)] + [alert(9, "wechat:gone-9")]
    outbox.enqueue(store.engine, batch)
    p = _notify(lake)
    deadline = time.time() + 30
    while len(receiver.got) < 5 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0 and "sent 5" in out and "Traceback" not in err
    listing = subprocess.run([sys.executable, "-m", "meters", "alerts", "--lake", str(lake.root), "--state", "dead",
                              "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    [dead] = json.loads(listing.stdout)
    assert dead["alert_id"] == batch[-1]["alert_id"] and "410" in dead["last_error"]
    r = subprocess.run([sys.executable, "-m", "meters", "alerts", "retry", dead["alert_id"], "--lake", str(lake.root)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "pending again" in r.stdout
    r = subprocess.run([sys.executable, "-m", "meters", "alerts", "retry", "al_nope", "--lake", str(lake.root)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip() == "error: no alert 'al_nope' in the outbox"


def test_webhook_secret_is_checked(lake):
    store = open_store(lake)
    with pytest.raises(MetersError, match="whsec_"):
        add_channel(store, "wechat", webhook="http://127.0.0.1:9/x", secret="not-a-secret")
    with pytest.raises(MetersError, match="one of --webhook, --mqtt, --apprise"):
        add_channel(store, "wechat", webhook="http://127.0.0.1:9/x", mqtt=True)
    out = add_channel(store, "wechat", webhook="http://127.0.0.1:9/x")
    assert out["webhook_secret"].startswith("whsec_")
    assert set_target(store, "wechat", mqtt=True) == {"name": "wechat", "mqtt": True}


# -- MQTT ------------------------------------------------------------------------------------------------
def _gateway(broker, channel, topic):
    url = parse_broker_url(broker.url(f"alerts.{channel}"))
    client, kw = make_client(url, f"alerts.{channel}")
    got, granted, ready = [], {}, threading.Event()
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)

    def on_subscribe(c, u, mid, codes, props):
        granted["codes"] = codes
        ready.set()

    client.on_subscribe = on_subscribe
    client.connect(**kw)
    client.loop_start()
    assert ready.wait(10)
    return client, got, granted["codes"]


def test_mqtt_delivery_to_the_channels_topic_only(lake, broker):
    store = open_store(lake)
    add_channel(store, "push", mqtt=True)
    broker.add_alert_users(["push", "other"])
    gw, got, codes = _gateway(broker, "push", "meters/v1/alerts/push")
    spy, spied, spy_codes = _gateway(broker, "other", "meters/v1/alerts/push")   # another channel's gateway
    try:
        assert not codes[0].is_failure and spy_codes[0].is_failure
        batch = [alert(i, f"push:device-{i}") for i in range(10)]
        outbox.enqueue(store.engine, batch)
        totals = dispatcher.run(store.engine, settings(), broker=parse_broker_url(broker.url("notify")))
        deadline = time.time() + 10
        while len(got) < 10 and time.time() < deadline:
            time.sleep(0.05)
        assert totals["sent"] == 10 and spied == []
        ids = {json.loads(p)["data"]["id"] for t, p in got}
        assert ids == {a["alert_id"] for a in batch} and {t for t, _ in got} == {"meters/v1/alerts/push"}
        assert json.loads(got[0][1])["data"]["text"].startswith("电表账户余额")
    finally:
        for c in (gw, spy):
            c.loop_stop()
            c.disconnect()


# -- the daughter's story --------------------------------------------------------------------------------
def test_the_daughters_story_end_to_end(tmp_path, receiver):
    """Her parents' prepaid electricity account in Beijing auto-tops-up 100 yuan below 20; she is its
    contact on WeChat. The nightly run tops it up: her phone gets exactly one message, in Chinese."""
    lake = make_lake(tmp_path, f"1001,11,cn-bj-res-elec,prepaid,5,,,20,100,daughter:{DAUGHTER}@zh-CN\n")
    store = open_store(lake)
    import_from_lake(store)
    add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
    step = lambda k: 100 if k <= 48 else 300  # noqa: E731  (the meter's quarter hours, Wh)
    write_registers(lake, 11, D0, 1000, step, skip=range(49, 97))       # the evening arrives late
    [res] = bill_day(lake, D0)
    assert res.queued["queued"] >= 1
    dispatcher.run(store.engine, settings(until_idle_s=0.5))
    topups = [m for m in receiver.got.values() if m["kind"] == "auto_topup"]
    assert len(topups) == 1
    [m] = topups
    assert m["text"].startswith("电表账户余额不足，已自动缴费100元") and m["address"] == DAUGHTER.split(":", 1)[1]
    assert m["language"] == "zh-CN" and receiver.bad_signatures == 0
    n = len(receiver.got)
    # re-running the night sends nothing new
    [res] = bill_day(lake, D0)
    assert res.queued["queued"] == 0 and res.queued["corrections"] == 0 and res.queued["unchanged"] >= 1
    dispatcher.run(store.engine, settings(until_idle_s=0.5))
    assert len(receiver.got) == n and sum(receiver.requests.values()) == n
    # the late evening readings change the day's balance after the top-up: a correction that says so
    write_registers(lake, 11, D0, 1000, step, skip=range(0, 49), received=lake.day_bounds_utc(D0)[1] + dt.timedelta(days=2))
    [res] = bill_day(lake, D0)
    dispatcher.run(store.engine, settings(until_idle_s=0.5))
    corrections = [m for m in receiver.got.values() if m["corrects"]]
    assert res.queued["corrections"] >= 1 and corrections and all(c["text"].startswith("【更正】") for c in corrections)
    assert any(c["text"].startswith("【更正】电表账户余额不足，已自动缴费100元。当前余额95.62元") for c in corrections)  # 5 − 9.38 (19.2 kWh) + 100
    # the API shows each alert's newest delivery: the correction, sent
    import warnings

    from accounts.api.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # starlette's note on its httpx-based client
        from fastapi.testclient import TestClient

    key = add_channel(store, "app")["key"]
    with TestClient(create_app(store)) as client:
        shown = client.get("/v1/accounts/1001/alerts", headers={"Authorization": f"Bearer {key}"}).json()["alerts"]
    [topup] = [a for a in shown if a["kind"] == "auto_topup"]
    assert topup["delivery"]["state"] == "sent" and topup["delivery"]["corrects"] == topup["alert_id"]
    assert topup["recipient"] != DAUGHTER and "*" in topup["recipient"]                    # masked for a channel
    # a payment's alert is queued at once
    pay(lake, "1001", 50, "wx-20261102-1", at=lake.day_bounds_utc(D0)[1] + dt.timedelta(hours=9))
    dispatcher.run(store.engine, settings(until_idle_s=0.5))
    [paid] = [m for m in receiver.got.values() if m["kind"] == "payment"]
    assert paid["text"].startswith("缴费50元已到账（流水号wx-20261102-1）")


def test_a_payment_recorded_by_the_account_service_is_queued_at_once(tmp_path, receiver):
    from accounts.payments import pay as store_pay

    lake = make_lake(tmp_path, f"1001,11,cn-bj-res-elec,prepaid,5,,,20,100,daughter:{DAUGHTER}@zh-CN;self:sms:+86138@en\n")
    store = open_store(lake)
    import_from_lake(store)
    add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
    add_channel(store, "sms", webhook=receiver.url, secret=receiver.secret)
    assert store_pay(store, "1001", "50", "wx-1", channel="wechat")["status"] == "applied"
    assert store_pay(store, "1001", "50", "wx-1", channel="wechat")["status"] == "duplicate"   # nothing new queued
    dispatcher.run(store.engine, settings(until_idle_s=0.5))
    texts = sorted((m["address"], m["text"]) for m in receiver.got.values())
    assert texts == [("+86138", "Payment of CN¥50.00 received for account 1001 (ref wx-1); balance CN¥55.00."),
                     ("o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "缴费50元已到账（流水号wx-1），当前余额55元。户号1001。")]


def test_meters_serve_notify_delivers_and_stops_cleanly_on_sigterm(lake, receiver):
    """``meters serve --notify`` runs the dispatcher (found through the ``meters.notifiers`` entry
    point, the account service never imports delivery/) in the server's event loop: a queued alert
    is delivered while the server answers, and SIGTERM stops both with the outcomes recorded."""
    from meters.broker import free_port

    store = open_store(lake)
    add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
    batch = [alert(i, f"wechat:o6_{i}") for i in range(3)]
    outbox.enqueue(store.engine, batch)
    store.close()
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "meters", "serve", "--lake", str(lake.root), "--port", str(port),
                          "--notify", "--log-format", "json"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while len(receiver.got) < 3 and time.time() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert set(receiver.got) == {a["alert_id"] for a in batch}
        import httpx
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=10).status_code == 200   # the server answers too
        time.sleep(0.5)                              # the outcomes are written every 0.2 s
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err   # uvicorn re-raises the signal
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "stopped" and "sent 3" in e["message"] for e in events), err
    assert {r.state for r in states(open_store(lake).engine).values()} == {"sent"}


def test_an_api_payment_reconnects_a_disconnected_account_in_its_own_transaction(tmp_path, receiver):
    """A payment through the API that lifts a disconnected account above the reconnection amount
    queues the ``reconnect`` alert with its ``payment`` alert, at once; a later payment of the day
    does not repeat it, and neither does the nightly run."""
    import warnings

    from accounts.api.app import create_app
    from accounts_support import Clock, local
    from billing.batch import bill_range
    from test_billing_batch import feed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # starlette's note on its httpx-based client
        from fastapi.testclient import TestClient

    lake = make_lake(tmp_path, f"1001,11,cn-bj-res-elec,prepaid,5,,,,,daughter:{DAUGHTER}@zh-CN\n")
    store = open_store(lake)
    import_from_lake(store)
    add_channel(store, "wechat", webhook=receiver.url, secret=receiver.secret)
    feed(lake, 11, D0, 4)
    bill_range(lake, D0, D0 + dt.timedelta(days=2))                    # disconnected on the third day

    def kinds():
        return sorted(r.kind for r in states(store.engine).values())

    assert kinds().count("disconnect") == 1 and "reconnect" not in kinds()
    d4 = D0 + dt.timedelta(days=3)
    store.clock = Clock(local(lake, d4, 12))
    key = {"Authorization": f"Bearer {add_channel(store, 'alipay')['key']}"}
    with TestClient(create_app(store)) as client:
        def pay_(amount, ref):
            r = client.post("/v1/payments", json={"user_number": "1001", "amount": amount, "channel_ref": ref},
                            headers=key)
            assert r.status_code in (200, 201), r.text
            return r.json()

        assert pay_("5", "ali-1")["balance"] == "-4.06" and "reconnect" not in kinds()     # still in arrears
        assert pay_("15", "ali-2")["balance"] == "10.94" and kinds().count("reconnect") == 1
        pay_("1", "ali-3")
    assert kinds().count("reconnect") == 1 and kinds().count("payment") == 3
    [rec] = [r for r in states(store.engine).values() if r.kind == "reconnect"]
    assert rec.recipient == DAUGHTER and json.loads(rec.data)["ref"] == "ali-2" and rec.day == d4
    bill_range(lake, d4, d4)                                            # the night does not announce it again
    assert kinds().count("reconnect") == 1
    dispatcher.run(store.engine, settings(until_idle_s=0.5))
    [m] = [m for m in receiver.got.values() if m["kind"] == "reconnect"]
    assert "10.94元" in m["text"] and m["language"] == "zh-CN"


def test_an_unreachable_mqtt_broker_leaves_deliveries_to_retry(lake):
    from meters.broker import free_port

    store = open_store(lake)
    add_channel(store, "push", mqtt=True)
    a = alert(1, "push:+8613800000001")
    outbox.enqueue(store.engine, [a])
    nobody = parse_broker_url(f"mqtt://notify:x@127.0.0.1:{free_port()}")
    totals = dispatcher.run(store.engine, settings(timeout_s=0.3, until_idle_s=1.0), broker=nobody)
    row = states(store.engine)[a["alert_id"]]
    assert totals["sent"] == 0 and row.state == "failed" and "not connected" in row.last_error
