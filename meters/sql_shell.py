"""The ``meters sql`` shell: statements end with ``;``; dot commands as in the DuckDB CLI.

On a terminal it is a prompt_toolkit prompt (history file, completion of view, column and keyword
names); the banner and prompts go to stderr, so stdout holds results only. Every statement's result
is printed. Fed by a pipe (a script), the first failing statement stops the script and the shell
exits 1; on a terminal an error is printed and the shell goes on.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from .errors import MetersError
from .sql_output import DEFAULT_TERMINAL_ROWS, FORMATS, print_result

HELP = """\
.tables              list the views
.schema [VIEW]       the columns of a view (or of every view)
.mode [FORMAT]       output format: table, csv, json, ndjson (no argument: show it)
.timer on|off        print each statement's run time (on stderr)
.maxrows N|all       rows shown by table output (then the rest is counted)
.read FILE           run the statements of a SQL file
.help                this help
.quit / .exit        leave (also Ctrl-D)"""
BANNER = "meters sql (read-only). End statements with ';'. .help lists the dot commands, .quit leaves."
KEYWORDS = ("SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "JOIN", "LEFT JOIN", "USING",
            "WITH", "AS", "AND", "OR", "NOT", "IN", "BETWEEN", "DISTINCT", "COUNT", "SUM", "AVG", "MIN", "MAX",
            "DESCRIBE", "SUMMARIZE", "SHOW", "EXPLAIN", "CAST", "DATE", "TIMESTAMPTZ", "INTERVAL", "QUALIFY")


def history_path() -> Path:
    """The shell's history file: ``$METERS_SQL_HISTORY`` or ``~/.meters_sql_history``."""
    return Path(os.environ.get("METERS_SQL_HISTORY") or Path.home() / ".meters_sql_history")


