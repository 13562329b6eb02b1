"""The /metrics HTTP server, with optional TLS and basic auth in the exporter-toolkit web-config style.

A web-config file is YAML, as for node_exporter's ``--web.config.file``::

    tls_server_config:
      cert_file: server.crt      # relative paths are relative to the config file's folder
      key_file: server.key
    basic_auth_users:
      prometheus: $2b$12$...     # bcrypt hash (htpasswd -nBC 12); argon2 ($argon2id$...) also accepted

Only ``GET /metrics`` (and a small index page at ``/``) are served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gpufleet.exporter.errors import ConfigError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


def load_web_config(path: Path | str) -> WebConfig:
    """Read an exporter-toolkit style web-config file. Raises ConfigError naming what is wrong."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"web config {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"web config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"web config {path}: expected a mapping")
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise ConfigError(f"web config {path}: unknown keys {sorted(unknown)}")
    cfg = WebConfig()
    tls = data.get("tls_server_config") or {}
    if tls:
        try:
            cfg.cert_file = (path.parent / tls["cert_file"]).resolve()
            cfg.key_file = (path.parent / tls["key_file"]).resolve()
        except KeyError as exc:
            raise ConfigError(f"web config {path}: tls_server_config needs {exc.args[0]}") from None
        for p in (cfg.cert_file, cfg.key_file):
            if not p.exists():
                raise ConfigError(f"web config {path}: {p} does not exist")
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise ConfigError(f"web config {path}: basic_auth_users must map user names to password hashes")
    for user, hashed in users.items():
        if not str(hashed).startswith(("$2a$", "$2b$", "$2y$", "$argon2")):
            raise ConfigError(f"web config {path}: the password of {user!r} must be a bcrypt or argon2 hash")
    cfg.users = {str(k): str(v) for k, v in users.items()}
    return cfg


def verify_password(password: str, hashed: str) -> bool:
    """Check a password against a bcrypt or argon2 hash."""
    if hashed.startswith("$argon2"):
        from argon2 import PasswordHasher
        from argon2.exceptions import VerificationError, VerifyMismatchError

        try:
            return bool(PasswordHasher().verify(hashed, password))
        except (VerifyMismatchError, VerificationError, ValueError):
            return False
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password.encode(), hashed.encode()))
    except ValueError:
        return False


class _Auth:
    """Basic-auth check with a cache of accepted credentials (hash checks are slow on purpose)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{user}\0{password}\0{hashed}".encode()).digest()
        with self._lock:
            if any(hmac.compare_digest(key, k) for k in self._ok):
                return True
        if verify_password(password, hashed):
            with self._lock:
                self._ok.add(key)
            return True
        return False


BLOCKING_WRITE_BYTES = 1 << 20
"""Bodies larger than this are written with one blocking send (plain HTTP)."""


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (``gzip``, ``*``; not with ``q=0``)."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().lower()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.", "0.0", "0.00", "0.000"))
    return False


class MetricsServer:
    """Serves ``render()`` (bytes, or a list of byte chunks) on ``GET /metrics`` in a background thread.

    ``render_gzip`` gives the same exposition gzip-encoded, served when the scraper accepts gzip (as
    Prometheus does). By default it is the ``render_gzip_chunks`` of the object ``render`` is bound to
    (a :class:`~exporter.sinks.prometheus.PrometheusSink`), when it has one.
    """

    def __init__(self, render: Callable[[], bytes | list[bytes]], host: str = "127.0.0.1", port: int = 19835,
                 web: WebConfig | None = None,
                 render_gzip: Callable[[], bytes | list[bytes]] | None = None) -> None:
        self.render = render
        if render_gzip is None:
            render_gzip = getattr(getattr(render, "__self__", None), "render_gzip_chunks", None)
        self.render_gzip = render_gzip
        self.web = web or WebConfig()
        auth = _Auth(self.web.users)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            timeout = 60  # seconds a client may take per read: a stuck client cannot hold a thread forever

            def setup(self) -> None:
                self.request.settimeout(self.timeout)
                if isinstance(self.request, ssl.SSLSocket):
                    self.request.do_handshake()  # here, in the client's thread, not in the accept loop
                super().setup()
                # headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if not isinstance(self.request, ssl.SSLSocket):
                    # the kernel's own send timeout bounds a blocking body write (see _send)
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                            struct.pack("ll", int(self.timeout), 0))

            def do_GET(self) -> None:
                if not auth.check(self.headers.get("Authorization")):
                    self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                               {"WWW-Authenticate": 'Basic realm="gpufleet"'})
                    return
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    gz = outer.render_gzip is not None and accepts_gzip(self.headers.get("Accept-Encoding", ""))
                    try:
                        body = outer.render_gzip() if gz and outer.render_gzip else outer.render()
                    except Exception as exc:  # never let a rendering bug kill the server
                        log.exception("rendering /metrics failed")
                        self._send(500, f"error: {exc}\n".encode(), "text/plain; charset=utf-8")
                        return
                    self._send(200, body, CONTENT_TYPE, {"Content-Encoding": "gzip"} if gz else None)
                elif path == "/":
                    self._send(200, b"<html><body><h1>gpufleet exporter</h1>"
                               b"<a href='/metrics'>metrics</a></body></html>\n", "text/html; charset=utf-8")
                else:
                    self._send(404, b"Not found\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes | list[bytes], ctype: str,
                      headers: dict[str, str] | None = None) -> None:
                chunks = [body] if isinstance(body, bytes) else body
                size = sum(len(c) for c in chunks)
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if isinstance(self.request, ssl.SSLSocket):
                    self.end_headers()
                    for c in chunks:
                        self.wfile.write(c)
                    return
                # Plain HTTP: headers and body chunks leave in one gathered send, without joining them. Each
                # send gives the GIL away and waits to get it back (a switch interval while a collection
                # cycle runs), so fewer sends make a faster scrape.
                pending: list[bytes] = getattr(self, "_headers_buffer", [])
                pending.append(b"\r\n")
                buffers = [memoryview(b"".join(pending))] + [memoryview(c) for c in chunks if c]
                pending.clear()
                big = size > BLOCKING_WRITE_BYTES
                if big:
                    # a socket with a Python timeout sends in pieces of the socket buffer; blocking, the
                    # kernel takes the whole body in one call (bounded by SO_SNDTIMEO, set in setup)
                    self.request.settimeout(None)
                try:
                    while buffers:
                        sent = self.request.sendmsg(buffers)
                        while sent and buffers:
                            if sent >= len(buffers[0]):
                                sent -= len(buffers.pop(0))
                            else:
                                buffers[0] = buffers[0][sent:]
                                sent = 0
                finally:
                    if big:
                        self.request.settimeout(self.timeout)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # failed TLS handshakes, resets, timeouts: a scanner or a dropped scrape, not a traceback
                log.debug("request from %s failed", client_address, exc_info=True)

        try:
            self.httpd = Server((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        if self.web.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(str(self.web.cert_file), str(self.web.key_file))
            except (ssl.SSLError, OSError) as exc:
                self.httpd.server_close()
                raise ConfigError(f"cannot load TLS certificate/key: {exc}") from None
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.web.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="gpufleet-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()


def parse_listen(listen: str) -> tuple[str, int]:
    """"HOST:PORT" (or ":PORT", "[::1]:PORT") -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address must be HOST:PORT, got {listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
