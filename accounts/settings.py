"""Dated account settings: tariff, mode, warning levels, auto top-up, contacts.

A change never updates a row: it appends a full new settings row (or a contact add/remove row) with
``effective_from``, who changed it and through which channel. The settings in force on a day are the
newest row with ``effective_from`` on or before it, so re-running a settled day reads what was in force
then. A change may not take effect on a day the nightly batch already settled.
"""
from __future__ import annotations

import datetime as dt

import pyarrow as pa
import sqlalchemy as sa

from meters import recipients
from meters.errors import MetersError
from meters.recipients import DEFAULT_LANGUAGE
from meters.registry import load_tariffs
from meters.schemas import ACCOUNTS, CONTACTS, MODES

from .errors import Invalid, NotFound
from .money import decimal, fmt, to_cents
from .schema import accounts, contacts, settings, settled_days
from .store import Store, utcnow

SETTING_FIELDS = ("tariff_id", "mode", "warn_1_cents", "warn_2_cents", "topup_below_cents", "topup_amount_cents",
                  "premise_area_centi")
LANGUAGES_DEFAULT = DEFAULT_LANGUAGE


_IN_FORCE: dict = {}   # the statements of in_force, built once (SQLAlchemy then reuses their compiled form)


def in_force(conn, day: dt.date, table: sa.Table, partition: list, account_id=None):
    """Rows of a dated table in force on ``day``: the newest per ``partition`` key (of one account, or
    of a collection of accounts, or of all)."""
    many = isinstance(account_id, (set, frozenset, list, tuple))
    which = "many" if many else "one" if account_id is not None else "all"
    key = (table.name, tuple(c.name for c in partition), which)
    q = _IN_FORCE.get(key)
    if q is None:
        rank = sa.func.row_number().over(partition_by=partition,
                                         order_by=(table.c.effective_from.desc(), table.c.id.desc())).label("rank")
        cond = [table.c.effective_from <= sa.bindparam("day")]
        if which == "many":
            cond.append(table.c.account_id.in_(sa.bindparam("ids", expanding=True)))
        elif which == "one":
            cond.append(table.c.account_id == sa.bindparam("id"))
        sub = sa.select(table, rank).where(*cond).subquery()
        q = _IN_FORCE[key] = sa.select(sub).where(sub.c.rank == 1).order_by(*[sub.c[c.name] for c in partition])
    params = {"day": day}
    if many:
        params["ids"] = sorted(account_id)
    elif account_id is not None:
        params["id"] = account_id
    return conn.execute(q, params).all()


def current(conn, account_id: str, day: dt.date):
    """The settings row of ``account_id`` in force on ``day`` (:class:`NotFound` for an unknown account)."""
    rows = in_force(conn, day, settings, [settings.c.account_id], account_id)
    if not rows:
        if conn.execute(sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id)).first() is None:
            raise NotFound(f"unknown user number {account_id!r}")
        raise NotFound(f"account {account_id} has no settings in force on {day}")
    return rows[0]


def check_effective(conn, store: Store, effective_from: dt.date | None) -> dt.date:
    day = effective_from or store.today()
    last = conn.execute(sa.select(sa.func.max(settled_days.c.day))).scalar()
    if last is not None and day <= last:
        raise Invalid(f"a change cannot take effect on {day}: days up to {last} are settled "
                      "(re-running them must give the same answer)")
    return day


def validate(store: Store, account_id: str, row: dict, utility: str) -> None:
    """Raise :class:`Invalid` for a settings row that the nightly batch could not apply."""
    if row["mode"] not in MODES:
        raise Invalid(f"mode {row['mode']!r} must be one of {', '.join(MODES)}")
    cat = load_tariffs(store.lake, heating=True)
    t = cat.get(row["tariff_id"])
    if t is None:
        raise Invalid(f"unknown tariff {row['tariff_id']!r} (known: {', '.join(sorted(cat))})")
    if t[-1].utility != utility:
        raise Invalid(f"tariff {row['tariff_id']} is for {t[-1].utility}; account {account_id} is {utility}")
    if t[-1].utility == "heat" and row.get("premise_area_centi") is None:
        raise Invalid(f"heating tariff {row['tariff_id']} needs the premise area (m²)")
    if row["warn_2_cents"] > row["warn_1_cents"]:
        raise Invalid(f"warning level 2 ({fmt(row['warn_2_cents'])}) must not exceed level 1 ({fmt(row['warn_1_cents'])})")
    if (row["topup_below_cents"] is None) != (row["topup_amount_cents"] is None):
        raise Invalid("auto top-up needs both below and amount")
    if row["topup_amount_cents"] is not None and row["topup_amount_cents"] <= 0:
        raise Invalid("auto top-up amount must be positive")


