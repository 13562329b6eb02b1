"""Every query of every dashboard panel and variable, run against a real Prometheus that scrapes
`gpufleet serve` on the digital twin. Each query must parse; each query whose metrics the running
service exposes must return data (a query that returns nothing over metrics that exist is a wrong
query: wrong labels, wrong names). Queries over metrics this fleet does not have (AMD-only, vGPU, MIG,
fans on datacenter boards, analytics that need days of history) must still parse; the test prints
them. A failure names the dashboard, panel and query."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from gpufleet.dashboards.build import build_all
from gpufleet.dashboards.validate import metric_names, queries
from gpufleet.exporter.catalogue import catalogue

from gpufleet.service import build_service
from gpufleet.settings import load_settings
from tests.servers import Prometheus, free_port

# Metrics the short test run is not expected to produce, with the reason (documentation, and a guard:
# the test fails if one of these is produced but its query returns nothing, like any other).
NOT_PRODUCED_HERE = {
    "gpufleet_gpu_failure_risk": "needs a trained champion model (analytics/registry); tests/analytics covers it",
    "gpufleet_demand_forecast_gpus": "needs an hour of demand history before the first forecast",
    "gpufleet_capacity_reserved_recommended_gpus": "the capacity planner runs on forecasts",
    "gpufleet_autoscale_recommended_nodes": "needs queue history",
    "gpufleet_model_training_runs_total": "no training in a short run",
    "gpufleet_model_score_drift": "no training in a short run",
    "gpufleet_cost_dollars_total": "cost needs the price book's charge of finished jobs",
    "gpufleet_influx_buffered_points": "no InfluxDB sink configured in this test",
    "gpufleet_influx_written_points_total": "no InfluxDB sink configured in this test",
    "gpufleet_influx_dropped_points_total": "no InfluxDB sink configured in this test",
    "gpufleet_influx_write_errors_total": "no InfluxDB sink configured in this test",
    "gpufleet_notifications_sent_total": "nothing notified in a short run",
    "gpufleet_notifications_failed_total": "nothing notified in a short run",
    "gpufleet_alerts_firing": "no alert fires on a healthy twin",
    "gpufleet_gpu_allocated_idle": "idle needs the 30-minute idle window",
    "ALERTS": "Prometheus creates it only when rules fire",
    "gpufleet_queue_wait_seconds": "no job waits in this run",
}


def _instantiate(expr: str) -> str:
    expr = expr.replace("$__range", "5m").replace("$__rate_interval", "1m").replace("$__interval", "15s")
    return re.sub(r"\$(\w+)", ".*", expr)


@pytest.mark.server
@pytest.mark.slow
def test_every_dashboard_query_parses_and_returns_data(tmp_path: Path) -> None:
    settings = load_settings(None, {
        "data_dir": str(tmp_path / "data"),
        "exporter": {"source": "twin", "interval": 1, "listen": f"127.0.0.1:{free_port()}", "names": "native"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "twin": {"nodes": 2, "gpus_per_node": 4, "seed": 5, "speed": 60.0},
    })
    service = build_service(settings, with_api=False)
    service.start()
    prom = None
    try:
        jobs = service.jobs
        jobs.submit([{"name": "a", "gpus": 2, "duration_s": 86400}, {"name": "b", "gpus": 0.5},
                     {"name": "c", "gpus": 4, "priority": "batch"}, {"name": "d", "gpus": 4, "priority": "batch"}], "alice", "ml")
        target = service.metrics_server.url.split("//")[1].split("/")[0]
        prom = Prometheus(tmp_path / "prom", [target], interval="1s")
        prom.wait_for("gpufleet_gpu_temperature_celsius", timeout=60)
        time.sleep(6)  # a few scrapes, so rate() / increase() have two points
        text = httpx.get(service.metrics_server.url).text
        exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                   if line and not line.startswith("#")}
        # the twin has no MIG instances: queries over MIG instances' series are parse-only here
        has_mig = re.search(r'gpu_instance_id="[^"]', text) is not None
        problems: list[str] = []
        parse_only: list[str] = []
        checked = 0
        for key, model in build_all("native").items():
            for where, expr in queries(model):
                q = _instantiate(expr)
                if q.startswith("label_values("):
                    metric = q[len("label_values("):].split(",")[0].split("{")[0]
                    r = httpx.get(f"{prom.url}/api/v1/series", params={"match[]": metric}, timeout=10).json()
                    ok, data = r["status"] == "success", bool(r.get("data"))
                else:
                    r = httpx.get(f"{prom.url}/api/v1/query", params={"query": q}, timeout=10).json()
                    ok, data = r["status"] == "success", bool(r.get("data", {}).get("result"))
                checked += 1
                if not ok:
                    problems.append(f"{key}: {where}: does not parse: {expr} ({r.get('error')})")
                    continue
                absent = metric_names(expr) - exposed
                if not has_mig and 'gpu_instance_id!=""' in expr:
                    parse_only.append(f"{key}: {where}: MIG instances (none on the twin)")
                elif absent:
                    parse_only.append(f"{key}: {where}: {sorted(absent)}")
                elif not data:
                    problems.append(f"{key}: {where}: returns no data: {expr}")
        print(f"{checked} queries checked; {len(parse_only)} over metrics this fleet does not expose (parse only):")
        print("\n".join(parse_only))
        assert checked > 150 and len(parse_only) < checked / 2
        assert not problems, "\n".join(problems)
    finally:
        if prom is not None:
            prom.stop()
        service.stop()


def test_the_exemption_list_names_only_catalogue_metrics() -> None:
    names = catalogue().names("native") | {"ALERTS"}
    assert set(NOT_PRODUCED_HERE) <= names
