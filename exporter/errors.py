"""The project's exception hierarchy.

Library code raises these; only the CLI maps them to exit codes and only the API maps them to HTTP
responses. ``models/`` imports nothing from the project and raises ``ValueError`` / its own errors.
"""

from __future__ import annotations


class GpufleetError(Exception):
    """Base of every error gpufleet raises on purpose."""


class ConfigError(GpufleetError):
    """A setting, config file or command-line value is wrong."""


class InputError(GpufleetError):
    """A data file (trace, inventory, price book, rule file) is malformed.

    ``path``, ``line`` and ``column`` say where, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: str | int | None = None) -> None:
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if column is not None:
                where += f" (column {column})"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.column = column
        self.reason = message


class SourceUnavailable(GpufleetError):
    """A device source cannot start (no driver, library missing, no devices)."""


class BackendUnavailable(GpufleetError):
    """An external server (Prometheus, InfluxDB, VictoriaMetrics, SMTP, Grafana, Slurm...) cannot be reached."""


class NotFound(GpufleetError):
    """A named object (GPU, job, model version, user...) does not exist."""


class Conflict(GpufleetError):
    """The request conflicts with the current state (duplicate, cycle, version conflict...)."""
