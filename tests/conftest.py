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


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session (tests/pg_cluster.py); each test that uses it
    creates its own database."""
    from pg_cluster import PostgresCluster

    try:
        cluster = PostgresCluster().start()
    except RuntimeError as e:
        pytest.skip(str(e))
    yield cluster
    cluster.stop()
