"""Configuration: flag > METERS_<COMMAND>_<OPTION> > METERS_<OPTION> > meters.toml > default, paths
in the file resolved against the file, secrets masked by `meters config show`."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from meters.cli import cli

SECRET = "s3cr3t-pw-xyz"


@pytest.fixture
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("METERS_") and k != "METERS_SHARED_DATA":
            monkeypatch.delenv(k)
    return monkeypatch


def show(args, env=None, cwd=None):
    r = CliRunner().invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    return out, {o["option"]: (o["value"], o["source"]) for o in out["options"]}


def write_config(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_file_then_env_then_flag(tmp_path, clean_env):
    conf = write_config(tmp_path / "etc" / "meters.toml", f"""
lake = "data/lake"
broker_url = "mqtt://ingest:{SECRET}@127.0.0.1:1884"
[ingest]
workers = 3
batch-rows = 1000
[broker.start]
port = 1999
""")
    out, opts = show(["--config", str(conf), "config", "show", "ingest"])
    assert out["config_file"] == str(conf.resolve())
    # a relative path in the file is relative to the file, not to the working directory
    assert opts["--lake"] == (str(tmp_path / "etc" / "data" / "lake"), "file")
    assert opts["--workers"] == (3, "file") and opts["--batch-rows"] == (1000, "file")
    assert opts["--client-id"] == ("meters-ingest", "default")
    assert SECRET not in json.dumps(out) and opts["--broker"][0] == "mqtt://ingest:***@127.0.0.1:1884"
    _, opts = show(["--config", str(conf), "config", "show", "broker", "start"])
    assert opts["--port"] == (1999, "file")
    # env over file; the command's own variable over the general one
    clean_env.setenv("METERS_WORKERS", "4")
    clean_env.setenv("METERS_LAKE", "/srv/lake")
    _, opts = show(["--config", str(conf), "config", "show", "ingest"])
    assert opts["--workers"] == ("4", "env METERS_WORKERS") and opts["--lake"] == ("/srv/lake", "env METERS_LAKE")
    clean_env.setenv("METERS_INGEST_WORKERS", "5")
    _, opts = show(["--config", str(conf), "config", "show", "ingest"])
    assert opts["--workers"] == ("5", "env METERS_INGEST_WORKERS")


def test_the_values_reach_the_command(tmp_path, clean_env):
    """`meters init` with no --lake creates the lake the file names; the env overrides it; a flag
    overrides both."""
    conf = write_config(tmp_path / "conf" / "meters.toml", 'lake = "from-file"\n[init]\ntimezone = "Europe/Paris"\n')
    runner = CliRunner()
    r = runner.invoke(cli, ["--config", str(conf), "init"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "conf" / "from-file").is_dir() and "Europe/Paris" in r.output
    r = runner.invoke(cli, ["init"], env={"METERS_CONFIG": str(conf), "METERS_LAKE": str(tmp_path / "from-env"),
                                          "METERS_INIT_TIMEZONE": "UTC"})
    assert r.exit_code == 0 and (tmp_path / "from-env").is_dir() and "time zone UTC" in r.output
    r = runner.invoke(cli, ["init", "--lake", str(tmp_path / "from-flag")],
                      env={"METERS_CONFIG": str(conf), "METERS_LAKE": str(tmp_path / "from-env")})
    assert r.exit_code == 0 and (tmp_path / "from-flag").is_dir()


def test_working_directory_file_is_found(tmp_path, clean_env):
    write_config(tmp_path / "meters.toml", "[bill]\nwait = 30\n")
    clean_env.chdir(tmp_path)
    out, opts = show(["config", "show", "bill"])
    assert out["config_file"] == str((tmp_path / "meters.toml").resolve())
    assert opts["--wait"] == (30, "file")


def test_config_errors_are_one_line(tmp_path, clean_env):
    runner = CliRunner()
    r = runner.invoke(cli, ["--config", str(tmp_path / "nope.toml"), "config", "show"])
    assert r.exit_code == 1 and r.output.strip() == f"error: configuration file {tmp_path / 'nope.toml'} not found"
    bad = write_config(tmp_path / "bad.toml", "lake = \n")
    r = runner.invoke(cli, ["init"], env={"METERS_CONFIG": str(bad)})
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "bad.toml" in r.output
    r = runner.invoke(cli, ["config", "show", "nosuch"])
    assert r.exit_code == 1 and "no command 'nosuch'" in r.output


def test_secret_keys_are_masked(tmp_path, clean_env):
    from meters.config import mask

    assert mask("broker", f"mqtt://u:{SECRET}@h:1") == "mqtt://u:***@h:1"
    assert mask("webhook-secret", SECRET) == "***" and mask("lake", "lake") == "lake"
    assert mask("show-secrets", False) is False and mask("tls-key", "/etc/k.pem", is_path=True) == "/etc/k.pem"
