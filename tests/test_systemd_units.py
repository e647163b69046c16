"""contrib/systemd: the units pass `systemd-analyze verify` (no warning either), run commands and
options the CLI has, restart the services, and carry the hardening options."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from test_docs_commands import check

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "contrib" / "systemd"
INSTALLED = "/opt/meters/bin/meters"
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
             "User": "meters"}
SERVICES = ["meters-broker.service", "meters-ingest.service", "meters-serve.service", "meters-bill.service",
            "meters-notify.service"]


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read(UNITS / name)
    return cp


def test_every_unit_is_here():
    names = {p.name for p in UNITS.iterdir()}
    assert set(SERVICES) | {"meters-bill.timer", "meters.toml.example"} <= names


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing on CI (apt-get install systemd)")
        pytest.skip("systemd-analyze not installed")
    meters = Path(sys.executable).with_name("meters")
    assert meters.exists()
    for p in UNITS.glob("meters-*"):  # the installed path is the one of this checkout's venv
        (tmp_path / p.name).write_text(p.read_text().replace(INSTALLED, str(meters)))
    files = sorted(str(p) for p in tmp_path.iterdir())
    r = subprocess.run([tool, "verify", "--man=no", *files], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_services_are_hardened_and_run_real_commands(name):
    svc = unit(name)["Service"]
    for key, value in HARDENING.items():
        assert svc.get(key) == value, f"{name}: {key}={svc.get(key)!r}, want {value!r}"
    assert svc["Environment"] == "METERS_CONFIG=/etc/meters/meters.toml"
    command = svc["ExecStart"]
    assert command.startswith(INSTALLED + " ")
    check("meters " + command[len(INSTALLED) + 1:])  # a command and options the CLI has
    if svc["Type"] == "oneshot":
        assert "Restart" not in svc and svc["SuccessExitStatus"] == "3"
    else:
        assert svc["Restart"] in ("always", "on-failure")


def test_ordering_and_timer():
    assert "meters-broker.service" in unit("meters-ingest.service")["Unit"]["After"]
    timer = unit("meters-bill.timer")["Timer"]
    assert timer["Unit"] == "meters-bill.service" and timer["Persistent"] == "true"
    assert unit("meters-broker.service")["Service"]["ExecStart"].split()[1:4] == ["broker", "start", "--foreground"]


def test_example_configuration_names_real_options():
    """Every key of the example meters.toml is an option of its command (or, at the top, of some command)."""
    import click

    from meters.cli import cli
    from meters.config import option_key

    conf = tomllib.loads((UNITS / "meters.toml.example").read_text())
    ctx = click.Context(cli, info_name="meters")

    def options(cmd):
        return {option_key(p) for p in cmd.params} | {p.name for p in cmd.params}

    everything = set()
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        everything |= options(cmd)
        for sub in getattr(cmd, "commands", {}).values():
            everything |= options(sub)
    for key, value in conf.items():
        if not isinstance(value, dict):
            assert key in everything, key
    for path, table in [(("broker", "start"), conf["broker"]["start"]), (("ingest",), conf["ingest"]),
                        (("bill",), conf["bill"]), (("serve",), conf["serve"])]:
        cmd = cli.get_command(ctx, path[0])
        for name in path[1:]:
            cmd = cmd.commands[name]
        assert set(table) <= options(cmd), (path, set(table) - options(cmd))
