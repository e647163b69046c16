"""docs/scale-out.md stays true: every `meters …` command line in its shell blocks names an existing
command and only options that command has."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from meters.cli import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "scale-out.md"


def doc_command_lines(text: str) -> list[str]:
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"^[\w.-]+\$ ", "", line.strip())        # "host-a$ meters …"
            line = line.split("  #")[0].strip()
            if line.startswith("meters "):
                lines.append(line)
    return lines


def check(line: str) -> None:
    words = shlex.split(line)[1:]
    ctx = click.Context(cli, info_name="meters")
    cmd: click.Command = cli
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        sub = cmd.get_command(ctx, words[0])
        assert sub is not None, f"{line!r}: no command {words[0]!r}"
        ctx = click.Context(sub, parent=ctx, info_name=words[0])
        cmd, words = sub, words[1:]
    known = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    used = [w for w in words if w.startswith("--")]
    unknown = [w for w in used if w.split("=")[0] not in known]
    assert not unknown, f"{line!r}: unknown option(s) {unknown}"


def test_the_checker_catches_a_wrong_option():
    with pytest.raises(AssertionError, match="unknown option"):
        check("meters ingest --lake x --wrokers 2")
    with pytest.raises(AssertionError, match="no command"):
        check("meters ingets --lake x")


def test_scale_out_commands_exist():
    lines = doc_command_lines(DOC.read_text())
    assert len(lines) >= 8, lines
    for line in lines:
        check(line)
