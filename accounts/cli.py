"""CLI of the account service: ``meters serve``, ``meters channels add``, ``meters pay``, ``meters
balance`` and ``meters accounts import|set|migrate``. Every command opens the store of the lake (created
on first use; an existing lake's registry and payment files are adopted, :mod:`accounts.adopt`)."""
from __future__ import annotations

import getpass
import logging

import click

from meters.logs import log_format_option, setup_logging
from meters.options import db_option, echo_json, json_option, lake_option
from meters.errors import MetersError
from meters.times import parse_instant



def _store(lake_path, db):
    from .nightly import open_adopted

    return open_adopted(lake_path, db)


def _answer(out: dict, as_json: bool, line: str) -> None:
    """``out`` as JSON, or the one-line summary."""
    if as_json:
        echo_json(out)
    else:
        click.echo(line)


def _cli_who() -> dict:
    return {"changed_by": getpass.getuser(), "channel": "cli"}


@click.command()
@lake_option
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM certificate: serve HTTPS (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--web-channel", default="web", show_default=True, metavar="NAME",
              help="The channel the resident page (/) pays and changes settings as (create it with "
                   "meters channels add NAME).")
@click.option("--notify/--no-notify", default=False, show_default=True,
              help="Also deliver the outbox's alerts from this server (the dispatcher of meters notify, "
                   "started and stopped with the server).")
@click.option("--broker", "broker_url", default=None, envvar="METERS_BROKER", metavar="URL",
              help="With --notify: the MQTT broker for channels delivered by MQTT (default: the managed "
                   "broker's notify role).")
@click.option("--broker-dir", type=click.Path(file_okay=False), default=None,
              help="With --notify: state directory of the managed broker (default .meters/broker).")
@click.option("--notify-concurrency", type=click.IntRange(1, 10_000), default=512, show_default=True,
              help="With --notify: alert deliveries in flight at once.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the listening socket (a worker that dies is started again; "
                   "--notify runs in worker 0 only).")
@log_format_option
def serve(lake_path, db, host, port, tls_cert, tls_key, web_channel, notify, broker_url, broker_dir,
          notify_concurrency, workers, log_format):
    """Serve the account API (payments, balances, settings) over HTTP; OpenAPI at /docs, the resident
    page at / and the operator console at /console."""
    from .web.demo import serve as serve_pages

    if bool(tls_cert) != bool(tls_key):
        raise MetersError("--tls-cert and --tls-key go together")
    store = _store(lake_path, db)
    setup_logging(logging.INFO, log_format)
    logging.getLogger("meters.serve").info(
        f"serving {store.lake.root} ({store.engine.dialect.name}) on {'https' if tls_cert else 'http'}://{host}:{port} "
        f"with {workers} worker{'s' if workers > 1 else ''} (docs at /docs, pages at / and /console)",
        extra={"event": "serving"})
    serve_pages(store, host, port, web_channel=web_channel, tls_cert=tls_cert, tls_key=tls_key, log_format=log_format,
                notify={"broker_url": broker_url, "broker_dir": broker_dir, "concurrency": notify_concurrency}
                if notify else None, workers=workers)


@click.group()
def channels():
    """Payment channels and operators of the account API (API keys and roles)."""


def target_options(f):
    """The alert delivery target of a channel (docs/alerts.md)."""
    for opt in reversed([
        click.option("--webhook", default=None, metavar="URL",
                     help="Deliver this channel's alerts by HTTP POST to URL (Standard Webhooks signed)."),
        click.option("--secret", default=None, metavar="whsec_…",
                     help="The webhook's signing secret (default: a new one, printed)."),
        click.option("--mqtt", is_flag=True,
                     help="Deliver this channel's alerts to meters/v1/alerts/NAME on the managed broker."),
        click.option("--apprise", default=None, metavar="URL",
                     help="Deliver this channel's alerts through an apprise URL (needs apprise installed)."),
    ]):
        f = opt(f)
    return f


def _echo_target(out: dict, secret_given: bool) -> None:
    """The delivery target in a line; a webhook secret is printed only when it was made up here (the
    receiver needs it once), never echoed back when the operator gave it."""
    if out.get("webhook_url"):
        signed = "the given secret" if secret_given else out["webhook_secret"]
        click.echo(f"alerts to webhook {out['webhook_url']} signed with {signed}")
    elif out.get("mqtt"):
        click.echo(f"alerts to MQTT topic meters/v1/alerts/{out['name']}")
    elif out.get("apprise_url"):
        click.echo(f"alerts through apprise {out['apprise_url']}")