class Shell:
    """Runs statements and dot commands on a read-only connection, printing results to ``out`` and
    messages to ``err``."""

    def __init__(self, con, fmt: str = "table", *, out: TextIO | None = None, err: TextIO | None = None,
                 timeout: float | None = None, max_rows: int | None = None):
        if fmt not in FORMATS or fmt == "parquet":
            raise MetersError("the shell prints: --format table, csv, json or ndjson")
        self.con, self.mode, self.timeout = con, fmt, timeout
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.timer = False
        self.max_rows = max_rows

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def rows_shown(self) -> int | None:
        if self.max_rows is not None:
            return self.max_rows if self.mode == "table" else None
        interactive = getattr(self.out, "isatty", lambda: False)()
        return DEFAULT_TERMINAL_ROWS if self.mode == "table" and interactive else None

    def execute(self, text: str) -> None:
        """Run ``text`` (one or more statements), printing each result as it streams."""
        from .sql import run_each, time_limit

        started = time.perf_counter()
        with time_limit(self.con, self.timeout):
            for rel in run_each(self.con, text):
                print_result(rel, self.mode, self.out, max_rows=self.rows_shown())
                self.out.flush()
        if self.timer:
            self.say(f"Run Time: {time.perf_counter() - started:.3f} s")

    def views(self) -> list[str]:
        return [r[0] for r in self.con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                           "ORDER BY 1").fetchall()]

    def words(self) -> list[str]:
        """Completion words: views, their columns, keywords."""
        cols = [r[0] for r in self.con.sql("SELECT DISTINCT column_name FROM duckdb_columns() "
                                           "WHERE NOT internal ORDER BY 1").fetchall()]
        return [*self.views(), *cols, *KEYWORDS]

    def dot(self, line: str) -> bool:
        """Run a dot command; False means leave the shell."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if cmd in (".quit", ".exit"):
            return False
        if cmd == ".help":
            self.say(HELP)
        elif cmd == ".tables":
            print("  ".join(self.views()), file=self.out)
        elif cmd == ".schema":
            names = [arg] if arg else self.views()
            for name in names:
                if name not in self.views():
                    raise MetersError(f".schema: no view {name!r}; .tables lists them")
                cols = self.con.sql("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                                    "ORDER BY column_index", params=[name]).fetchall()
                print(f"{name}(" + ", ".join(f"{c} {t}" for c, t in cols) + ")", file=self.out)
        elif cmd == ".mode":
            if not arg:
                self.say(f"mode {self.mode}")
            elif arg not in FORMATS or arg == "parquet":
                raise MetersError(f".mode {arg}: choose table, csv, json or ndjson")
            else:
                self.mode = arg
        elif cmd == ".timer":
            if arg not in ("on", "off"):
                raise MetersError(".timer on|off")
            self.timer = arg == "on"
        elif cmd == ".maxrows":
            if arg == "all":
                self.max_rows = None
            elif arg.isdigit() and int(arg) > 0:
                self.max_rows = int(arg)
            else:
                raise MetersError(f".maxrows {arg}: give a positive number of rows or 'all'")
        elif cmd == ".read":
            if not arg:
                raise MetersError(".read FILE")
            try:
                text = Path(arg).expanduser().read_text(encoding="utf-8")
            except OSError as e:
                raise MetersError(f".read {arg}: {e.strerror or e}") from None
            if self.run_script(text.splitlines(keepends=True)) != 0:
                raise MetersError(f".read {arg}: stopped at the failing statement")
        else:
            raise MetersError(f"unknown command {cmd}; .help lists the commands")
        return True

    def feed(self, buf: list[str], line: str) -> tuple[list[str], str | None]:
        """Add a line to the statement buffer; a complete statement (or dot command) to run, if any."""
        s = line.strip()
        if not buf and (not s or s.startswith("--")):
            return buf, None
        if not buf and s.startswith("."):
            return [], s
        buf = buf + [line if line.endswith("\n") else line + "\n"]
        if s.endswith(";"):
            return [], "".join(buf)
        return buf, None

    def step(self, item: str) -> bool:
        """Run a statement or dot command; False means leave."""
        if item.startswith("."):
            return self.dot(item)
        self.execute(item)
        return True

    def run_script(self, lines: Iterable[str]) -> int:
        """Run a script's lines; stop at the first error (printed on stderr) and return 1, else 0."""
        buf: list[str] = []
        for line in lines:
            buf, item = self.feed(buf, line)
            if item is None:
                continue
            try:
                if not self.step(item):
                    return 0
            except MetersError as e:
                self.say(f"error: {e}")
                return 1
        if "".join(buf).strip():
            try:
                self.execute("".join(buf))
            except MetersError as e:
                self.say(f"error: {e}")
                return 1
        return 0

    def completer(self):
        """Tab completion of view, column and keyword names and dot commands."""
        from prompt_toolkit.completion import WordCompleter

        return WordCompleter(self.words(), ignore_case=True)

    def interactive(self, *, input=None, output=None) -> int:  # noqa: A002 - prompt_toolkit's names
        """The prompt_toolkit loop: history, completion; errors are printed and the shell goes on.
        ``input``/``output``: prompt_toolkit's (default: the terminal, prompts on stderr)."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory
        from prompt_toolkit.output import create_output

        self.say(BANNER)
        path = history_path()
        if path.parent.is_dir() and os.access(path.parent, os.W_OK):
            history = FileHistory(str(path))
        else:
            history = InMemoryHistory()
            self.say(f"note: history is not saved ({path.parent} is not a writable directory)")
        session = PromptSession(history=history, completer=self.completer(),
                                input=input, output=output or create_output(stdout=sys.stderr))
        buf: list[str] = []
        while True:
            try:
                line = session.prompt("meters> " if not buf else "   ...> ")
            except KeyboardInterrupt:
                buf = []
                continue
            except EOFError:
                break
            buf, item = self.feed(buf, line)
            if item is None:
                continue
            try:
                if not self.step(item):
                    break
            except MetersError as e:
                self.say(f"error: {e}")
            except KeyboardInterrupt:
                self.con.interrupt()
                self.say("interrupted")
        return 0


def shell(con, fmt: str = "table", *, stdin: TextIO | None = None, timeout: float | None = None,
          max_rows: int | None = None) -> int:
    """Run the shell on ``stdin`` (a terminal: interactive; else a script); the exit code."""
    stdin = stdin or sys.stdin
    sh = Shell(con, fmt, timeout=timeout, max_rows=max_rows)
    if stdin.isatty():
        return sh.interactive()
    return sh.run_script(stdin)