def change(store: Store, account_id: str, *, changed_by: str, channel: str,
           effective_from: dt.date | None = None, **values) -> dict:
    """Append a settings row for ``account_id``: the row in force on ``effective_from`` (default:
    today) with ``values`` (fields of :data:`SETTING_FIELDS`) replaced. Nothing is written when
    nothing changes. Returns ``{"user_number", "changed", "effective_from", "settings"}``."""
    unknown = set(values) - set(SETTING_FIELDS)
    if unknown:
        raise Invalid(f"unknown setting(s) {', '.join(sorted(unknown))}")
    with store.write() as conn:
        day = check_effective(conn, store, effective_from)
        old = current(conn, account_id, day)
        new = {f: getattr(old, f) for f in SETTING_FIELDS} | values
        utility = conn.execute(sa.select(accounts.c.utility).where(accounts.c.account_id == account_id)).scalar_one()
        validate(store, account_id, new, utility)
        changed = new != {f: getattr(old, f) for f in SETTING_FIELDS}
        if changed:
            conn.execute(sa.insert(settings).values(account_id=account_id, effective_from=day, changed_at=utcnow(),
                                                    changed_by=changed_by, channel=channel, **new))
    return {"user_number": account_id, "changed": changed, "effective_from": day.isoformat(),
            "settings": public(new)}


def public(row: dict) -> dict:
    """A settings row as the API and ``--json`` show it (money as ``"12.34"``)."""
    topup = None
    if row["topup_below_cents"] is not None:
        topup = {"below": fmt(row["topup_below_cents"]), "amount": fmt(row["topup_amount_cents"])}
    return {"tariff_id": row["tariff_id"], "mode": row["mode"],
            "warnings": [fmt(row["warn_1_cents"]), fmt(row["warn_2_cents"])], "auto_topup": topup,
            "premise_area": None if row.get("premise_area_centi") is None else fmt(row["premise_area_centi"])}


def set_premise_area(store: Store, account_id: str, area, **who) -> dict:
    """The premise's floor area in m² (heating tariffs bill by it), dated like every setting."""
    cents = to_cents(area, "premise area")
    if not 0 < cents <= 10_000_000:
        raise Invalid(f"premise area {area} m² must be above 0 and at most 100000")
    return change(store, account_id, premise_area_centi=cents, **who)


def set_auto_topup(store: Store, account_id: str, below, amount, **who) -> dict:
    """Auto top-up: when the balance falls below ``below`` add ``amount`` (both None: off)."""
    if below is None and amount is None:
        return change(store, account_id, topup_below_cents=None, topup_amount_cents=None, **who)
    if below is None or amount is None:
        raise Invalid("auto top-up needs both below and amount")
    return change(store, account_id, topup_below_cents=to_cents(below, "below", positive=False),
                  topup_amount_cents=to_cents(amount, "amount"), **who)


def set_warnings(store: Store, account_id: str, levels, **who) -> dict:
    """Low-balance warning levels ``[level 1, level 2]`` (level 2 ≤ level 1)."""
    if not isinstance(levels, (list, tuple)) or len(levels) != 2:
        raise Invalid("warnings must be two levels [level 1, level 2]")
    return change(store, account_id, warn_1_cents=to_cents(levels[0], "warning level 1", positive=False),
                  warn_2_cents=to_cents(levels[1], "warning level 2", positive=False), **who)


_CONTACTS_OF = (sa.select(contacts.c.recipient, contacts.c.relation, contacts.c.language, contacts.c.removed)
                .where(contacts.c.account_id == sa.bindparam("id"), contacts.c.effective_from <= sa.bindparam("day"))
                .order_by(contacts.c.recipient, contacts.c.effective_from, contacts.c.id))


def contacts_of(conn, account_id: str, day: dt.date) -> list[dict]:
    """:func:`contacts_by_account` of one account, from one index range scan: its rows up to ``day``
    by recipient, oldest first, the newest of each recipient kept (no window function: the hot read
    ``GET /v1/accounts/{n}`` runs this)."""
    newest = {}
    for r in conn.execute(_CONTACTS_OF, {"id": account_id, "day": day}):
        newest[r.recipient] = r
    return [{"recipient": r.recipient, "relation": r.relation, "language": r.language}
            for r in newest.values() if not r.removed]


