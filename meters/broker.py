"""A project-managed Mosquitto on 127.0.0.1: generated config, roles and identities, limits.

Two listeners, one broker (docs/security.md):

- the **senders' port** (``port``; the side of the data concentrators): the broker uses the user name
  as client id (``use_username_as_clientid``), so a sender can never take over another session;
- the **operators' port** (``operator_port``): ``ingest`` workers and ``admin`` tools, with client ids
  of their choosing (distinct per worker).

Authentication and authorisation are Mosquitto's dynamic-security plugin (the ACL file of Mosquitto
2.0 cannot refuse a SUBSCRIBE), default deny:

- ``admin`` — everything (operators: replay, provisioning);
- ``ingest`` — subscribe to ``meters/v1/+/readings`` (also through ``$share/ingest/…``) and receive
  it; it cannot publish;
- ``notify`` (provisioned by :meth:`ManagedBroker.add_alert_users`) — the alert dispatcher: publish
  to ``meters/v1/alerts/+`` only;
- ``alerts.<channel>`` — a channel's push gateway: subscribe to and receive
  ``meters/v1/alerts/<channel>`` only (its own channel's alerts), client id bound to its user name;
- every other user is a sender — it may publish to ``meters/v1/<its username>/readings`` only, never
  subscribe, and its client id is bound to its user name on both ports.

Retained messages are off (``retain_available false``: a client that sends one is disconnected), and
queues, message and packet sizes are bounded (:class:`BrokerLimits`). ``sender`` is the default
sender; :meth:`ManagedBroker.add_senders` provisions more (one per data concentrator), also on a
running broker.

    with managed_broker(tmp_path) as broker:
        url = broker.url("ingest")
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from .errors import MetersError
from .mqtt import BrokerURL, make_client, parse_broker_url

DEFAULT_STATE_DIR = Path(".meters") / "broker"
LOG_MAX_BYTES = 10 << 20  # the log file is rotated on start when larger
LOG_KEEP = 5
ROLES = ("admin", "ingest", "sender")
OPERATORS = ("admin", "ingest")
NOTIFY = "notify"             # the alert dispatcher (meters notify): publishes alerts
GATEWAY_PREFIX = "alerts."    # alerts.<channel>: the push gateway of one channel
ALERTS_TOPIC = "meters/v1/alerts/{channel}"
HOST = "127.0.0.1"
READINGS = "meters/v1/+/readings"
SHARED_READINGS = f"$share/ingest/{READINGS}"
CONTROL = "$CONTROL/dynamic-security/v1"
PW_ITERATIONS = 101  # Mosquitto's own default; the passwords are 96 random bits
RESERVED_PREFIX = "meters-"  # client ids of the project's own tools (meters-ingest-0 …)
SHARED_RESTART_LIMIT = (
    "the embedded Mosquitto 2.0 routes no new message to a shared subscription restored after a broker "
    "restart until its worker subscribes again, so readings published between a broker restart and the "
    "workers' reconnect (0.1-2 s) are lost to ingest (docs/ingest.md); one worker alone (the default, a "
    "plain subscription) has no such gap")


@dataclasses.dataclass(frozen=True)
class BrokerLimits:
    """Bounds that keep one client from exhausting the broker (documented in docs/security.md).

    A queue is kept per persistent session (the ingest workers': senders cannot subscribe); a full
    queue drops new messages, so size it for the longest ingest outage you plan for — for a city of
    1 million meters read every 15 minutes the defaults hold about 13 hours of binary batches (80 MB
    an hour: the bytes bind) or 1 hour of one-reading JSON messages (4 million an hour: the count
    binds)."""

    max_queued_messages: int = 4_000_000
    max_queued_bytes: int = 1 << 30          # 1 GiB per session
    message_size_limit: int = 16 << 20       # 16 MiB payload: ingest's --max-payload
    max_inflight_messages: int = 1000

    @property
    def max_packet_size(self) -> int:
        """Larger packets are refused before they are read (topic and properties fit in 64 KiB)."""
        return self.message_size_limit + (64 << 10)

    def check(self) -> "BrokerLimits":
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 1:
                raise MetersError(f"broker limit {f.name.replace('_', '-')} must be >= 1")
        return self


def find_mosquitto() -> tuple[str, str]:
    """Paths of ``mosquitto`` and ``mosquitto_passwd`` (also looked up in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin"
    broker = shutil.which("mosquitto", path=path)
    passwd = shutil.which("mosquitto_passwd", path=path)
    if not broker or not passwd:
        raise MetersError("mosquitto (and mosquitto_passwd) not found; install Mosquitto 2.x "
                          "(`make setup` does it with apt-get) or pass --broker to an existing broker")
    return broker, passwd


def find_dynsec_plugin(broker: str) -> str:
    """Path of Mosquitto's dynamic-security plugin (shipped with Mosquitto 2.x)."""
    name = "mosquitto_dynamic_security.so"
    prefix = Path(os.path.realpath(broker)).parent.parent
    for pattern in [os.environ.get("METERS_MOSQUITTO_PLUGIN", ""), f"{prefix}/lib/{name}",
                    f"{prefix}/lib/*/{name}", f"{prefix}/lib/mosquitto/{name}", f"/usr/lib/*/{name}",
                    f"/usr/lib/{name}", f"/usr/local/lib/{name}", f"/usr/lib64/{name}"]:
        found = sorted(glob.glob(pattern)) if pattern else []
        if found:
            return found[0]
    raise MetersError(f"{name} not found (it ships with Mosquitto 2.x; set METERS_MOSQUITTO_PLUGIN to its path)")


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _acl(kind: str, topic: str) -> dict:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def role_acls(user: str) -> list[dict]:
    """The dynamic-security ACLs of a user (its role, named after it for senders)."""
    if user == "admin":
        return [_acl("publishClientSend", "#"), _acl("publishClientReceive", "#"),
                _acl("subscribePattern", "#"), _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
                _acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
                _acl("publishClientReceive", "$SYS/#")]
    if user == "ingest":
        return [_acl("subscribePattern", READINGS), _acl("subscribePattern", SHARED_READINGS),
                _acl("publishClientReceive", READINGS)]
    if user == NOTIFY:
        return [_acl("publishClientSend", ALERTS_TOPIC.format(channel="+"))]
    if user.startswith(GATEWAY_PREFIX):
        topic = ALERTS_TOPIC.format(channel=user[len(GATEWAY_PREFIX):])
        return [_acl("subscribePattern", topic), _acl("publishClientReceive", topic)]
    return [_acl("publishClientSend", f"meters/v1/{user}/readings")]


def role_name(user: str) -> str:
    if user in OPERATORS or user == NOTIFY:
        return user
    if user.startswith(GATEWAY_PREFIX):
        return f"gateway:{user[len(GATEWAY_PREFIX):]}"
    return f"sender:{user}"


def is_sender(user: str) -> bool:
    return user not in OPERATORS and user != NOTIFY and not user.startswith(GATEWAY_PREFIX)


def _dynsec_client(user: str, password: str) -> dict:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PW_ITERATIONS, 64)
    client = {"username": user, "password": base64.b64encode(digest).decode(),
              "salt": base64.b64encode(salt).decode(), "iterations": PW_ITERATIONS,
              "roles": [{"rolename": role_name(user)}]}
    if user not in OPERATORS and user != NOTIFY:
        client["clientid"] = user  # a sender (or gateway) connects as itself only, on either port
    return client


def dynsec_config(users: dict[str, str]) -> dict:
    """The dynamic-security plugin's configuration for ``users`` (name → password), default deny."""
    return {"defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                                 "subscribe": False, "unsubscribe": True},
            "clients": [_dynsec_client(u, p) for u, p in users.items()],
            "groups": [],
            "roles": [{"rolename": role_name(u), "acls": role_acls(u)} for u in users]}


def check_sender_name(name: str) -> str:
    name = str(name)
    if (not name or any(c in name for c in "/+#:$ ") or name in OPERATORS or name == NOTIFY
            or name.startswith((RESERVED_PREFIX, GATEWAY_PREFIX)) or len(name) > 64):
        raise MetersError(f"invalid sender id {name!r} (1-64 characters, no '/', '+', '#', ':', '$' or "
                          f"space; not a role name; not starting with {RESERVED_PREFIX!r} or {GATEWAY_PREFIX!r})")
    return name


def resolve_broker(url: str | None, role: str, state_dir: str | os.PathLike | None = None,
                   notes: list[str] | None = None, not_up_yet: bool = False) -> BrokerURL:
    """``url`` if given, else ``$METERS_BROKER``, else the managed broker's URL for ``role`` (and its
    known limits appended to ``notes``). ``not_up_yet``: also while that broker is not running, as
    long as it was started once (a service started before its broker waits for it)."""
    url = url or os.environ.get("METERS_BROKER")
    if url:
        return parse_broker_url(url)
    broker = ManagedBroker(state_dir)
    if not (not_up_yet and broker.cred_file.exists()) and not broker.is_running():
        raise MetersError("no --broker given and no managed broker is running; "
                          "start one with `meters broker start` or pass --broker mqtt://user:pass@host:port")
    if notes is not None:
        notes.extend(broker.known_limits())
    return parse_broker_url(broker.url(role))


class ManagedBroker:
    """A Mosquitto whose config, credentials, pid file, log and persistence live in ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike | None = None, limits: BrokerLimits | None = None):
        self.dir = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
        self.limits = (limits or BrokerLimits()).check()
        self._limits_given = limits is not None  # else the limits of the last start are kept
        self.conf = self.dir / "mosquitto.conf"
        self.dynsec_file = self.dir / "dynamic-security.json"
        self.cred_file = self.dir / "credentials.json"
        self.pid_file = self.dir / "mosquitto.pid"
        self.log_file = self.dir / "mosquitto.log"
        self.data_dir = self.dir / "data"
        self.tls_dir = self.dir / "tls"
        self._proc: subprocess.Popen | None = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def credentials(self) -> dict:
        if not self.cred_file.exists():
            raise MetersError(f"no managed broker in {self.dir} (run `meters broker start`)")
        return json.loads(self.cred_file.read_text())

    @property
    def port(self) -> int:
        """The senders' port."""
        return int(self.credentials["port"])

    @property
    def listener(self) -> dict:
        """The senders' listener: ``bind`` address and ``tls`` files (None: plain TCP)."""
        saved = self.credentials.get("listener") if self.cred_file.exists() else None
        return saved or {"bind": HOST, "tls": None}

    @property
    def sender_host(self) -> str:
        """The address senders on this machine connect to (the bind address, or 127.0.0.1 when the
        listener binds every address)."""
        bind = self.listener["bind"]
        return HOST if bind in ("0.0.0.0", "::", "") else bind

    @property
    def operator_port(self) -> int:
        """The port of ``ingest`` and ``admin``."""
        creds = self.credentials
        return int(creds.get("operator_port", creds["port"]))  # one port: a broker started by an older meters

    def url(self, role: str = "admin") -> str:
        """``mqtt://user:password@127.0.0.1:port`` for a role or a provisioned sender name (senders on
        the senders' port, ``ingest`` and ``admin`` on the operators' port)."""
        creds = self.credentials
        users = creds["users"]
        if role not in users:
            raise MetersError(f"unknown broker user {role!r}; known: {', '.join(sorted(users))}")
        if role in OPERATORS or role == NOTIFY:
            return str(BrokerURL(HOST, creds.get("operator_port", creds["port"]), role, users[role]))
        tls = self.listener["tls"]
        return str(BrokerURL(self.sender_host, creds["port"], role, users[role], tls=bool(tls),
                             cafile=tls.get("cafile") if tls else None))

    def pid(self) -> int | None:
        """Pid of the broker this state dir started, if that process is alive and is ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        if not any(b"mosquitto" in c for c in cmdline[:1]) or str(self.conf.resolve()).encode() not in cmdline:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None and self.cred_file.exists() and _port_open(self.port, self.sender_host)

    def status(self) -> dict:
        """What is true right now: running or not, pid, port, accepting connections."""
        pid = self.pid()
        port = self.credentials["port"] if self.cred_file.exists() else None
        accepting = bool(port and pid and _port_open(port, self.sender_host))
        return {"running": bool(pid) and accepting, "pid": pid, "port": port,
                "bind": self.listener["bind"], "tls": bool(self.listener["tls"]),
                "accepting": accepting, "dir": str(self.dir.resolve())}

    def info(self) -> dict:
        """URLs and credentials of every role (what ``start --json`` prints)."""
        creds = self.credentials
        listener = self.listener
        return {"host": HOST, "port": creds["port"], "operator_port": self.operator_port,
                "bind": listener["bind"], "tls": listener["tls"],
                "dir": str(self.dir.resolve()), "pid": self.pid(),
                "urls": {u: self.url(u) for u in creds["users"] if u in ROLES},
                "users": {u: p for u, p in creds["users"].items() if u in ROLES},
                "senders": sorted(u for u in creds["users"] if is_sender(u)),
                "alert_urls": {u: self.url(u) for u in creds["users"] if u == NOTIFY or u.startswith(GATEWAY_PREFIX)},
                "topic_filter": READINGS,
                "shared_subscription": SHARED_READINGS,
                "limits": dataclasses.asdict(self.limits)}

    def public_info(self, show_secrets: bool = False) -> dict:
        """:meth:`info` without passwords (URLs redacted) unless ``show_secrets``, with the path of
        the credentials file (mode 0600) that holds them."""
        info = self.info()
        info["credentials_file"] = str(self.cred_file.resolve())
        if not show_secrets:
            info.pop("users")
            info["urls"] = {r: parse_broker_url(u).redacted() for r, u in info["urls"].items()}
        return info

    def saved_limits(self) -> BrokerLimits:
        """The limits of the last start (the defaults if none)."""
        saved = self.credentials.get("limits") if self.cred_file.exists() else None
        return BrokerLimits(**saved) if saved else BrokerLimits()

    def known_limits(self) -> list[str]:
        """Known limits of this broker that users of shared subscriptions must know."""
        return [SHARED_RESTART_LIMIT]

    # -- configuration ---------------------------------------------------------------------------
    def _write_config(self, port: int, operator_port: int, plugin: str, listener: dict,
                      foreground: bool = False) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lim = self.limits
        tls = listener["tls"]
        tls_lines = [f"{k} {v}" for k, v in (tls or {}).items() if v and k in ("cafile", "certfile", "keyfile")]
        lines = [
            "# generated by `meters broker` — do not edit, it is rewritten on start",
            f"pid_file {self.pid_file.resolve()}",
            "per_listener_settings false",
            "allow_anonymous false",
            f"plugin {plugin}",
            f"plugin_opt_config_file {self.dynsec_file.resolve()}",
            "persistence true",
            f"persistence_location {self.data_dir.resolve()}/",
            "autosave_interval 1",
            "retain_available false",
            # bounded per-session queues (a full queue drops new messages: size for the ingest outage)
            f"max_queued_messages {lim.max_queued_messages}",
            f"max_queued_bytes {lim.max_queued_bytes}",
            f"message_size_limit {lim.message_size_limit}",
            f"max_packet_size {lim.max_packet_size}",
            f"max_inflight_messages {lim.max_inflight_messages}",
            # a service (--foreground) logs to stderr (the journal); else a file that `meters broker
            # rotate-log` rotates (SIGHUP reopens it)
            "log_dest stderr" if foreground else f"log_dest file {self.log_file.resolve()}",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            "",
            "# senders (data concentrators): the user name is the client id",
            f"listener {port} {listener['bind']}" if listener["bind"] not in ("", "0.0.0.0", "::")
            else f"listener {port}",
            "use_username_as_clientid true",
            *tls_lines,
            "",
            "# operators: ingest workers and admin tools",
            f"listener {operator_port} {HOST}",
        ]
        if os.geteuid() == 0:
            lines.insert(1, "user root")  # keep files owned and writable by the caller
        self.conf.write_text("\n".join(lines) + "\n")

    def _write_dynsec(self, users: dict[str, str]) -> None:
        tmp = self.dynsec_file.with_name(f".{self.dynsec_file.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dynsec_config(users), f, indent=1)
        os.replace(tmp, self.dynsec_file)

    def _save_credentials(self, port: int, operator_port: int, users: dict[str, str],
                          listener: dict | None = None) -> None:
        tmp = self.cred_file.with_name(f".{self.cred_file.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"port": port, "operator_port": operator_port, "users": users,
                       "limits": dataclasses.asdict(self.limits),
                       "listener": listener or {"bind": HOST, "tls": None}}, f, indent=2)
        os.replace(tmp, self.cred_file)

    def add_senders(self, names) -> dict[str, str]:
        """Provision sender users (one per data concentrator); returns their passwords. Existing
        names keep their password. A running broker learns them at once (dynamic-security commands
        sent as ``admin``)."""
        return self._provision([check_sender_name(n) for n in names])

    def add_alert_users(self, channels) -> dict[str, str]:
        """Provision the alert dispatcher's user ``notify`` and a push gateway user
        ``alerts.<channel>`` per channel (reading only ``meters/v1/alerts/<channel>``); returns
        their passwords."""
        names = [NOTIFY]
        for ch in channels:
            if not ch or any(c in ch for c in "/+#$ ") or len(ch) > 57:
                raise MetersError(f"channel {ch!r} cannot name an MQTT topic level")
            names.append(GATEWAY_PREFIX + ch)
        return self._provision(names)

    def _provision(self, names: list[str]) -> dict[str, str]:
        creds = self.credentials
        users = creds["users"]
        new, added = {}, {}
        for name in names:
            if name not in users:
                users[name] = added[name] = secrets.token_urlsafe(12)
            new[name] = users[name]
        if not added:
            return new
        if self.is_running():
            self._control([cmd for name, pw in added.items() for cmd in (
                {"command": "createRole", "rolename": role_name(name), "acls": role_acls(name)},
                {"command": "createClient", "username": name, "password": pw,
                 **({"clientid": name} if name != NOTIFY else {}),
                 "roles": [{"rolename": role_name(name)}]})])
        self._save_credentials(creds["port"], creds["operator_port"], users, creds.get("listener"))
        return new

    def _control(self, commands: list[dict], timeout: float = 10.0) -> None:
        """Send dynamic-security commands as ``admin``; raise :class:`MetersError` on any error."""

        client, kw = make_client(parse_broker_url(self.url("admin")), f"meters-broker-admin-{os.getpid()}")
        subscribed, answered = threading.Event(), threading.Event()
        responses: list = []

        def on_message(c, userdata, msg):
            with contextlib.suppress(ValueError, AttributeError):
                responses.extend(json.loads(msg.payload).get("responses", []))
            if len(responses) >= len(commands):
                answered.set()

        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = on_message
        try:
            client.connect(**kw)
        except OSError as e:
            raise MetersError(f"cannot reach the managed broker to add senders: {e}") from None
        client.loop_start()
        try:
            client.subscribe(f"{CONTROL}/response", qos=1)
            if not subscribed.wait(timeout):
                raise MetersError("the managed broker did not answer a SUBSCRIBE of its admin")
            for i in range(0, len(commands), 500):
                client.publish(CONTROL, json.dumps({"commands": commands[i:i + 500]}), qos=1)
            if not answered.wait(timeout):
                raise MetersError(f"the managed broker answered {len(responses)} of {len(commands)} "
                                  "provisioning commands")
        finally:
            client.disconnect()
            client.loop_stop()
        errors = [f"{r.get('command')}: {r['error']}" for r in responses if r.get("error")]
        if errors:
            raise MetersError("the managed broker refused: " + "; ".join(errors[:3]))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, port: int | None = None, timeout: float = 10.0, operator_port: int | None = None,
              bind: str | None = None, tls: dict | bool | None = None, tls_hosts: tuple[str, ...] = (),
              foreground: bool = False, log_max_bytes: int = LOG_MAX_BYTES) -> dict:
        """Start the broker (idempotent: an already running broker is left alone) and wait until
        it accepts authenticated connections. Returns :meth:`info`.

        ``bind``: the senders' listener address (default 127.0.0.1, then the last start's; 0.0.0.0
        for every address). ``tls``: True generates a CA and a server certificate for
        127.0.0.1, localhost, this host's name, the bind address and ``tls_hosts``
        (:mod:`meters.tls`); a dict ``{"certfile", "keyfile", "cafile"}`` uses given files; False
        turns TLS off; None keeps the last start's. The operators' listener stays plain TCP on
        127.0.0.1. ``foreground``: replace this process with Mosquitto, logging to stderr (a
        systemd ``Type=simple`` service); it never returns. Else the log file is rotated first when
        it is larger than ``log_max_bytes``."""
        if self.is_running():
            if port is not None and port != self.port:
                raise MetersError(f"the managed broker in {self.dir} already runs on port {self.port}")
            if bind is not None and bind != self.listener["bind"]:
                raise MetersError(f"the managed broker in {self.dir} already runs on {self.listener['bind']}; "
                                  "stop it first")
            if foreground:
                raise MetersError(f"the managed broker in {self.dir} already runs (pid {self.pid()})")
            return self.info()
        broker, _ = find_mosquitto()
        plugin = find_dynsec_plugin(broker)
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.credentials if self.cred_file.exists() else {}
        if not self._limits_given:
            self.limits = self.saved_limits().check()
        port = self._pick_port(port, saved.get("port"))
        operator_port = self._pick_port(operator_port, saved.get("operator_port"), avoid=port)
        users = saved.get("users") or {role: secrets.token_urlsafe(12) for role in ROLES}
        listener = self._listener(bind, tls, tls_hosts, saved.get("listener"))
        self._write_config(port, operator_port, plugin, listener, foreground)
        self._write_dynsec(users)
        self._save_credentials(port, operator_port, users, listener)
        self.pid_file.unlink(missing_ok=True)
        if foreground:
            os.execv(broker, [broker, "-c", str(self.conf.resolve())])
        if self.log_file.exists() and self.log_file.stat().st_size > log_max_bytes:
            self.rotate_log()
        log = open(self.log_file, "ab")
        self._proc = subprocess.Popen([broker, "-c", str(self.conf.resolve())], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._wait_ready(operator_port, timeout)
        return self.info()

    def _listener(self, bind: str | None, tls, hosts: tuple[str, ...], saved: dict | None) -> dict:
        saved = saved or {"bind": HOST, "tls": None}
        bind = saved["bind"] if bind is None else bind
        if tls is None:
            tls = saved["tls"]
        elif tls is True:
            from .tls import generate

            names = [HOST, "localhost", socket.gethostname(), *hosts]
            if bind not in ("", "0.0.0.0", "::"):
                names.insert(0, bind)
            tls = generate(self.tls_dir, names)
        return {"bind": bind, "tls": tls or None}

    def rotate_log(self, keep: int = LOG_KEEP) -> None:
        """Rename ``mosquitto.log`` to ``.1`` (older ones to ``.2`` … ``.keep``; the oldest is
        removed), and make a running broker reopen its log file (SIGHUP)."""
        for i in range(keep - 1, 0, -1):
            older = self.log_file.with_name(f"{self.log_file.name}.{i}")
            if older.exists():
                os.replace(older, self.log_file.with_name(f"{self.log_file.name}.{i + 1}"))
        if self.log_file.exists():
            os.replace(self.log_file, self.log_file.with_name(f"{self.log_file.name}.1"))
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    @staticmethod
    def _pick_port(asked: int | None, saved: int | None, avoid: int | None = None) -> int:
        if asked is not None:
            if _port_open(asked):
                raise MetersError(f"port {asked} on {HOST} is already in use")
            return asked
        if saved and saved != avoid and not _port_open(saved):
            return int(saved)
        while True:
            p = free_port()
            if p != avoid:
                return p

    def _wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise MetersError(f"mosquitto exited with status {self._proc.returncode}: "
                                  f"{self._log_tail()}")
            if _port_open(port) and _port_open(self.port, self.sender_host):
                client, kw = make_client(parse_broker_url(self.url("admin")), "meters-broker-probe")
                try:
                    rc = client.connect(**kw)
                    if rc == 0:
                        client.disconnect()
                        return
                except OSError as e:
                    last = str(e)
            time.sleep(0.05)
        raise MetersError(f"mosquitto did not accept connections on {HOST}:{port} within {timeout}s "
                          f"({last}); {self._log_tail()}")

    def _log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").strip().splitlines()[-n:])
        except FileNotFoundError:
            return "no log"

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the broker this state dir started (SIGTERM: it saves its persistence). Returns
        False when none was running. Never touches another process."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                if self._proc.poll() is not None:
                    break
            elif not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def restart(self) -> dict:
        """Stop and start on the same ports with the same credentials (persistence kept)."""
        port, operator_port = self.port, self.operator_port
        self.stop()
        deadline = time.monotonic() + 5
        while (_port_open(port, self.sender_host) or _port_open(operator_port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start(port=port, operator_port=operator_port)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def managed_broker(state_dir: str | os.PathLike, port: int | None = None,
                   limits: BrokerLimits | None = None):
    """Start a managed broker in ``state_dir`` for the duration of the block, then stop it."""
    broker = ManagedBroker(state_dir, limits)
    broker.start(port=port)
    try:
        yield broker
    finally:
        broker.stop()
