"""The import graph keeps its shape: `lint-imports` (import-linter, contracts in pyproject.toml) passes,
and the contracts break when a stage imports another, the floor imports a stage, meters grows a cycle,
or shipped code imports the plain-Python references."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "billing", "simulator", "accounts", "delivery")
PACKAGES = ("meters", *STAGES, "reference")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports not found: install the dev extras (pip install -e '.[dev]')"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([exe, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_cover_the_stages_and_the_floor():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(cfg["root_packages"]) == set(PACKAGES)
    by_type = {c["type"]: c for c in cfg["contracts"]}
    assert set(by_type["independence"]["modules"]) == set(STAGES)
    assert by_type["layers"]["layers"][-1] == "meters"
    assert by_type["acyclic_siblings"]["ancestors"] == ["meters"]
    assert by_type["forbidden"]["forbidden_modules"] == ["reference"]
    assert set(by_type["forbidden"]["source_modules"]) == {"meters", *STAGES}
    # only the demo (which runs every stage) may import a stage from meters
    assert all(i.startswith("meters.demo -> ") for i in by_type["layers"].get("ignore_imports", []))


def test_import_contracts_are_kept():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " 0 broken" in r.stdout


def test_contracts_break_on_a_bad_import(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "simulator" / "faults.py", "a") as f:    # a stage importing another
        f.write("\nimport ingest.decode\n")
    with open(tmp_path / "meters" / "schemas.py", "a") as f:      # the floor importing a stage
        f.write("\nimport billing\n")
    with open(tmp_path / "meters" / "errors.py", "a") as f:       # a cycle inside meters
        f.write("\n\ndef _late():\n    from . import lake\n")
    with open(tmp_path / "ingest" / "batch.py", "a") as f:        # shipped code using a reference
        f.write("\nimport reference\n")
    r = lint_imports(tmp_path)
    assert r.returncode != 0
    for name in ("Pipeline stages are independent", "Stages sit above the shared floor meters",
                 "No import cycles inside meters", "Shipped packages do not import the references"):
        assert f"{name} BROKEN" in r.stdout, r.stdout[-4000:]
