"""The docs stay true to the CLI: every `meters …` command shown in README.md and docs/*.md (shell
blocks and inline code) names an existing command and only options that command has."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from meters.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = {"...", "…"}


def doc_command_lines(text: str) -> list[str]:
    """`meters …` command lines of a page: in ```sh blocks (prompts, comments and line continuations
    handled) and in inline code spans."""
    lines = []
    for block in re.findall(r"^[ \t]*```(?:sh|bash|console)\n(.*?)^[ \t]*```", text, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"^[\w.-]*\$ ", "", line.strip())        # "host-a$ meters …", "$ meters …"
            line = re.sub(r"\s+", " ", line.split("  #")[0]).strip()
            if line.startswith("meters "):
                lines.append(line)
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [m.strip() for m in re.findall(r"`(meters [^`]*)`", outside)]
    return lines


def _words(line: str) -> list[str]:
    try:
        words = shlex.split(line)
    except ValueError:                   # an unclosed quote in a shortened example
        words = line.split()
    return [w.strip("[]") for w in words[1:]]


def check(line: str) -> None:
    """Raise AssertionError naming what in ``line`` the CLI does not have."""
    _check(cli, click.Context(cli, info_name="meters"), _words(line), line)


def _check(cmd: click.Command, ctx: click.Context, words: list[str], line: str) -> None:
    while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
        if words[0] in PLACEHOLDERS:
            return
        alternatives = words[0].split("|")
        for name in alternatives[1:]:    # `meters tariffs list|show`: each one must exist
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{line!r}: no command {name!r}"
            _check(sub, click.Context(sub, parent=ctx, info_name=name), words[1:], line)
        sub = cmd.get_command(ctx, alternatives[0])
        assert sub is not None, f"{line!r}: no command {alternatives[0]!r}"
        ctx = click.Context(sub, parent=ctx, info_name=alternatives[0])
        cmd, words = sub, words[1:]
    known = {o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
    known.add("--help")
    used = [w for w in words if w.startswith("--")]
    unknown = [w for w in used if w.split("=")[0] not in known]
    assert not unknown, f"{line!r}: unknown option(s) {unknown}"


def test_the_checker_catches_a_wrong_option():
    with pytest.raises(AssertionError, match="unknown option"):
        check("meters ingest --lake x --wrokers 2")
    with pytest.raises(AssertionError, match="no command"):
        check("meters ingets --lake x")
    with pytest.raises(AssertionError, match="no command 'shwo'"):
        check("meters tariffs list|shwo")
    with pytest.raises(AssertionError, match="unknown option"):
        check("meters replay --lake DIR [--sped max]")
    lines = doc_command_lines("run `meters ingest --lake l` then\n```sh\nhost$ meters bill \\\n  --date D  # x\n```\n")
    assert lines == ["meters bill --date D", "meters ingest --lake l"]


def test_every_page_is_read():
    assert {p.name for p in PAGES} >= {"README.md", "scale-out.md", "lake.md", "sql.md", "ingest.md", "billing.md"}
    assert len(doc_command_lines((ROOT / "docs" / "scale-out.md").read_text())) >= 8


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_commands_exist(page):
    for line in doc_command_lines(page.read_text()):
        check(line)
