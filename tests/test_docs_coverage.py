"""Everything a user meets in the lake is documented (sqlite-utils' test_docs style): every lake table
in docs/lake.md, every alert kind and every dead-letter reason code in docs/, each named in code
format. The lists come from the code, so a new table, kind or reason fails here until it is written up."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.decode import REASONS
from meters.schemas import ALERT_KINDS, TABLES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def code_words(text: str) -> set[str]:
    """Names written in code format: `name`, or a comma-separated list of them in one span."""
    return {w.strip() for span in re.findall(r"`([^`\n]+)`", text) for w in span.split(",")}


def test_code_words():
    assert code_words("the `a`, `b, c` tables; not d") == {"a", "b", "c"}


LAKE = code_words((DOCS / "lake.md").read_text())
ALL = code_words("\n".join(p.read_text() for p in sorted(DOCS.glob("*.md"))))
INGEST = code_words((DOCS / "ingest.md").read_text())


@pytest.mark.parametrize("name", list(TABLES))
def test_every_lake_table_is_in_lake_md(name):
    assert name in LAKE, f"lake table {name!r} is not described in docs/lake.md"


@pytest.mark.parametrize("kind", ALERT_KINDS)
def test_every_alert_kind_is_documented(kind):
    assert kind in ALL, f"alert kind {kind!r} is not documented in docs/"


@pytest.mark.parametrize("reason", list(REASONS))
def test_every_deadletter_reason_is_in_ingest_md(reason):
    assert reason in INGEST, f"dead-letter reason {reason!r} is not documented in docs/ingest.md"
