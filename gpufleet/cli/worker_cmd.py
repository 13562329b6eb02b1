"""CLI: `gpufleet worker` — the Celery worker of one GPU node (executor.kind = celery)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def worker(
    node: str = typer.Option(..., "--node", help="This node's name, as the control plane knows it (the "
                             "exporter's `node` label); the worker consumes that node's queue."),
    broker: str | None = typer.Option(None, "--broker", help="Redis URL of the broker (default: "
                                      "executor.celery_broker_url), e.g. redis://control:6379/0."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Jobs run at once (default: "
                                           "executor.celery_worker_concurrency; at least the node's GPU count)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", "-d", help="Folder for the local copies of job "
                                         "logs (default: the data folder, under worker/<node>/logs)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file (docs/configuration.md)."),
) -> None:
    """Run the jobs the control plane places on this node (one worker per GPU node; Celery + Redis).

    Each job runs like the local executor runs it: its own process group, CUDA_VISIBLE_DEVICES set to the
    placed GPUs, stdout/stderr to its log (copied to Redis, where `GET /jobs/{id}/logs` reads it), the
    exit code reported. SIGTERM stops the worker: running jobs get SIGTERM and executor.worker_grace_s for
    a last checkpoint, then are requeued elsewhere by the control plane.

    Example: gpufleet worker --node gpu-node-07 --broker redis://control:6379/0
    """
    from gpufleet.exporter.errors import ConfigError
    from gpufleet.settings import load_settings

    settings = load_settings(config, {"data_dir": data_dir, "executor": {"celery_broker_url": broker}})
    ex = settings.executor
    if ex.celery_broker_url is None:
        raise ConfigError("gpufleet worker needs a broker: --broker redis://HOST:PORT/DB or "
                          "executor.celery_broker_url")
    broker_url = ex.celery_broker_url.get_secret_value()
    backend_url = (ex.celery_result_backend or ex.celery_broker_url).get_secret_value()
    visibility = ex.celery_visibility_timeout_s or settings.jobs.max_runtime_s + 3600.0
    # the worker's own settings variables (the broker password among them) stay out of the jobs' environment
    for key in [k for k in os.environ if k.startswith("GPUFLEET_")]:
        del os.environ[key]

    from gpufleet.executors.celery_app import run_worker

    code = run_worker(node=node, broker_url=broker_url, backend_url=backend_url, visibility_timeout_s=visibility,
                      log_dir=settings.data_dir / "worker" / node / "logs",
                      concurrency=concurrency or ex.celery_worker_concurrency, heartbeat_s=ex.heartbeat_s,
                      heartbeat_timeout_s=ex.heartbeat_timeout_s, grace_s=ex.worker_grace_s,
                      log_max_bytes=ex.celery_log_max_bytes, systemd=ex.systemd,
                      loglevel=settings.log_level)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
