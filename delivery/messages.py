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
from babel import Locale
from babel.numbers import format_currency, format_percent

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
    """Integer cents as the language writes money: ``100元`` / ``1,012.50元`` in Chinese for yuan
    (zh_CN's grouping and decimal signs, as Babel writes them), Babel's currency format otherwise."""
    currency = currency or "CNY"
    cents = int(cents)
    if lang == "zh-CN" and currency == "CNY":
        return (f"{cents // 100:,}" if cents % 100 == 0 else f"{Decimal(cents) / 100:,.2f}") + "元"
    return format_currency(Decimal(cents) / 100, currency, locale=_locale(lang))


@lru_cache(maxsize=None)
def _locale(lang: str) -> Locale:
    return Locale.parse(LOCALE[lang])   # parsed once: Babel parses a locale name on every call


@lru_cache(maxsize=None)
def _env(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / lang), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=False,
                             auto_reload=False)   # templates ship with the package: no stat() per message
    env.filters["date"] = lambda d: _date(str(d), lang)
    env.filters["percent"] = lambda x: format_percent(x, locale=_locale(lang))
    env.filters["money"] = jinja2.pass_context(lambda ctx, c: money(c, ctx.get("currency"), lang))
    return env


@lru_cache(maxsize=None)
def _template(kind: str, lang: str) -> jinja2.Template:
    return _env(lang).get_template(f"{kind}.txt")


@lru_cache(maxsize=4096)
def _date(day: str, lang: str) -> str:
    return format_date(dt.date.fromisoformat(day), "long", locale=_locale(lang))


def template_names() -> list[tuple[str, str]]:
    """(language, kind) of every template."""
    return [(lang, kind) for lang in LANGUAGES for kind in ALERT_KINDS]


def render(kind: str, lang: str, values: dict, *, corrects: str | None = None) -> str:
    """The message text of an alert of ``kind`` with ``values`` in language ``lang``."""
    lang = lang if lang in LANGUAGES else LANGUAGES[0]
    utility = values.get("utility") or "electricity"
    t = _template(kind, lang)
    # the values as the context itself (shared: the templates use no globals): half of render()'s cost
    ctx = t.new_context({**values, "meter": METER[lang].get(utility, utility),
                         "supply": SUPPLY[lang].get(utility, utility)}, shared=True)
    text = "".join(t.root_render_func(ctx)).strip()
    if values.get("estimated") is True:
        text += ESTIMATED[lang]
    return (CORRECTION[lang] + text) if corrects else text
