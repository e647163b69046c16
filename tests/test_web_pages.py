"""The web pages without a browser: CSRF and sessions, the console refusing strangers, operators'
passwords (hashed, migration 0002 on a store made before it), languages and translated errors."""
from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from accounts_support import db_url, make_lake, store  # noqa: F401  (fixtures)
from click.testing import CliRunner
from fastapi.testclient import TestClient

import pytest
from accounts.api.app import create_app
from accounts.channels import add_channel
from accounts.errors import Invalid, NotFound
from accounts.money import to_cents
from accounts.passwords import check_login, hash_password, set_password, verify_password
from accounts.schema import channels, payments
from accounts.store import _alembic_config, create_engine, database_url, migrate, open_store
from accounts.web import i18n
from meters.cli import cli

PASSWORD = "a long enough password"


@pytest.fixture
def client(store):  # noqa: F811
    add_channel(store, "web", "channel")
    add_channel(store, "ops", "operator")
    set_password(store, "ops", PASSWORD)
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        yield c


def csrf(client) -> str:
    client.get("/console/login")
    return client.cookies["meters_csrf"]


def n_payments(store) -> int:  # noqa: F811
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one()


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(client, store):  # noqa: F811
    token = csrf(client)
    for data in ({"user": "1001", "amount": "10", "ref": "r1"}, {"user": "1001", "amount": "10", "ref": "r1", "csrf": "x" * 43}):
        r = client.post("/pay", data=data)
        assert r.status_code == 403
    assert n_payments(store) == 0
    r = client.post("/pay", data={"user": "1001", "amount": "10", "ref": "r1", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?user=1001&done=paid"
    again = client.post("/pay", data={"user": "1001", "amount": "10", "ref": "r1", "csrf": token}, follow_redirects=False)
    assert again.status_code == 303 and n_payments(store) == 1           # the same form twice: one payment
    assert client.post("/console/login", data={"name": "ops", "password": PASSWORD}).status_code == 403


def test_the_console_needs_a_session(client):
    for path in ("/console", "/console/account?user=1001"):
        r = client.get(path)
        assert r.status_code == 401 and 'name="password"' in r.text and "1001" not in r.text.split("<main")[1]
    bad = client.post("/console/login", data={"name": "ops", "password": "wrong one!", "csrf": csrf(client)})
    assert bad.status_code == 401 and "meters_session" not in bad.cookies
    ok = client.post("/console/login", data={"name": "ops", "password": PASSWORD, "csrf": csrf(client)},
                     follow_redirects=False)
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert client.get("/console").status_code == 200
    r = client.get("/console/account?user=1002")
    assert r.status_code == 200 and "+8613800000003" in r.text           # operators see contacts in full
    assert client.get("/console/account?user=0000").status_code == 404
    client.post("/console/logout", data={"csrf": client.cookies["meters_csrf"]})
    assert client.get("/console").status_code == 401


def test_sessions_are_rows_of_the_store_shared_by_every_app_of_it(client, store):  # noqa: F811
    """Two apps on one store (as two server processes): signed in through one, signed in on the other;
    only the token's SHA-256 is stored; sign-out and expiry end the session in both."""
    import hashlib
    import time

    from accounts.schema import console_sessions

    client.post("/console/login", data={"name": "ops", "password": PASSWORD, "csrf": csrf(client)})
    token = client.cookies["meters_session"]
    with store.read() as conn:
        rows = conn.execute(sa.select(console_sessions)).all()
    assert [(r.token_sha256, r.operator) for r in rows] == [(hashlib.sha256(token.encode()).hexdigest(), "ops")]
    assert rows[0].expires_s > time.time() + 7 * 3600
    with TestClient(create_app(store), base_url="http://127.0.0.1") as other:
        other.cookies.set("meters_session", token, path="/console")
        other.cookies.set("meters_csrf", client.cookies["meters_csrf"])
        assert other.get("/console").status_code == 200
        other.post("/console/logout", data={"csrf": client.cookies["meters_csrf"]})
        assert client.get("/console").status_code == 401                  # signed out through the other app
    client.post("/console/login", data={"name": "ops", "password": PASSWORD, "csrf": csrf(client)})
    assert client.get("/console").status_code == 200
    with store.write() as conn:
        conn.execute(sa.update(console_sessions).values(expires_s=int(time.time()) - 1))
    assert client.get("/console").status_code == 401                      # expired


def test_a_channel_key_is_not_a_console_login(client, store):  # noqa: F811
    assert not check_login(store, "web", PASSWORD)
    assert not check_login(store, "nobody", PASSWORD)
    with pytest.raises(Invalid, match="only operators"):
        set_password(store, "web", PASSWORD)
    with pytest.raises(NotFound):
        set_password(store, "nobody", PASSWORD)
    with pytest.raises(Invalid, match="10 to 200"):
        set_password(store, "ops", "short")


def test_passwords_are_stored_hashed_and_salted(client, store):  # noqa: F811
    with store.read() as conn:
        stored = conn.execute(sa.select(channels.c.password_hash).where(channels.c.name == "ops")).scalar_one()
    assert PASSWORD not in stored and stored.startswith("scrypt$")
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "!", stored)
    assert hash_password(PASSWORD) != hash_password(PASSWORD)              # salted
    assert not verify_password(PASSWORD, None) and not verify_password(PASSWORD, "md5$x")


def test_migration_0002_upgrades_a_store_made_before_it(tmp_path, db_url):  # noqa: F811
    lake = make_lake(tmp_path / "lake")
    engine = create_engine(database_url(lake, db_url))
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(sa.text("INSERT INTO channels (name, role, key_sha256, created_at) "
                             "VALUES ('ops', 'operator', 'k', CURRENT_TIMESTAMP)"))
    assert migrate(engine) == "0001"
    engine.dispose()
    s = open_store(lake, db_url)
    set_password(s, "ops", PASSWORD)
    assert check_login(s, "ops", PASSWORD)
    s.close()


def test_meters_channels_password(tmp_path):
    store = open_store(make_lake(tmp_path / "lake"))  # noqa: F811
    add_channel(store, "ops2", "operator")
    lake = str(store.lake.root)
    r = CliRunner().invoke(cli, ["channels", "password", "ops2", "--password-stdin", "--lake", lake],
                           input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert check_login(store, "ops2", PASSWORD)
    r = CliRunner().invoke(cli, ["channels", "password", "ops2", "--password-stdin", "--lake", lake], input="short\n")
    assert r.exit_code == 1 and "10 to 200 characters" in r.output


@pytest.mark.parametrize("cookie,header,lang", [
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"), (None, "en-GB,en;q=0.9", "en"), (None, "fr-FR, en;q=0.5", "en"),
    (None, "en;q=0.2, zh;q=0.8", "zh"), (None, None, "zh"), (None, "de", "zh"), ("en", "zh-CN", "en"),
    ("xx", "en", "en")])
def test_the_language_is_the_switch_or_the_browser(cookie, header, lang):
    assert i18n.choose(cookie, header) == lang


@pytest.mark.parametrize("amount", ["abc", "1.234", "-5", "0", "2000000", "nan", "1e20"])
def test_amount_errors_are_translated(amount):
    with pytest.raises(Invalid) as e:
        to_cents(amount)
    zh = i18n.error_text(str(e.value), "zh")
    assert not zh.startswith("请求被拒绝") and amount in zh
    assert i18n.error_text(str(e.value), "en") == str(e.value)


def test_pages_answer_in_the_browser_language(client):
    zh = client.get("/?user=1001", headers={"Accept-Language": "zh-CN"})
    en = client.get("/?user=1001", headers={"Accept-Language": "en"})
    assert '<html lang="zh-CN">' in zh.text and "余额" in zh.text
    assert '<html lang="en">' in en.text and "Balance" in en.text
    missing = client.get("/?user=0000", headers={"Accept-Language": "zh-CN"})
    assert missing.status_code == 404 and "用户编号 0000 不存在" in missing.text
    r = client.get("/lang/en?back=/%3Fuser%3D1001", headers={"Accept-Language": "zh-CN"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/?user=1001"
    assert "Balance" in client.get("/?user=1001", headers={"Accept-Language": "zh-CN"}).text   # the switch wins
    assert client.get("/lang/en?back=//evil.example", follow_redirects=False).headers["location"] == "/"


def test_demo_serves_the_pages_until_ctrl_c(tmp_path):
    """``meters demo`` ends by serving the pages on a free loopback port and printing the URL; the
    printed operator password signs in; Ctrl-C (SIGINT) stops it cleanly."""
    import re
    import signal
    import subprocess
    import sys
    import time

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "meters", "demo", "--lake", str(tmp_path / "lake"), "--meters", "30",
                             "--days", "1", "--faults", "none"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, url, password = [], None, None
    try:
        deadline = time.time() + 300
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if m := re.search(r"operator admin, password (\S+)", line):
                password = m.group(1)
            if m := re.search(r"serving the pages at (http://127\.0\.0\.1:\d+)/ ", line):
                url = m.group(1)
        assert url and password, "".join(lines)
        for _ in range(100):
            try:
                r = httpx.get(url + "/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.status_code == 200 and 'name="user"' in r.text
        with httpx.Client(base_url=url, follow_redirects=True) as c:
            token = c.get("/console/login").cookies["meters_csrf"]
            ok = c.post("/console/login", data={"name": "admin", "password": password, "csrf": token})
            assert ok.status_code == 200 and 'id="runs"' in ok.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
