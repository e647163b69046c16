"""The resident page and the operator console in a real headless Chromium (Debian's ``chromium``,
driven by Playwright for Python), against ``meters serve`` on a settled small city; every change is
checked in the store afterwards. Each test saves a screenshot under its tmp output directory
(``METERS_SCREENSHOTS=docs/img`` also writes the README's)."""
from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from web_support import MOTHER, NEIGHBOUR, OPERATOR, PASSWORD, settled_city

from accounts.schema import contacts, payments, settings
from accounts.status import account_status

pytestmark = pytest.mark.real_clock  # the city is billed up to the day before yesterday, whatever today is

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api")
if CHROMIUM is None:
    pytest.skip("chromium is not installed (make setup installs it)", allow_module_level=True)

DAUGHTER = "13912345678"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    c = settled_city(tmp_path_factory.mktemp("web"))
    yield c
    c.server.stop()
    c.store.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser, locale: str):
    """A phone-sized page (360 px) whose browser asks for ``locale``."""
    ctx = browser.new_context(viewport={"width": 360, "height": 780}, locale=locale)
    yield ctx.new_page()
    ctx.close()


@pytest.fixture
def page(browser):
    yield from _page(browser, "en-US")


@pytest.fixture
def page_zh(browser):
    yield from _page(browser, "zh-CN")


