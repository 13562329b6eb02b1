"""Run the API with uvicorn: TLS 1.3 by default (1.2 by setting, nothing older), in a thread so the
service can start and stop it with everything else."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from gpufleet.exporter.errors import ConfigError

log = logging.getLogger("gpufleet.api")


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"listen address must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class ApiServer:
    def __init__(self, app: FastAPI, listen: str, tls_cert: Path | None = None, tls_key: Path | None = None,
                 tls_min_version: str = "1.3") -> None:
        host, port = parse_listen(listen)
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("TLS needs both a certificate (api.tls_cert) and a key (api.tls_key)")
        for p in (tls_cert, tls_key):
            if p is not None and not Path(p).is_file():
                raise ConfigError(f"TLS file {p} does not exist")
        self.tls = tls_cert is not None
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                ssl_certfile=str(tls_cert) if tls_cert else None,
                                ssl_keyfile=str(tls_key) if tls_key else None, lifespan="off")
        config.load()
        if config.ssl is not None:
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3 if tls_min_version == "1.3" else ssl.TLSVersion.TLSv1_2
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gpufleet-api", daemon=True)

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for srv in servers:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.server.config.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise ConfigError(f"the API could not start on {self.server.config.host}:{self.server.config.port} "
                                  "(address in use?)")
            if time.monotonic() > deadline:
                raise ConfigError("the API did not start in time")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
