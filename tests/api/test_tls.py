"""HTTPS with a certificate made at test time: TLS 1.3 by default, older protocols refused."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gpufleet.exporter.errors import ConfigError

from gpufleet.api.app import create_app
from gpufleet.api.server import ApiServer
from tests.api.conftest import Api


def make_cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _handshake(port: int, version: ssl.TLSVersion, cafile: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = version
    ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        return str(tls.version())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")  # the refused floor
@pytest.mark.parametrize("min_version", ["1.3", "1.2"])
def test_https_and_protocol_floor(api: Api, tmp_path: Path, min_version: str) -> None:
    cert, key = make_cert(tmp_path)
    server = ApiServer(create_app(api.ctx), "127.0.0.1:0", tls_cert=cert, tls_key=key, tls_min_version=min_version)
    server.start()
    try:
        r = httpx.get(f"https://localhost:{server.port}/healthz", verify=ssl.create_default_context(cafile=str(cert)))
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert r.http_version == "HTTP/1.1"
        assert _handshake(server.port, ssl.TLSVersion.TLSv1_3, cert) == "TLSv1.3"
        if min_version == "1.3":
            with pytest.raises(ssl.SSLError):
                _handshake(server.port, ssl.TLSVersion.TLSv1_2, cert)
        else:
            assert _handshake(server.port, ssl.TLSVersion.TLSv1_2, cert) == "TLSv1.2"
        # TLS 1.1 and older are refused in both configurations
        with pytest.raises(ssl.SSLError):
            _handshake(server.port, ssl.TLSVersion.TLSv1_1, cert)
    finally:
        server.stop()


def test_tls_needs_cert_and_key(api: Api, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="both"):
        ApiServer(create_app(api.ctx), "127.0.0.1:0", tls_cert=tmp_path / "c.pem")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        ApiServer(create_app(api.ctx), "8080")
