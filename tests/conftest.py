"""Shared fixtures: a real Mosquitto on a free loopback port, a fresh lake, the shared data dir."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from meters.broker import ManagedBroker
from meters.lake import init_lake

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("METERS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared sample data not found at {SHARED_DATA}")
    return SHARED_DATA


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