def shot(page, tmp_path: Path, name: str) -> Path:
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 1000
    if os.environ.get("METERS_SCREENSHOTS"):
        dest = Path(os.environ["METERS_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, dest / out.name)
    return out


def check_labels(page) -> None:
    """Every visible input, select and button is named: inputs and selects by a <label>."""
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(e => e.type !== 'hidden' && (!e.labels || e.labels.length === 0)).map(e => e.name)""")
    assert unlabelled == []
    nameless = page.evaluate("""() => [...document.querySelectorAll('button')]
        .filter(b => !b.textContent.trim()).length""")
    assert nameless == 0


def tab_to(page, selector: str, limit: int = 40) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} cannot be reached with the keyboard")


def n_payments(store) -> int:
    with store.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one()


def test_the_daughter_pays_sets_auto_topup_and_adds_herself(city, page, tmp_path):
    before = Decimal(account_status(city.store, MOTHER)["balance"])
    page.goto(city.url + "/")
    check_labels(page)
    page.get_by_label("User number").fill(MOTHER)
    page.get_by_role("button", name="Look up").click()
    assert page.locator("#balance").inner_text() == f"{before:.2f}"
    assert page.locator("#name").inner_text() == "王*英"
    assert page.locator("svg.chart rect").count() == 2           # the two settled days
    assert "cn" not in page.locator("#h-bills").inner_text()     # a prepaid account has no bills
    check_labels(page)

    page.get_by_label("Amount to pay").fill("100")
    page.get_by_label("Payer (optional)").fill("女儿")
    page.locator("#pay").click()
    assert page.locator("#notice").is_visible()
    assert page.locator("#balance").inner_text() == f"{before + 100:.2f}"

    page.get_by_label("When the balance is below").fill("20")
    page.get_by_label("add", exact=True).fill("100")
    page.locator("#save-topup").click()
    assert "20.00" in page.locator("#auto-topup").inner_text() and "100.00" in page.locator("#auto-topup").inner_text()

    page.get_by_label("Phone number", exact=True).fill(DAUGHTER)
    page.get_by_label("Relation").select_option("daughter")
    page.locator("#add-contact").click()
    assert "139*****678"[:3] in page.locator("#contacts").inner_text()
    assert DAUGHTER not in page.content()                        # the page is a channel: recipients masked
    shot(page, tmp_path, "resident")

    with city.store.read() as conn:
        pay = conn.execute(sa.select(payments).where(payments.c.account_id == MOTHER)).one()
        s = conn.execute(sa.select(settings).where(settings.c.account_id == MOTHER)
                         .order_by(settings.c.id.desc())).first()
        rcpts = {r.recipient: r for r in conn.execute(sa.select(contacts).where(contacts.c.account_id == MOTHER))}
    assert (pay.amount_cents, pay.channel, pay.payer) == (10000, "web", "女儿")
    assert (s.topup_below_cents, s.topup_amount_cents, s.channel) == (2000, 10000, "web")
    assert rcpts[DAUGHTER].relation == "daughter" and not rcpts[DAUGHTER].removed
    assert Decimal(account_status(city.store, MOTHER)["balance"]) == before + 100

    page.reload()                                                # the same payment form again: applied once
    page.locator("#remove-topup").click()
    assert page.locator("#auto-topup").inner_text() == "off"


@pytest.mark.parametrize("amount", ["abc", "1.234", "-5", "0", "2000000"])
def test_a_bad_amount_shows_an_error_and_changes_nothing(city, page, tmp_path, amount):
    n, before = n_payments(city.store), account_status(city.store, NEIGHBOUR)["balance"]
    page.goto(f"{city.url}/?user={NEIGHBOUR}")
    page.get_by_label("Amount to pay").fill(amount)
    page.locator("#pay").click()
    err = page.get_by_role("alert")
    assert err.is_visible() and amount in err.inner_text()
    assert page.get_by_label("Amount to pay").input_value() == amount   # kept for correction
    shot(page, tmp_path, "bad-amount")
    assert (n_payments(city.store), account_status(city.store, NEIGHBOUR)["balance"]) == (n, before)


def test_chinese_by_the_browser_language_and_english_by_the_switch(city, page_zh, tmp_path):
    page = page_zh
    page.goto(f"{city.url}/?user={NEIGHBOUR}")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("#status").inner_text() == "已停供"
    page.get_by_label("缴费金额").fill("1.234")
    page.get_by_role("button", name="缴费").click()
    assert page.get_by_role("alert").inner_text() == "错误: 金额“1.234”超过两位小数"
    shot(page, tmp_path, "resident-zh")
    page.get_by_role("link", name="English").click()
    assert page.locator("#status").inner_text() == "disconnected"
    page.goto(city.url + "/")
    assert page.get_by_label("User number").is_visible()          # the choice is remembered


def test_keyboard_only(city, page):
    n = n_payments(city.store)
    page.goto(city.url + "/")
    tab_to(page, "#user")
    page.keyboard.type(NEIGHBOUR)
    page.keyboard.press("Enter")
    page.wait_for_selector("#balance")
    tab_to(page, "#amount")
    page.keyboard.type("12.50")
    page.keyboard.press("Enter")
    page.wait_for_selector("#notice")
    assert n_payments(city.store) == n + 1
    page.goto(city.url + "/console/login")
    tab_to(page, "#name")
    page.keyboard.type(OPERATOR)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#runs")


def test_the_console_refuses_strangers(city, page):
    r = page.goto(city.url + "/console")
    assert r.status == 401 and page.get_by_label("Password").is_visible()
    assert page.goto(f"{city.url}/console/account?user={MOTHER}").status == 401
    page.get_by_label("Operator").fill(OPERATOR)
    page.get_by_label("Password").fill("wrong password!")
    page.get_by_role("button", name="Sign in").click()
    assert "Wrong operator name or password." in page.get_by_role("alert").inner_text()
    assert page.locator("#runs").count() == 0


def test_the_operator_sees_last_night_and_finds_the_account_in_arrears(city, page, tmp_path):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(city.url + "/console/login")
    check_labels(page)
    page.get_by_label("Operator").fill(OPERATOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    runs = page.locator("#runs tbody tr")
    assert runs.first.locator("td").first.inner_text() == city.last_day.isoformat()
    assert "3" in runs.first.locator("td").nth(2).inner_text()      # accounts billed
    assert page.locator("svg.chart polyline").count() == 1          # electricity's load curve
    arrears = page.locator("#arrears")
    assert NEIGHBOUR in arrears.inner_text() and MOTHER not in arrears.inner_text()
    check_labels(page)
    shot(page, tmp_path, "console")
    page.get_by_role("link", name=NEIGHBOUR).click()
    assert page.locator("#status").inner_text() == "disconnected"
    assert page.locator("#ledger tbody tr").count() >= 2            # opening and the charges
    assert "13800000002" in page.content()                          # operators see contacts in full
    shot(page, tmp_path, "console-account")
    page.get_by_role("button", name=f"Sign out ({OPERATOR})").click()
    assert page.goto(city.url + "/console").status == 401