def contacts_by_account(conn, account_ids, day: dt.date) -> dict[str, list[dict]]:
    """The contacts in force on ``day`` of each of ``account_ids`` (or of one account id), accounts
    without any left out."""
    out: dict[str, list[dict]] = {}
    ids = account_ids if isinstance(account_ids, str) else set(account_ids)
    for r in in_force(conn, day, contacts, [contacts.c.account_id, contacts.c.recipient], ids):
        if not r.removed:
            out.setdefault(r.account_id, []).append({"recipient": r.recipient, "relation": r.relation,
                                                     "language": r.language})
    return out


def _contact_change(store: Store, account_id: str, recipient: str, relation: str, language: str, removed: bool,
                    *, changed_by: str, channel: str, effective_from: dt.date | None = None) -> dict:
    for what, v in (("recipient", recipient), ("relation", relation), ("language", language)):
        if not isinstance(v, str) or not v.strip() or len(v) > 200:
            raise Invalid(f"contact {what} must be non-empty text of at most 200 characters")
    recipient = recipient.strip()
    if not removed:
        try:
            recipient, suffix = recipients.split_language(recipient)
            language = recipients.language(suffix or language)
            recipients.channel_of(recipient)
        except MetersError as e:
            raise Invalid(str(e)) from None
    with store.write() as conn:
        day = check_effective(conn, store, effective_from)
        current(conn, account_id, day)
        now = {c["recipient"]: c for c in contacts_of(conn, account_id, day)}
        old = now.get(recipient)
        if removed and old is None:
            raise NotFound(f"account {account_id} has no contact {recipient!r}")
        changed = removed or old != {"recipient": recipient, "relation": relation, "language": language}
        if changed:
            conn.execute(sa.insert(contacts).values(
                account_id=account_id, recipient=recipient, relation=relation if not removed else old["relation"],
                language=language if not removed else old["language"], removed=removed, effective_from=day,
                changed_at=utcnow(), changed_by=changed_by, channel=channel))
        result = contacts_of(conn, account_id, day)
    return {"user_number": account_id, "changed": changed, "effective_from": day.isoformat(), "contacts": result}


def add_contact(store: Store, account_id: str, recipient: str, relation: str = "self",
                language: str = LANGUAGES_DEFAULT, **who) -> dict:
    """Add (or change the relation/language of) an alert recipient of ``account_id``."""
    return _contact_change(store, account_id, recipient, relation, language, False, **who)


def remove_contact(store: Store, account_id: str, recipient: str, **who) -> dict:
    """Stop sending ``account_id``'s alerts to ``recipient``."""
    return _contact_change(store, account_id, recipient or "", "-", "-", True, **who)


def settings_in_force(store: Store, day: dt.date) -> pa.Table:
    """Every account with the settings in force on ``day``, in the lake's ``accounts`` schema
    (``balance`` is the opening balance), sorted by account."""
    with store.read() as conn:
        rows = in_force(conn, day, settings, [settings.c.account_id])
        acc = {r.account_id: r for r in conn.execute(sa.select(accounts)).all()}
    return pa.Table.from_pylist([{
        "account_id": r.account_id, "meter_id": acc[r.account_id].meter_id, "tariff_id": r.tariff_id,
        "mode": r.mode, "billing_day": acc[r.account_id].billing_day,
        "balance": decimal(acc[r.account_id].opening_cents), "warn_1": decimal(r.warn_1_cents),
        "warn_2": decimal(r.warn_2_cents), "topup_below": decimal(r.topup_below_cents),
        "topup_amount": decimal(r.topup_amount_cents),
        "premise_area": decimal(r.premise_area_centi)} for r in rows], ACCOUNTS)


def contacts_in_force(store: Store, day: dt.date) -> pa.Table:
    """Every alert recipient in force on ``day``, in the lake's ``contacts`` schema."""
    with store.read() as conn:
        rows = in_force(conn, day, contacts, [contacts.c.account_id, contacts.c.recipient])
    return pa.Table.from_pylist([{"account_id": r.account_id, "recipient": r.recipient, "relation": r.relation,
                                  "language": r.language} for r in rows if not r.removed], CONTACTS)
