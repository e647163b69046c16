"""Shared fixtures: a real Mosquitto on a free loopback port, a fresh lake, the test data (vendored in
tests/data) and the shared data dir (large files; missing: a skip locally, a failure under CI)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from meters.broker import ManagedBroker
from meters.lake import init_lake

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("METERS_SHARED_DATA", ROOT.parent / "shared" / "data"))
TEST_DATA = ROOT / "tests" / "data"


def missing(what: str) -> None:
    """Data a test needs is absent: fail under CI (``CI`` set, as CI services do), skip locally."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{what} (CI is set: the data must be there)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared sample data directory (the large files not vendored in tests/data)."""
    if not SHARED_DATA.exists():
        missing(f"shared sample data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def test_data() -> Path:
    """The small sample files vendored in tests/data (see its README)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory):
    """One managed Mosquitto for the whole session (tests that restart it use `broker`)."""
    broker = ManagedBroker(tmp_path_factory.mktemp("broker"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(tmp_path):
    """A managed Mosquitto of this test alone (may be stopped and restarted by the test)."""
    b = ManagedBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


@pytest.fixture
def lake(tmp_path):
    return init_lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session (tests/pg_cluster.py); each test that uses it
    creates its own database."""
    from pg_cluster import PostgresCluster

    try:
        cluster = PostgresCluster().start()
    except RuntimeError as e:
        if os.environ.get("CI"):
            raise  # CI installs PostgreSQL (make setup): a missing server is a failure there
        pytest.skip(str(e))
    yield cluster
    cluster.stop()


BILLING_NOW = "2099-12-31T00:00:00+00:00"


def pytest_configure(config):
    config.addinivalue_line("markers", "real_clock: billing reads the real (or time_machine's) clock")


@pytest.fixture(autouse=True)
def billing_clock(request, monkeypatch):
    """Tests bill fixed days of 2026–2028: billing's clock (which refuses days not yet ended) reads
    BILLING_NOW unless the test is marked ``real_clock`` or gives its own ``now``."""
    if request.node.get_closest_marker("real_clock") is None:
        import datetime as dt

        monkeypatch.setattr("billing.guards.now_utc", lambda: dt.datetime.fromisoformat(BILLING_NOW))
