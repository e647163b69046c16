"""Broker URLs and paho-mqtt client construction shared by every stage (nothing broker-specific).

A broker URL is ``mqtt://USER:PASSWORD@HOST:PORT`` (``mqtts://`` for TLS); ``?version=3.1.1``
selects MQTT 3.1.1 instead of the default 5.0; ``?cafile=PATH`` names the CA that signed a TLS
broker's certificate (default: the system's trusted CAs).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import paho.mqtt.client as mqtt

from .errors import MetersError

TOPIC_FILTER = "meters/v1/+/readings"
SHARE_GROUP = "ingest"


class ProtocolError(Exception):
    """Bytes that are not MQTT as this code speaks it."""


def varint(n: int) -> bytes:
    """MQTT's variable byte integer."""
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def read_varint(buf, pos: int, stop: int | None = None) -> tuple[int, int] | None:
    """(value, position after it) of the variable byte integer at ``buf[pos:stop]``; None when
    incomplete; :class:`ProtocolError` when longer than its 4 bytes."""
    stop = len(buf) if stop is None else min(stop, len(buf))
    n = shift = 0
    for i in range(pos, min(pos + 4, stop)):
        b = buf[i]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i + 1
        shift += 7
    if stop - pos >= 4:
        raise ProtocolError("variable byte integer longer than 4 bytes")
    return None


def readings_topic(sender_id: str) -> str:
    """The topic a sender publishes its readings to."""
    return f"meters/v1/{sender_id}/readings"


def sender_of(topic: str) -> str | None:
    """The sender id in ``meters/v1/<sender>/readings``, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "meters" and parts[1] == "v1" and parts[3] == "readings":
        return parts[2]
    return None


@dataclass(frozen=True)
class BrokerURL:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    version: str = "5"
    cafile: str | None = None

    @property
    def protocol(self) -> mqtt.MQTTProtocolVersion:
        return mqtt.MQTTProtocolVersion.MQTTv5 if self.version == "5" else mqtt.MQTTProtocolVersion.MQTTv311

    def with_credentials(self, username: str, password: str) -> "BrokerURL":
        return BrokerURL(self.host, self.port, username, password, self.tls, self.version, self.cafile)

    def __str__(self) -> str:
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        scheme = "mqtts" if self.tls else "mqtt"
        query = urlencode({k: v for k, v in (("version", self.version if self.version != "5" else None),
                                             ("cafile", self.cafile)) if v}, safe="/")
        return f"{scheme}://{auth}{self.host}:{self.port}" + (f"?{query}" if query else "")

    def redacted(self) -> str:
        """The URL without its password (for logs)."""
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerURL:
    """Parse ``mqtt://user:pass@host:port``; raise :class:`MetersError` naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise MetersError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise MetersError(f"broker URL {url!r}: no host")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise MetersError(f"broker URL {url!r}: bad port") from None
    query = parse_qs(parts.query)
    version = query.get("version", ["5"])[0]
    if version in ("5", "5.0"):
        version = "5"
    elif version in ("3.1.1", "311", "4"):
        version = "3.1.1"
    else:
        raise MetersError(f"broker URL {url!r}: version must be 5 or 3.1.1")
    return BrokerURL(parts.hostname, port,
                     unquote(parts.username) if parts.username is not None else None,
                     unquote(parts.password) if parts.password is not None else None,
                     parts.scheme == "mqtts", version, query.get("cafile", [None])[0])


def make_client(url: BrokerURL, client_id: str = "", *, clean_start: bool = True,
                session_expiry: int | None = None, userdata=None) -> tuple[mqtt.Client, dict]:
    """A paho 2.x client configured for ``url`` (not yet connected) and the kwargs for
    ``client.connect(**kwargs)``. With MQTT 5 a persistent session uses ``clean_start=False``
    and a ``session_expiry`` in seconds."""
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes

    v5 = url.version == "5"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=url.protocol,
                         userdata=userdata, clean_session=None if v5 else clean_start)
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=url.cafile)
    kwargs: dict = {"host": url.host, "port": url.port, "keepalive": 30}
    if v5:
        kwargs["clean_start"] = clean_start
        if session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
            kwargs["properties"] = props
    return client, kwargs
