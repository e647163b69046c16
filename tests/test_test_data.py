"""The test data: vendored files stay small and named in tests/data/README.md; data that is missing
fails the run under CI and only skips locally."""
from __future__ import annotations

import pytest

from conftest import TEST_DATA, missing


def test_missing_data_fails_under_ci_and_skips_locally(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        missing("no data")
    for local in ("", "false", "0"):
        monkeypatch.setenv("CI", local)
        with pytest.raises(pytest.skip.Exception):
            missing("no data")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        missing("no data")


def test_vendored_data_is_small_and_described():
    files = [p for p in TEST_DATA.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 12 * 2**20   # the 100-household LCL file is 7 MB of it
    readme = (TEST_DATA / "README.md").read_text()
    for top in {p.relative_to(TEST_DATA).parts[0] for p in files} - {"README.md"}:
        named = f"`{top}/" if (TEST_DATA / top).is_dir() else f"`{top}`"
        assert named in readme, f"tests/data/{top} is not described in tests/data/README.md"
    for p in files:
        if p.parent.name == "real-load":
            assert p.name in readme
