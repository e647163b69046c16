"""`meters broker start|stop|status`."""
from __future__ import annotations

import click

from .broker import DEFAULT_STATE_DIR, BrokerLimits, ManagedBroker
from .options import echo_json

dir_option = click.option("--dir", "state_dir", default=str(DEFAULT_STATE_DIR), show_default=True,
                          type=click.Path(file_okay=False), help="Broker state directory.")


@click.group()
def broker():
    """Run a project-managed Mosquitto on 127.0.0.1 with password auth, roles and per-sender ACLs
    (docs/security.md)."""


@broker.command()
@dir_option
@click.option("--port", type=int, default=None, help="TCP port of the senders (default: a free one).")
@click.option("--operator-port", type=int, default=None,
              help="TCP port of ingest and admin (default: a free one).")
@click.option("--max-queued-messages", type=click.IntRange(1), default=None,
              help="Messages queued per offline session (default 4000000; then kept across starts).")
@click.option("--max-queued-bytes", type=click.IntRange(1), default=None,
              help="Bytes queued per offline session (default 1 GiB).")
@click.option("--message-size-limit", type=click.IntRange(1), default=None,
              help="Largest payload in bytes (default 16 MiB, ingest's --max-payload).")
@click.option("--json", "as_json", is_flag=True, help="Print URLs and credentials as JSON.")
def start(state_dir, port, operator_port, max_queued_messages, max_queued_bytes, message_size_limit, as_json):
    """Start the broker and wait until it accepts connections."""
    given = {k: v for k, v in [("max_queued_messages", max_queued_messages),
                               ("max_queued_bytes", max_queued_bytes),
                               ("message_size_limit", message_size_limit)] if v is not None}
    mb = ManagedBroker(state_dir)
    if given:
        mb = ManagedBroker(state_dir, BrokerLimits(**{**mb.saved_limits().__dict__, **given}))
    info = mb.start(port=port, operator_port=operator_port)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"mosquitto running on 127.0.0.1:{info['port']} (senders) and :{info['operator_port']} "
                   f"(ingest, admin), pid {info['pid']}, state {info['dir']}")
        for role, url in info["urls"].items():
            click.echo(f"  {role:7s} {url}")


@broker.command()
@dir_option
def stop(state_dir):
    """Stop the broker started from this state directory (and only that one)."""
    if ManagedBroker(state_dir).stop():
        click.echo("mosquitto stopped")
    else:
        click.echo("no managed broker was running")


@broker.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(state_dir, as_json):
    """Tell whether the managed broker runs and accepts connections (exit 1 if not)."""
    st = ManagedBroker(state_dir).status()
    if as_json:
        echo_json(st)
    elif st["running"]:
        click.echo(f"running: pid {st['pid']}, 127.0.0.1:{st['port']}, accepting connections")
    else:
        click.echo("not running" + (f" (pid {st['pid']} alive but not accepting)" if st["pid"] else ""))
    raise SystemExit(0 if st["running"] else 1)
