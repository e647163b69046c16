"""Configuration of every command: flag > environment (``METERS_*``) > file (``meters.toml``) > default.

The file is TOML, found via ``--config FILE``, then ``$METERS_CONFIG``, then ``meters.toml`` in the
working directory. Top-level keys apply to every command that has that option; a table names a command
(``[ingest]``, ``[broker.start]``) and overrides them for it. Keys are the long option names
(``lake``, ``batch-rows`` or ``batch_rows``) or click's parameter names (``broker_url``: a plain
``broker`` key would clash with the ``[broker]`` table). A relative path in the file is resolved against the
file's directory, not the working directory::

    lake = "lake"                       # every command's --lake: <dir of meters.toml>/lake
    [ingest]
    broker = "mqtt://ingest:…@127.0.0.1:1884"
    workers = 2

Every option also reads ``METERS_<COMMAND>_<OPTION>`` (``METERS_INGEST_WORKERS``), then
``METERS_<OPTION>`` (``METERS_LAKE``): upper case, dashes as underscores.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click

from .errors import MetersError

FILE_NAME = "meters.toml"
PREFIX = "METERS"
SECRET_WORDS = ("password", "secret", "key", "token")


def find_config(given: str | None) -> Path | None:
    """The configuration file: ``given`` (``--config`` or ``$METERS_CONFIG``), else ``./meters.toml``
    if it exists, else None. A named file that does not exist is an error."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise MetersError(f"configuration file {given} not found")
        return path
    path = Path(FILE_NAME)
    return path if path.is_file() else None


def load_config(path: Path) -> dict:
    """The TOML table of ``path``; a one-line error naming the file and the fault otherwise."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise MetersError(f"configuration file {path}: {e}") from None
    except OSError as e:
        raise MetersError(f"configuration file {path}: {e.strerror}") from None


def option_key(param: click.Parameter) -> str | None:
    """The name of an option in the file and the environment: its first long flag without dashes
    (``--lake`` → ``lake``); None for arguments and options without a long flag."""
    if not isinstance(param, click.Option):
        return None
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[0][2:] if longs else None


def env_names(path: tuple[str, ...], key: str) -> list[str]:
    """The environment variables of option ``key`` of command ``path``, most specific first."""
    opt = key.replace("-", "_").upper()
    cmd = "_".join(p.replace("-", "_").upper() for p in path)
    return [f"{PREFIX}_{cmd}_{opt}", f"{PREFIX}_{opt}"] if cmd else [f"{PREFIX}_{opt}"]


def add_envvars(cmd: click.Command, path: tuple[str, ...]) -> None:
    """Give every option of ``cmd`` (and of its subcommands) its ``METERS_*`` variables, unless it
    names its own."""
    for param in cmd.params:
        key = option_key(param)
        if key and not param.envvar and key not in ("help", "config"):
            param.envvar = env_names(path, key)
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            add_envvars(sub, (*path, name))


def section(table: dict, name: str) -> dict:
    """The table ``[name]`` of a configuration table (empty if none)."""
    value = table.get(name)
    return value if isinstance(value, dict) else {}


def inherited(table: dict) -> dict:
    """The plain keys of a table: they apply to every command below it."""
    return {k: v for k, v in table.items() if not isinstance(v, dict)}


def defaults_for(cmd: click.Command, table: dict, inherited_keys: dict, base: Path) -> dict:
    """click's ``default_map`` for ``cmd`` from the file: its own table over the inherited keys, keyed
    by parameter name, paths resolved against ``base`` (the file's directory); subcommands nested."""
    scalars = {**inherited_keys, **inherited(table)}
    out: dict = {}
    for param in cmd.params:
        key = option_key(param)
        if key is None:
            continue
        for spelling in (key, key.replace("-", "_"), param.name):
            if spelling in scalars:
                out[param.name] = _resolve(param, scalars[spelling], base)
                break
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            out[name] = defaults_for(sub, section(table, name), scalars, base)
    return out


def _resolve(param: click.Parameter, value, base: Path):
    if isinstance(param.type, click.Path) and isinstance(value, str) and "://" not in value:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)
    return value


def is_secret(name: str) -> bool:
    return any(w in name.lower() for w in SECRET_WORDS)


def mask(key: str, value, is_path: bool = False):
    """``value`` with its secret hidden: a password in a URL, or the whole value of a secret key
    (not a path to a secret file, not a flag)."""
    if isinstance(value, str) and "://" in value and "@" in value:
        scheme, rest = value.split("://", 1)
        auth, host = rest.rsplit("@", 1)
        user = auth.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in auth else value
    if is_secret(key) and isinstance(value, str) and value and not is_path:
        return "***"
    return value


def effective(cmd: click.Command, default_map: dict) -> list[dict]:
    """Where every option of ``cmd`` takes its value from right now (env, file or default), secrets
    masked: what ``meters config show`` prints. ``default_map``: :func:`defaults_for` of ``cmd``."""
    rows = []
    for param in cmd.params:
        key = option_key(param)
        if key is None or key == "help":
            continue
        source, value = "default", param.default
        if callable(value) or not isinstance(value, (str, int, float, list, tuple, type(None))):
            value = False if getattr(param, "is_flag", False) else None  # click's "unset"
        if param.name in default_map:
            source, value = "file", default_map[param.name]
        for name in param.envvar or []:
            if os.environ.get(name) not in (None, ""):
                source, value = f"env {name}", os.environ[name]
                break
        rows.append({"option": f"--{key}", "value": mask(key, value, isinstance(param.type, click.Path)),
                     "source": source})
    return rows
