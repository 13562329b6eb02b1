"""The analytics `serve` schedules, on a history the demo pipeline wrote: failure-risk scoring with the
registry's champion, demand forecast and capacity plan from the stored demand, autoscaling advice,
retraining; their outputs reach the API's fleet view and /metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gpufleet.simulator.twin import TwinConfig, TwinSource

from gpufleet.demo import DemoConfig, run
from gpufleet.service import build_service
from gpufleet.settings import load_settings
from tests.servers import free_port


@pytest.mark.slow
def test_scheduled_analytics_on_generated_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = DemoConfig(out=data, nodes=2, gpus_per_node=4, days=6, seed=11, failure_rate=3000.0, train_after_days=4.5)
    result = run(cfg)
    assert result.model is not None, result.train_note
    end = cfg.start + cfg.days * 86400
    settings = load_settings(None, {
        "data_dir": str(data), "exporter": {"source": "twin", "interval": 1, "listen": f"127.0.0.1:{free_port()}"},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "twin": {"nodes": 2, "gpus_per_node": 4, "seed": 11},
    })
    source = TwinSource(TwinConfig(nodes=2, gpus_per_node=4, seed=11, failures=False), start=end)
    service = build_service(settings, source=source, with_api=False)
    try:
        service.loop.collect_once()
        a = service.analytics
        a.score(0.0)
        risk = service.fleet.risk
        assert len(risk) == 8 and all({"1h", "24h"} <= set(h) for h in risk.values())
        assert all(0.0 <= p <= 1.0 for h in risk.values() for p in h.values())
        a.forecast(0.0)
        fc = service.fleet.forecast["series"][0]
        assert fc["series"] == "total" and len(fc["quantiles"]["0.5"]) == 24
        assert fc["quantiles"]["0.05"][0] <= fc["quantiles"]["0.5"][0] <= fc["quantiles"]["0.95"][0]
        plan = service.fleet.plan["recommendation"]["by_type"]
        assert plan and all(v["reserved"] >= 0 for v in plan.values())
        a.autoscale(0.0)
        a.retrain(0.0)
        assert sum(service.metrics.training_runs.values()) == 1
        service.metrics_server.start()
        body = httpx.get(service.metrics_server.url).text
        for name in ("gpufleet_gpu_failure_risk{", "gpufleet_demand_forecast_gpus{", "gpufleet_autoscale_recommended_nodes{",
                     "gpufleet_capacity_reserved_recommended_gpus{", "gpufleet_model_training_runs_total{"):
            assert name in body, name
    finally:
        service.stop()
