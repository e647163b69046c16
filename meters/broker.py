"""A project-managed Mosquitto on 127.0.0.1: generated config, hashed passwords, per-sender ACLs.

Roles: ``admin`` (everything), ``ingest`` (reads ``meters/v1/+/readings``, also through
``$share/<group>/…``), and senders (each may publish only to ``meters/v1/<its username>/readings``).
``sender`` is the default sender; :meth:`ManagedBroker.add_senders` provisions more (one per data
concentrator) and reloads the broker.

    with managed_broker(tmp_path) as broker:
        url = broker.url("ingest")
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import MetersError
from .mqtt import BrokerURL, make_client, parse_broker_url

DEFAULT_STATE_DIR = Path(".meters") / "broker"
ROLES = ("admin", "ingest", "sender")
HOST = "127.0.0.1"


def find_mosquitto() -> tuple[str, str]:
    """Paths of ``mosquitto`` and ``mosquitto_passwd`` (also looked up in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin"
    broker = shutil.which("mosquitto", path=path)
    passwd = shutil.which("mosquitto_passwd", path=path)
    if not broker or not passwd:
        raise MetersError("mosquitto (and mosquitto_passwd) not found; install Mosquitto 2.x "
                          "(`make setup` does it with apt-get) or pass --broker to an existing broker")
    return broker, passwd


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def resolve_broker(url: str | None, role: str, state_dir: str | os.PathLike | None = None) -> BrokerURL:
    """``url`` if given, else ``$METERS_BROKER``, else the managed broker's URL for ``role``."""
    url = url or os.environ.get("METERS_BROKER")
    if url:
        return parse_broker_url(url)
    broker = ManagedBroker(state_dir)
    if not broker.is_running():
        raise MetersError("no --broker given and no managed broker is running; "
                          "start one with `meters broker start` or pass --broker mqtt://user:pass@host:port")
    return parse_broker_url(broker.url(role))


class ManagedBroker:
    """A Mosquitto whose config, credentials, pid file, log and persistence live in ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike | None = None):
        self.dir = Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR
        self.conf = self.dir / "mosquitto.conf"
        self.passwd_file = self.dir / "passwd"
        self.acl_file = self.dir / "acl"
        self.cred_file = self.dir / "credentials.json"
        self.pid_file = self.dir / "mosquitto.pid"
        self.log_file = self.dir / "mosquitto.log"
        self.data_dir = self.dir / "data"
        self._proc: subprocess.Popen | None = None

    # -- state -----------------------------------------------------------------------------------
    @property
    def credentials(self) -> dict:
        if not self.cred_file.exists():
            raise MetersError(f"no managed broker in {self.dir} (run `meters broker start`)")
        return json.loads(self.cred_file.read_text())

    @property
    def port(self) -> int:
        return int(self.credentials["port"])

    def url(self, role: str = "admin") -> str:
        """``mqtt://user:password@127.0.0.1:port`` for a role or a provisioned sender name."""
        creds = self.credentials
        users = creds["users"]
        if role not in users:
            raise MetersError(f"unknown broker user {role!r}; known: {', '.join(sorted(users))}")
        return str(BrokerURL(HOST, creds["port"], role, users[role]))

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
        return self.pid() is not None and self.cred_file.exists() and _port_open(self.port)

    def status(self) -> dict:
        """What is true right now: running or not, pid, port, accepting connections."""
        pid = self.pid()
        port = self.credentials["port"] if self.cred_file.exists() else None
        accepting = bool(port and pid and _port_open(port))
        return {"running": bool(pid) and accepting, "pid": pid, "port": port,
                "accepting": accepting, "dir": str(self.dir.resolve())}

    def info(self) -> dict:
        """URLs and credentials of every role (what ``start --json`` prints)."""
        creds = self.credentials
        return {"host": HOST, "port": creds["port"], "dir": str(self.dir.resolve()),
                "pid": self.pid(),
                "urls": {u: self.url(u) for u in creds["users"] if u in ROLES},
                "users": {u: p for u, p in creds["users"].items() if u in ROLES},
                "senders": sorted(u for u in creds["users"] if u not in ROLES or u == "sender"),
                "topic_filter": "meters/v1/+/readings",
                "shared_subscription": "$share/ingest/meters/v1/+/readings"}

    # -- configuration ---------------------------------------------------------------------------
    def _write_config(self, port: int) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "# generated by `meters broker` — do not edit, it is rewritten on start",
            f"pid_file {self.pid_file.resolve()}",
            f"listener {port} {HOST}",
            "allow_anonymous false",
            f"password_file {self.passwd_file.resolve()}",
            f"acl_file {self.acl_file.resolve()}",
            "persistence true",
            f"persistence_location {self.data_dir.resolve()}/",
            "autosave_interval 1",
            # a persistent ingest session must not lose queued QoS 1 messages while it is away
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 1000",
            "max_packet_size 67108864",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.insert(1, "user root")  # keep files owned and writable by the caller
        self.conf.write_text("\n".join(lines) + "\n")
        acl = [
            "user admin",
            "topic readwrite #",
            "",
            "user ingest",
            "topic read meters/v1/+/readings",
            "topic read $SYS/#",
            "",
            "# every other user is a sender: it may publish to its own readings topic only",
            "pattern write meters/v1/%u/readings",
        ]
        self.acl_file.write_text("\n".join(acl) + "\n")

    def _hash_passwords(self, users: dict[str, str]) -> None:
        _, passwd = find_mosquitto()
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".passwd.")
        with os.fdopen(fd, "w") as f:
            for user, password in users.items():
                f.write(f"{user}:{password}\n")
        try:
            subprocess.run([passwd, "-U", tmp], check=True, capture_output=True)
        except subprocess.CalledProcessError as e:
            raise MetersError(f"mosquitto_passwd failed: {e.stderr.decode().strip()}") from None
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.passwd_file)

    def _save_credentials(self, port: int, users: dict[str, str]) -> None:
        self.cred_file.write_text(json.dumps({"port": port, "users": users}, indent=2))
        os.chmod(self.cred_file, 0o600)

    def add_senders(self, names) -> dict[str, str]:
        """Provision sender users (one per data concentrator); returns their passwords. Existing
        names keep their password. Reloads a running broker (SIGHUP)."""
        creds = self.credentials
        users = creds["users"]
        new = {}
        for name in names:
            name = str(name)
            if not name or any(c in name for c in "/+#:") or name in ("admin", "ingest"):
                raise MetersError(f"invalid sender id {name!r} (no '/', '+', '#', ':'; not a role name)")
            if name not in users:
                users[name] = secrets.token_urlsafe(12)
            new[name] = users[name]
        self._hash_passwords(users)
        self._save_credentials(creds["port"], users)
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGHUP)
            time.sleep(0.2)
        return new

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, port: int | None = None, timeout: float = 10.0) -> dict:
        """Start the broker (idempotent: an already running broker is left alone) and wait until
        it accepts authenticated connections. Returns :meth:`info`."""
        if self.is_running():
            if port is not None and port != self.port:
                raise MetersError(f"the managed broker in {self.dir} already runs on port {self.port}")
            return self.info()
        broker, _ = find_mosquitto()
        self.dir.mkdir(parents=True, exist_ok=True)
        if port is None:
            port = self.credentials["port"] if self.cred_file.exists() else free_port()
            if _port_open(port):
                port = free_port()
        elif _port_open(port):
            raise MetersError(f"port {port} on {HOST} is already in use")
        users = self.credentials["users"] if self.cred_file.exists() else {
            role: secrets.token_urlsafe(12) for role in ROLES}
        self._write_config(port)
        self._hash_passwords(users)
        self._save_credentials(port, users)
        self.pid_file.unlink(missing_ok=True)
        log = open(self.log_file, "ab")
        self._proc = subprocess.Popen([broker, "-c", str(self.conf.resolve())], stdout=log, stderr=log,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._wait_ready(port, timeout)
        return self.info()

    def _wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "not started"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise MetersError(f"mosquitto exited with status {self._proc.returncode}: "
                                  f"{self._log_tail()}")
            if _port_open(port):
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
        """Stop and start on the same port with the same credentials (persistence kept)."""
        port = self.port
        self.stop()
        deadline = time.monotonic() + 5
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start(port=port)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextlib.contextmanager
def managed_broker(state_dir: str | os.PathLike, port: int | None = None):
    """Start a managed broker in ``state_dir`` for the duration of the block, then stop it."""
    broker = ManagedBroker(state_dir)
    broker.start(port=port)
    try:
        yield broker
    finally:
        broker.stop()
