"""The night's alerts and ledger built column by column equal the row-by-row originals (reference/),
and the bulk alert ids and JSON values equal :func:`meters.outbox.alert_id` and
:func:`meters.outbox.canonical` value by value (the numba SHA-256 against :mod:`hashlib`)."""
from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import vee
from billing.alerts import Recipients, day_sections, estimated_counts
from billing.day import Settlement
from billing.money_io import fmt, fmt_column
from billing.settle import NONE_DAY, Settled
from meters import digests, outbox
from meters.schemas import UTC_MS
from reference.alerts import day_sections_rowwise
from reference.digests import alert_ids_reference, base32_reference, sha256_reference

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=90)   # quotes, \x1f, CJK, controls …


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=30))
def test_sha256_kernel_equals_hashlib(values):
    arr = pa.array(values, pa.binary())
    got = digests.sha256(arr)
    assert [bytes(r) for r in got] == sha256_reference(values)
    if len(values) > 2:                                        # a slice: the column's offset honoured
        assert [bytes(r) for r in digests.sha256(arr.slice(1))] == sha256_reference(values[1:])
    if values:                                                 # the threaded kernel (from PARALLEL_FROM values)
        offsets = np.frombuffer(arr.buffers()[1], np.int32).astype(np.int64)
        data = np.frombuffer(arr.buffers()[2], np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
        parallel = np.zeros((len(values), 32), np.uint8)
        digests.sha256_kernel(data, offsets, parallel)
        assert [bytes(r) for r in parallel] == sha256_reference(values)


@given(st.lists(st.binary(min_size=20, max_size=20), max_size=20))
def test_base32_equals_base64_module(rows):
    raw = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), 20)
    assert digests.base32_lower(raw, "al_").to_pylist() == base32_reference(rows, "al_")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.none() | TEXT, TEXT, st.none() | TEXT), max_size=20), st.sampled_from(["arrears", "payment"]))
def test_alert_ids_equal_alert_id(rows, kind):
    accounts, recipients, payments = (list(x) for x in zip(*rows)) if rows else ([], [], [])
    day = dt.date(2026, 11, 30)
    got = outbox.alert_ids(pa.array(accounts, pa.string()), day, kind, pa.array(recipients, pa.string()),
                           pa.array(payments, pa.string()))
    assert got.to_pylist() == alert_ids_reference(accounts, day, kind, recipients, payments)
    no_payment = outbox.alert_ids(pa.array(accounts, pa.string()), str(day), kind, pa.array(recipients, pa.string()))
    assert no_payment.to_pylist() == alert_ids_reference(accounts, day, kind, recipients)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(TEXT, st.integers(-2**62, 2**62), st.booleans(), st.none() | TEXT, st.booleans()),
                max_size=15))
def test_canonical_rows_equal_canonical(rows):
    n = len(rows)
    s, i, b, maybe_s, present = (list(x) for x in zip(*rows)) if rows else ([], [], [], [], [])
    d = [dt.date(2026, 1, 1) + dt.timedelta(days=k) for k in range(n)]
    got = outbox.canonical_rows(n, name=pa.array(s, pa.string()), amount=np.array(i, np.int64),
                                flag=np.array(b, bool), when=pa.array(d, pa.date32()), day=dt.date(2026, 11, 30),
                                opt=pa.array(maybe_s, pa.string()), extra=outbox.Maybe(present, True),
                                raw=outbox.Raw(pa.array(['{"a":1}'] * n, pa.string())), k="é\"")
    want = [outbox.canonical(name=s[k], amount=i[k], flag=b[k], when=d[k], day=dt.date(2026, 11, 30), opt=maybe_s[k],
                             **({"extra": True} if present[k] else {}), raw={"a": 1}, k="é\"") for k in range(n)]
    assert got.to_pylist() == want
    assert all(json.loads(t) == json.loads(w) for t, w in zip(got.to_pylist(), want))


@given(st.lists(st.integers(-10**15, 10**15), max_size=30))
def test_fmt_column_equals_fmt(values):
    assert fmt_column(np.array(values, np.int64)).to_pylist() == [fmt(v) for v in values]


