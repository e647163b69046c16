"""Message texts: one Jinja2 template per alert kind and language (``delivery/templates/<language>/
<kind>.txt``), money and dates formatted by Babel for the language (``100元``, ``2026年11月5日``;
``CN¥100.00``, ``November 5, 2026``)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import jinja2
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal, format_percent

from meters.recipients import LANGUAGES
from meters.schemas import ALERT_KINDS

TEMPLATES = Path(__file__).with_name("templates")
LOCALE = {"zh-CN": "zh_CN", "en": "en_US"}
METER = {"zh-CN": {"electricity": "电表", "water": "水表", "gas": "燃气表"},
         "en": {"electricity": "electricity", "water": "water", "gas": "gas"}}
SUPPLY = {"zh-CN": {"electricity": "电", "water": "水", "gas": "气"},
          "en": {"electricity": "electricity", "water": "water", "gas": "gas"}}
CORRECTION = {"zh-CN": "【更正】", "en": "Correction: "}
ESTIMATED = {"zh-CN": "（注：当日读数大部分缺失，为估算值。）",
             "en": " (Estimated: most of this day's readings are missing.)"}


def money(cents: int, currency: str | None, lang: str) -> str:
    """Integer cents as the language writes money: ``100元`` / ``12.50元`` in Chinese for yuan,
    Babel's currency format otherwise."""
    amount = Decimal(int(cents)) / 100
    currency = currency or "CNY"
    if lang == "zh-CN" and currency == "CNY":
        return format_decimal(amount, "#,##0" if amount == amount.to_integral() else "#,##0.00",
                              locale=LOCALE[lang]) + "元"
    return format_currency(amount, currency, locale=LOCALE[lang])


@lru_cache(maxsize=None)
def _env(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / lang), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=False)
    env.filters["date"] = lambda d: format_date(dt.date.fromisoformat(str(d)), "long", locale=LOCALE[lang])
    env.filters["percent"] = lambda x: format_percent(x, locale=LOCALE[lang])
    return env


def template_names() -> list[tuple[str, str]]:
    """(language, kind) of every template."""
    return [(lang, kind) for lang in LANGUAGES for kind in ALERT_KINDS]


def render(kind: str, lang: str, values: dict, *, corrects: str | None = None) -> str:
    """The message text of an alert of ``kind`` with ``values`` in language ``lang``."""
    lang = lang if lang in LANGUAGES else LANGUAGES[0]
    utility = values.get("utility") or "electricity"
    env = _env(lang)
    env.filters["money"] = lambda c: money(c, values.get("currency"), lang)
    text = env.get_template(f"{kind}.txt").render(
        **values, meter=METER[lang].get(utility, utility), supply=SUPPLY[lang].get(utility, utility)).strip()
    if values.get("estimated") is True:
        text += ESTIMATED[lang]
    return (CORRECTION[lang] + text) if corrects else text