@channels.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["channel", "operator"]), default="channel", show_default=True,
              help="channel: pay, query and change settings of accounts; operator: also runs, all accounts, metrics.")
@click.option("--sign", "signing", is_flag=True,
              help="Also create an HMAC-SHA256 signing secret: the server then refuses unsigned requests.")
@target_options
@lake_option
@db_option
@json_option
def channels_add(name, role, signing, webhook, secret, mqtt, apprise, lake_path, db, as_json):
    """Create channel NAME and print its API key (shown once; only its hash is stored)."""
    from .channels import add_channel

    out = add_channel(_store(lake_path, db), name, role, signing=signing, webhook=webhook, secret=secret,
                      mqtt=mqtt, apprise=apprise)
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['role']} {out['name']}: key {out['key']}")
    if signing:
        click.echo(f"signing secret {out['signing_secret']}")
    _echo_target(out, bool(secret))
    click.echo("store the key now: it is not shown again", err=True)


@channels.command("rotate-key")
@click.argument("name")
@lake_option
@db_option
@json_option
def channels_rotate_key(name, lake_path, db, as_json):
    """Give channel NAME a new API key (printed once); the old key is refused from then on by every
    server process (within a second)."""
    from .channels import rotate_key

    out = rotate_key(_store(lake_path, db), name)
    if as_json:
        echo_json(out)
        return
    click.echo(f"{out['name']}: new key {out['key']} (the old key is refused from now on)")
    click.echo("store the key now: it is not shown again", err=True)


@channels.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (scripts).")
@lake_option
@db_option
def channels_password(name, password_stdin, lake_path, db):
    """Set operator NAME's password for the web console (/console); only a salted scrypt hash is stored."""
    import sys

    from .passwords import set_password

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    set_password(_store(lake_path, db), name, password)
    click.echo(f"operator {name}: console password set")


@channels.command("target")
@click.argument("name")
@target_options
@lake_option
@db_option
@json_option
def channels_target(name, webhook, secret, mqtt, apprise, lake_path, db, as_json):
    """Set where channel NAME's alerts are delivered (no option: stop delivering them)."""
    from .channels import set_target

    out = set_target(_store(lake_path, db), name, webhook=webhook, secret=secret, mqtt=mqtt, apprise=apprise)
    if as_json:
        echo_json(out)
    else:
        _echo_target(out, bool(secret)) if len(out) > 1 else click.echo(f"{name}: alerts not delivered")


@click.command()
@click.argument("account")
@lake_option
@db_option
@json_option
def balance(account, lake_path, db, as_json):
    """Balance now of ACCOUNT: the last settled balance plus later payments."""
    from .status import account_status

    out = account_status(_store(lake_path, db), account)
    _answer(out, as_json, f"{out['user_number']}: balance {out['balance']} ({out['status']}; last settled day "
                          f"{out['last_settled_day'] or 'none'})")


@click.group()
def accounts():
    """The customer registry (lake) and the account store: import, migrate, set."""


@accounts.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@lake_option
@db_option
@json_option
def accounts_import(file, lake_path, db, as_json):
    """Import FILE.csv into the account store (all rows or none, errors by line; a column the file
    leaves out changes nothing; importing the same file again writes nothing)."""
    from meters.lake import open_lake
    from meters.registry import import_accounts

    lake = open_lake(lake_path)
    if not lake.is_local and not db:   # an object-store lake without a database: its registry tables
        r = import_accounts(lake, file)
        click.echo(f"imported {r['accounts']} accounts and {r['contacts']} contacts "
                   f"({r['accounts_changed']} accounts new or changed)")
        return
    from .registry import import_csv

    out = import_csv(_store(lake, db), file)
    _answer(out, as_json, f"imported {out['accounts']} accounts: {out['accounts_new']} new, {out['accounts_changed']} "
                          f"changed, {out['settings_rows']} settings and {out['contact_rows']} contact changes written")


@accounts.command("migrate")
@lake_option
@db_option
@json_option
def accounts_migrate(lake_path, db, as_json):
    """Create or upgrade the account store and import the lake's accounts and contacts into it, and the
    payments of its payment files (idempotent: an unchanged registry writes nothing, a payment is
    imported once)."""
    from .adopt import adopt_lake
    from .registry import import_from_lake
    from .store import open_store

    store = open_store(lake_path, db)
    out = import_from_lake(store)
    adopted = adopt_lake(store)
    out["payments_adopted"], out["days_adopted"] = adopted["payments"], adopted["days"]
    _answer(out, as_json, f"{out['accounts']} accounts: {out['accounts_new']} new, {out['accounts_changed']} changed, "
                          f"{out['settings_rows']} settings and {out['contact_rows']} contact changes written; "
                          f"{out['payments_adopted']} payments of the lake's payment files imported")


