"""`meters broker start|stop|status`."""
from __future__ import annotations

import click

from .broker import DEFAULT_STATE_DIR, BrokerLimits, ManagedBroker
from .options import echo_json

dir_option = click.option("--dir", "state_dir", default=str(DEFAULT_STATE_DIR), show_default=True,
                          type=click.Path(file_okay=False), help="Broker state directory.")


@click.group()
def broker():
    """Run a project-managed Mosquitto with password auth, roles and per-sender ACLs (docs/security.md);
    senders' listener on 127.0.0.1 or --bind, optionally TLS."""


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
@click.option("--bind", default=None, metavar="ADDRESS",
              help="Address of the senders' listener (default 127.0.0.1, then the last start's; 0.0.0.0 "
                   "for every address). The operators' port stays on 127.0.0.1.")
@click.option("--tls/--no-tls", "tls", default=None,
              help="Senders connect over TLS (mqtts://): generate a CA and a server certificate in "
                   "<dir>/tls, or use --tls-cert/--tls-key (default: as the last start).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="Server certificate (PEM) for --tls instead of a generated one.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None,
              help="Private key (PEM) of --tls-cert.")
@click.option("--tls-ca", type=click.Path(dir_okay=False), default=None,
              help="CA certificate that senders trust (put into the sender URLs as ?cafile=).")
@click.option("--tls-host", "tls_hosts", multiple=True, metavar="NAME",
              help="Extra host name or address in the generated certificate (repeatable).")
@click.option("--foreground", is_flag=True,
              help="Run Mosquitto in the foreground in place of this process, logging to stderr "
                   "(a systemd Type=simple service).")
@click.option("--log-max-bytes", type=click.IntRange(1), default=10 << 20, show_default=True,
              help="Rotate mosquitto.log on start when it is larger (see `broker rotate-log`).")
@click.option("--show-secrets", is_flag=True,
              help="Print the passwords (in the URLs and --json) instead of the credentials file path.")
@click.option("--json", "as_json", is_flag=True,
              help="Print URLs (passwords masked) and the path of the credentials file (mode 0600) as JSON.")
def start(state_dir, port, operator_port, max_queued_messages, max_queued_bytes, message_size_limit, bind,
          tls, tls_cert, tls_key, tls_ca, tls_hosts, foreground, log_max_bytes, show_secrets, as_json):
    """Start the broker and wait until it accepts connections. Passwords stay in the credentials file
    (mode 0600) unless --show-secrets."""
    from .errors import MetersError
    from .tls import given as given_tls

    if bool(tls_cert) != bool(tls_key):
        raise MetersError("--tls-cert and --tls-key go together")
    if tls_cert:
        if tls is False:
            raise MetersError("--tls-cert with --no-tls")
        tls = given_tls(tls_cert, tls_key, tls_ca)
    given = {k: v for k, v in [("max_queued_messages", max_queued_messages),
                               ("max_queued_bytes", max_queued_bytes),
                               ("message_size_limit", message_size_limit)] if v is not None}
    mb = ManagedBroker(state_dir)
    if given:
        mb = ManagedBroker(state_dir, BrokerLimits(**{**mb.saved_limits().__dict__, **given}))
    if foreground:
        click.echo(f"mosquitto starting in the foreground; credentials in {mb.cred_file.resolve()}", err=True)
    mb.start(port=port, operator_port=operator_port, bind=bind, tls=tls, tls_hosts=tls_hosts,
             foreground=foreground, log_max_bytes=log_max_bytes)
    info = mb.public_info(show_secrets)
    if as_json:
        echo_json(info)
    else:
        click.echo(f"mosquitto running on {info['bind']}:{info['port']} (senders{', TLS' if info['tls'] else ''}) "
                   f"and 127.0.0.1:{info['operator_port']} (ingest, admin), pid {info['pid']}, state {info['dir']}")
        for role, url in info["urls"].items():
            click.echo(f"  {role:7s} {url}")
        if not show_secrets:
            click.echo(f"  credentials: {info['credentials_file']} (mode 0600)")


@broker.command()
@dir_option
def stop(state_dir):
    """Stop the broker started from this state directory (and only that one)."""
    if ManagedBroker(state_dir).stop():
        click.echo("mosquitto stopped")
    else:
        click.echo("no managed broker was running")


@broker.command("rotate-log")
@dir_option
def rotate_log(state_dir):
    """Rotate mosquitto.log (to .1 … .5) and make the running broker reopen it (for logrotate or a
    timer; a --foreground broker logs to the journal instead)."""
    mb = ManagedBroker(state_dir)
    mb.rotate_log()
    click.echo(f"rotated {mb.log_file}")


@broker.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(state_dir, as_json):
    """Tell whether the managed broker runs and accepts connections (exit 1 if not)."""
    st = ManagedBroker(state_dir).status()
    if as_json:
        echo_json(st)
    elif st["running"]:
        click.echo(f"running: pid {st['pid']}, {st['bind']}:{st['port']}{' (TLS)' if st['tls'] else ''}, "
                   "accepting connections")
    else:
        click.echo("not running" + (f" (pid {st['pid']} alive but not accepting)" if st["pid"] else ""))
    raise SystemExit(0 if st["running"] else 1)
