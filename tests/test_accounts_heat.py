"""The premise area of heat accounts in the account store: imported from the registry, dated like
every setting (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from accounts_support import ACCOUNTS_CSV, Clock, db_url, local, make_lake  # noqa: F401  (fixtures)

from accounts import settings as st
from accounts.errors import Invalid
from accounts.nightly import settings_in_force
from accounts.registry import import_from_lake
from accounts.store import open_store

D = dt.date(2026, 11, 20)
CSV = ACCOUNTS_CSV.replace("contacts\n", "contacts,premise_area\n").replace(",self:+8613800000001\n",
                                                                             ",self:+8613800000001,\n")
CSV = "\n".join(line + ("," if line.count(",") == 9 else "") for line in CSV.strip().split("\n")) + "\n"
CSV += "1004,4,cn-bj-res-heat-area,postpaid,,,,,,,86.45\n"


def test_premise_area_is_a_dated_setting(tmp_path, db_url):
    store = open_store(make_lake(tmp_path / "lake", CSV), db_url)
    try:
        import_from_lake(store, changed_by="test")
        rows = {r["account_id"]: r for r in settings_in_force(store, D).to_pylist()}
        assert rows["1004"]["premise_area"] == Decimal("86.45") and rows["1001"]["premise_area"] is None
        store.clock = Clock(local(store.lake, D + dt.timedelta(days=1), 8))
        who = {"changed_by": "operator", "channel": "counter"}
        r = st.set_premise_area(store, "1004", "90.10", **who)
        assert r["changed"] and r["settings"]["premise_area"] == "90.10"
        assert settings_in_force(store, D).to_pylist()[3]["premise_area"] == Decimal("86.45")
        assert settings_in_force(store, D + dt.timedelta(days=1)).to_pylist()[3]["premise_area"] == Decimal("90.10")
        with pytest.raises(Invalid, match="premise area"):
            st.set_premise_area(store, "1004", "0", **who)
        with pytest.raises(Invalid, match="needs the premise area"):
            st.change(store, "1004", premise_area_centi=None, **who)
    finally:
        store.close()


def test_resident_page_shows_a_heat_account_like_the_others(tmp_path):
    """A two-part heat account on the resident page: its premise area, heat in kWh, the month-end bill
    with its basic and energy lines named in the page's language."""
    from test_billing_heat import METERED, feed, make

    from accounts.web import data, i18n
    from accounts.web.render import ENV
    from billing.batch import bill_range

    lake = make(tmp_path)
    feed(lake, dt.date(2026, 11, 13), 18)
    bill_range(lake, dt.date(2026, 11, 13), dt.date(2026, 11, 30))
    store = open_store(lake)
    try:
        import_from_lake(store, changed_by="test")
        store.clock = Clock(local(lake, dt.date(2026, 12, 1), 8))
        d = data.resident(store, METERED)
        assert d["unit"] == "kWh" and d["account"]["utility"] == "heat"
        assert d["account"]["settings"]["premise_area"] == "100.00"
        assert [u["quantity"] for u in d["usage"] if u["day"] >= dt.date(2026, 11, 15)] == [pytest.approx(38.4)] * 16
        [bill] = d["bills"]
        assert {ln["band"]: ln["amount"] for ln in bill["lines"]} == {"basic": "158.68", "energy": "98.30"}
        for lang, words in (("en", ("Premise area", "100.00 m²", "basic", "energy", "(kWh)")),
                            ("zh", ("供暖面积", "100.00 m²", "基本热价", "计量热价", "热"))):
            html = ENV.get_template("resident.html").render(
                lang=lang, html_lang=lang, t=i18n.translator(lang), csrf="x", here="/", back="/", user=METERED,
                error=None, notice=None, form={}, ref="r", chart="", **d)
            assert all(w in html for w in words), (lang, [w for w in words if w not in html])
    finally:
        store.close()