def _night(data, n: int):
    """A block of ``n`` accounts with random settlement outcomes, contacts and VEE flags."""
    ints = st.integers(-10**9, 10**9)

    def arr(strategy, dtype):
        return np.array(data.draw(st.lists(strategy, min_size=n, max_size=n)), dtype)

    mask = lambda: arr(st.booleans(), bool)        # noqa: E731
    ids = data.draw(st.lists(TEXT.filter(bool), min_size=n, max_size=n, unique=True))
    acc = SimpleNamespace(account_arrow=pa.array(ids, pa.string()), account_ids=np.array(ids, dtype=object),
                          currency=np.array(data.draw(st.lists(st.sampled_from(["CNY", "EUR"]), min_size=n, max_size=n)), dtype=object),
                          utility=np.array(data.draw(st.lists(st.sampled_from(["electricity", "gas", None]), min_size=n,
                                                              max_size=n)), dtype=object),
                          meter_ids=arr(st.integers(0, 10**12), np.int64), warn_1=arr(ints, np.int64),
                          warn_2=arr(ints, np.int64), n=n)
    days = st.sampled_from([NONE_DAY, 20_000, 20_422])
    settled = Settled(after_payments=arr(ints, np.int64), after_charge=arr(ints, np.int64), balance=arr(ints, np.int64),
                      topup=arr(st.sampled_from([0, 0, 10000]), np.int64), level=arr(st.integers(0, 2), np.int8),
                      low_alert=arr(st.integers(0, 2), np.int8), arrears_since=arr(days, np.int32),
                      arrears_alert=mask(), disconnect=mask(), reconnect=mask(), disconnected=mask())
    s = Settlement(prepaid=mask(), payments=arr(ints, np.int64), first=arr(ints, np.int64), adjust=arr(ints, np.int64),
                   prepaid_settled=settled, closed=mask(), bill_cents=arr(ints, np.int64), bill_start=arr(days, np.int32),
                   bill_end=arr(days, np.int32), due_day=20_437, balance=arr(ints, np.int64), due=arr(days, np.int32),
                   notice=mask(), overdue=arr(st.integers(0, 60), np.int64), penalty=arr(ints, np.int64), partial=mask(),
                   estimated=mask(), held=mask())
    slots = 4
    quality = arr(st.lists(st.sampled_from([vee.ACTUAL] * 3 + [vee.ESTIMATED, vee.SUBSTITUTED]), min_size=slots,
                           max_size=slots), np.int8)
    flag = arr(st.lists(st.integers(0, len(vee.FLAG_NAMES) - 1), min_size=slots, max_size=slots), np.int8)
    languages = st.sampled_from([None, "", "en", "zh-CN"])
    if data.draw(st.booleans()):    # one contact per account, in the accounts' order (taken by row)
        contacts = [(i, data.draw(TEXT), data.draw(languages)) for i in ids]
    else:
        contacts = data.draw(st.lists(st.tuples(st.sampled_from(ids + ["not-in-block"]), TEXT, languages),
                                      max_size=2 * n))
    table = pa.table({"account_id": pa.array([c[0] for c in contacts], pa.string()),
                      "recipient": pa.array([c[1] for c in contacts], pa.string()),
                      "language": pa.array([c[2] for c in contacts], pa.string())})
    return acc, s, quality.reshape(n, slots), flag.reshape(n, slots), table


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.integers(0, 12))
def test_day_sections_equal_the_row_by_row_original(data, n):
    acc, s, quality, flag, contacts = _night(data, n)
    day = dt.date(2026, 11, 30)
    ts_end = pa.scalar(dt.datetime(2026, 11, 30, 15, 59, 59, 999000, tzinfo=dt.timezone.utc), UTC_MS)
    got, got_sections = day_sections(acc, day, ts_end, s, quality, flag, Recipients(None, acc, contacts))
    want, want_sections = day_sections_rowwise(acc, day, ts_end, s, quality, flag, Recipients(None, acc, contacts))
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()
    assert got_sections.tolist() == want_sections.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data(), st.integers(0, 12))
def test_ledger_day_table_equals_the_row_by_row_original(data, n):
    from billing.ledger import day_table
    from reference.ledger import day_table_rowwise

    acc, s, _, _, _ = _night(data, n)
    s.bill_start = np.array(data.draw(st.lists(st.integers(19_000, 21_000), min_size=n, max_size=n)), np.int32)
    acc.opening = np.array(data.draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n)), np.int64)
    carried = SimpleNamespace(opening=np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool),
                              balance=np.array(data.draw(st.lists(st.integers(-10**9, 10**9), min_size=n, max_size=n)),
                                               np.int64))
    grid = SimpleNamespace(day=dt.date(2026, 11, 30), start=dt.datetime(2026, 11, 29, 16, tzinfo=dt.timezone.utc))
    ts_end = pa.scalar(dt.datetime(2026, 11, 30, 15, 59, 59, 999000, tzinfo=dt.timezone.utc), UTC_MS)
    got, want = day_table(acc, grid, carried, s, ts_end), day_table_rowwise(acc, grid, carried, s, ts_end)
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), TEXT, st.booleans()), max_size=12), st.sampled_from(["some", "all", "none"]),
       st.integers(0, 3))
def test_canonical_rows_leading_maybe_and_slices(rows, present, cut):
    """A :class:`Maybe` column first (its comma sliced off), present in some, all or no rows, and
    string columns that are slices of a longer array (escapes looked for in their bytes alone)."""
    n = len(rows)
    mask = [p if present == "some" else present == "all" for p, _, _ in rows]
    texts = pa.array(['"\\\n'] * cut + [t for _, t, _ in rows], pa.string()).slice(cut)
    got = outbox.canonical_rows(n, a=outbox.Maybe(mask, pa.array([t for _, t, _ in rows], pa.string())), b=texts,
                                c=outbox.Maybe([f for _, _, f in rows], 7))
    want = [outbox.canonical(**({"a": rows[k][1]} if mask[k] else {}), b=rows[k][1], **({"c": 7} if rows[k][2] else {}))
            for k in range(n)]
    assert got.to_pylist() == want
    only = outbox.canonical_rows(n, a=outbox.Maybe(mask, True))
    assert only.to_pylist() == [outbox.canonical(**({"a": True} if m else {})) for m in mask]


@given(st.integers(0, 12), st.sampled_from([0, 4, 8, 24, 96]), st.data())
def test_estimated_counts_equal_plain_count(n, slots, data):
    """The intervals not ``actual`` per meter, found eight at a time, equal a plain count."""
    cells = st.sampled_from([vee.ACTUAL] * 6 + [vee.ESTIMATED, vee.SUBSTITUTED])
    quality = np.array(data.draw(st.lists(cells, min_size=n * slots, max_size=n * slots)), np.int8).reshape(n, slots)
    assert estimated_counts(quality).tolist() == (quality != vee.ACTUAL).sum(axis=1).tolist()
