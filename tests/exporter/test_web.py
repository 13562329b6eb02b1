"""/metrics over TLS with basic auth (exporter-toolkit web-config), checked with httpx and a real
Prometheus; the self-signed certificate is generated at test time."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import bcrypt
import httpx
import pytest
from gpufleet.exporter.errors import ConfigError
from gpufleet.exporter.sinks.web import load_web_config, parse_listen

from tests.exporter.harness import run_exporter
from tests.exporter.synthetic import SyntheticSource
from tests.servers import Prometheus, require_binary

PASSWORD = "s3cret-scrape"


def _web_config(tmp: Path) -> Path:
    openssl = require_binary("openssl")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp / "server.key"),
                    "-out", str(tmp / "server.crt"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = tmp / "web.yml"
    path.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                    f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    return path


def test_web_config_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  alice: plaintext\n")
    with pytest.raises(ConfigError, match="bcrypt or argon2"):
        load_web_config(bad)
    bad.write_text("tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n")
    with pytest.raises(ConfigError, match="does not exist"):
        load_web_config(bad)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen("9835")
    assert parse_listen(":9835") == ("0.0.0.0", 9835)


def test_tls_and_basic_auth(tmp_path: Path) -> None:
    web = load_web_config(_web_config(tmp_path))
    with run_exporter(SyntheticSource(1), web=web) as exp:
        assert exp.url.startswith("https://")
        idle = socket.create_connection(("127.0.0.1", exp.server.port))  # never starts its TLS handshake
        ca = ssl.create_default_context(cafile=str(tmp_path / "server.crt"))
        assert httpx.get(exp.url, verify=ca).status_code == 401
        assert httpx.get(exp.url, verify=ca, auth=("prometheus", "wrong")).status_code == 401
        assert httpx.get(exp.url, verify=ca, auth=("mallory", PASSWORD)).status_code == 401
        ok = httpx.get(exp.url, verify=ca, auth=("prometheus", PASSWORD))
        assert ok.status_code == 200 and "gpufleet_gpu_up{" in ok.text
        with pytest.raises(httpx.HTTPError):
            httpx.get(exp.url.replace("https://", "http://"), timeout=5)
        idle.close()  # the idle client held no one up: every request above was answered


@pytest.mark.server
@pytest.mark.slow
def test_prometheus_scrapes_over_tls_with_basic_auth(tmp_path: Path) -> None:
    web = load_web_config(_web_config(tmp_path))
    with run_exporter(SyntheticSource(1), web=web) as exp:
        prom = Prometheus(tmp_path / "prom", [exp.host_port], scheme="https", extra_scrape=(
            f"    basic_auth:\n      username: prometheus\n      password: {PASSWORD}\n"
            f"    tls_config:\n      ca_file: {tmp_path / 'server.crt'}\n"))
        try:
            result = prom.wait_for("gpufleet_gpu_up", timeout=30)
            assert result[0]["value"][1] == "1"
        finally:
            prom.stop()


def test_gzip_scrape_is_the_same_exposition() -> None:
    """A scraper that accepts gzip (Prometheus does) gets one gzip stream that decodes to exactly the
    identity body; one that does not (or refuses it with q=0) gets the plain text."""
    import gzip
    import http.client

    from gpufleet.exporter.loop import CollectionLoop
    from gpufleet.exporter.sinks.prometheus import PrometheusSink
    from gpufleet.exporter.sinks.web import MetricsServer, accepts_gzip

    assert accepts_gzip("gzip") and accepts_gzip("deflate, gzip;q=0.5") and accepts_gzip("*")
    assert not accepts_gzip("") and not accepts_gzip("identity") and not accepts_gzip("gzip;q=0")
    loop = CollectionLoop(SyntheticSource(3), interval=1, clock=lambda: 1000.0)
    sink = PrometheusSink(loop)
    server = MetricsServer(sink.render_chunks, "127.0.0.1", 0).start()
    try:
        bodies = {}
        for cycle in range(2):  # a new snapshot: the compressed body follows it
            loop.collect_once(now=1000.0 + cycle)
            for accept in ("gzip", "identity", "gzip;q=0"):
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                conn.request("GET", "/metrics", headers={"Accept-Encoding": accept})
                resp = conn.getresponse()
                raw = resp.read()
                assert resp.status == 200
                encoding = resp.getheader("Content-Encoding")
                assert encoding == ("gzip" if accept == "gzip" else None)
                bodies[accept] = gzip.decompress(raw) if encoding else raw
                conn.close()
            assert bodies["gzip"] == bodies["identity"] == bodies["gzip;q=0"] == sink.render()
            assert b"gpufleet_gpu_up" in bodies["gzip"]
    finally:
        server.stop()
