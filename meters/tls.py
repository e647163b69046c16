"""TLS material for the managed broker: a private CA and a server certificate signed by it, made with
the ``cryptography`` package. Senders trust the CA file (``mqtts://…?cafile=ca.crt``); the keys are
written 0600."""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from .errors import MetersError

CA_DAYS = 3650
SERVER_DAYS = 825


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _san(hosts: list[str]):
    from cryptography import x509

    names = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def generate(directory: Path, hosts: list[str]) -> dict[str, str]:
    """Write ``ca.crt``, ``ca.key``, ``server.crt``, ``server.key`` to ``directory`` (the server
    certificate valid for ``hosts``: IP addresses and DNS names) and return their paths. Existing
    files are kept (a sender's trusted CA stays valid across restarts)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    paths = {k: directory / f"{k.replace('_', '.')}" for k in ("ca_crt", "ca_key", "server_crt", "server_key")}
    out = {"cafile": str(paths["ca_crt"].resolve()), "certfile": str(paths["server_crt"].resolve()),
           "keyfile": str(paths["server_key"].resolve())}
    if all(p.exists() for p in paths.values()):
        return out
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    pem = serialization.Encoding.PEM
    key_pem = dict(encoding=pem, format=serialization.PrivateFormat.PKCS8,
                   encryption_algorithm=serialization.NoEncryption())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meters broker CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=CA_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
              .issuer_name(ca_name).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
              .add_extension(_san(hosts), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    _write_private(paths["ca_key"], ca_key.private_bytes(**key_pem))
    _write_private(paths["server_key"], key.private_bytes(**key_pem))
    paths["ca_crt"].write_bytes(ca.public_bytes(pem))
    paths["server_crt"].write_bytes(server.public_bytes(pem))
    return out


def given(cert: str, key: str, ca: str | None) -> dict[str, str | None]:
    """Operator-supplied files (e.g. from the city's PKI): checked to exist, paths made absolute."""
    for name, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path and not Path(path).is_file():
            raise MetersError(f"{name} {path}: no such file")
    return {"cafile": str(Path(ca).resolve()) if ca else None, "certfile": str(Path(cert).resolve()),
            "keyfile": str(Path(key).resolve())}