def _pair(value: str, what: str) -> tuple[str, str]:
    below, sep, amount = value.partition(",")
    if not sep:
        raise MetersError(f"{what} {value!r}: give two numbers separated by a comma")
    return below.strip(), amount.strip()


@accounts.command("set")
@click.argument("account")
@click.option("--auto-topup", "auto_topup", metavar="BELOW,AMOUNT",
              help="Auto top-up: below BELOW add AMOUNT (e.g. 20,100); 'off' turns it off.")
@click.option("--warnings", metavar="LEVEL1,LEVEL2", help="Low-balance warning levels (e.g. 30,20).")
@click.option("--add-contact", metavar="RELATION:RECIPIENT", multiple=True,
              help="Send alerts to RECIPIENT too (repeatable), e.g. daughter:+8613800000000.")
@click.option("--remove-contact", metavar="RECIPIENT", multiple=True, help="Stop sending alerts to RECIPIENT.")
@click.option("--name", default=None, help="The customer's name (shown masked to channels, e.g. 张*明).")
@lake_option
@db_option
@json_option
def accounts_set(account, auto_topup, warnings, add_contact, remove_contact, name, lake_path, db, as_json):
    """Change settings of ACCOUNT from today: each change is a new dated row."""
    from . import settings
    from .status import account_status, set_name

    store = _store(lake_path, db)
    if not (auto_topup or warnings or add_contact or remove_contact or name):
        raise MetersError("nothing to set: give --auto-topup, --warnings, --add-contact, --remove-contact or --name")
    changes = []
    if auto_topup:
        below, amount = (None, None) if auto_topup.strip().lower() == "off" else _pair(auto_topup, "--auto-topup")
        changes.append(settings.set_auto_topup(store, account, below, amount, **_cli_who()))
    if warnings:
        changes.append(settings.set_warnings(store, account, list(_pair(warnings, "--warnings")), **_cli_who()))
    for spec in add_contact:
        rel, sep, rcpt = spec.partition(":")
        if not sep:
            raise MetersError(f"--add-contact {spec!r}: give RELATION:RECIPIENT")
        changes.append(settings.add_contact(store, account, rcpt, rel, **_cli_who()))
    for rcpt in remove_contact:
        changes.append(settings.remove_contact(store, account, rcpt, **_cli_who()))
    if name:
        set_name(store, account, name)
    out = account_status(store, account, details=True)
    out["changed"] = any(c["changed"] for c in changes) or bool(name)
    if as_json:
        echo_json(out)
    else:
        s = out["settings"]
        topup = f"below {s['auto_topup']['below']} add {s['auto_topup']['amount']}" if s["auto_topup"] else "off"
        click.echo(f"{account}: auto top-up {topup}; warnings {', '.join(s['warnings'])}; contacts "
                   f"{', '.join(c['relation'] + ':' + c['recipient'] for c in out['contacts']) or 'none'}"
                   f"{'' if out['changed'] else ' (unchanged)'}")


@click.command(context_settings={"ignore_unknown_options": True})  # AMOUNT may look like -5
@click.argument("account")
@click.argument("amount")
@click.option("--ref", required=True, help="Payment reference (applied once however often it is sent).")
@click.option("--at", "at", help="Time the payment was received, ISO 8601 with offset (default now).")
@click.option("--payer", default=None, help="Who paid (e.g. a son paying his mother's bill).")
@lake_option
@db_option
@json_option
def pay(account, amount, ref, at, payer, lake_path, db, as_json):
    """Record a payment or top-up of AMOUNT to ACCOUNT (the user number) in the account store — e.g. a
    son paying for his mother. The nightly run credits it on the day it was received (or, received
    after that day was settled, on the next): never refused."""
    from . import payments

    store = _store(lake_path, db)
    if at:
        when = parse_instant(at, name="--at")
        store.clock = lambda: when
    r = payments.pay(store, account, amount, ref, channel="cli", payer=payer)
    if as_json:
        echo_json(r)
    elif r["status"] == "duplicate":
        click.echo(f"payment {r['channel_ref']} was already applied ({r['amount']} to account {r['user_number']}); "
                   f"nothing changed")
    else:
        click.echo(f"paid {r['amount']} to account {r['user_number']} (ref {r['channel_ref']}); "
                   f"balance {r['balance']}")
