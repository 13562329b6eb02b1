from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from gpufleet.allocator.cost import Prices, attribute, monthly, prices_from_book
from gpufleet.allocator.idle import IdleDetector, idle_from_prometheus
from gpufleet.allocator.queue import Usage
from gpufleet.exporter.errors import BackendUnavailable, InputError
from gpufleet.exporter.schema import Sample, Snapshot

from tests.servers import VictoriaMetrics


def ts(y: int, m: int, d: int, h: int = 0) -> float:
    return datetime(y, m, d, h, tzinfo=UTC).timestamp()


USAGE = [
    Usage("train", "ana", "vision", "A100", 8, ts(2026, 1, 31, 20), ts(2026, 2, 1, 4)),  # 64 GPU-h over a month edge
    Usage("nb", "bo", "nlp", "T4", 0.5, ts(2026, 2, 3), ts(2026, 2, 3, 10)),  # a half GPU for 10 h
]


def test_attribution_by_team_user_job() -> None:
    prices = Prices({"A100": 4.0, "T4": 0.5})
    teams = attribute(USAGE, prices, "team")
    assert [(r.key, r.gpu_hours, r.cost) for r in teams] == [("vision", 64.0, 256.0), ("nlp", 5.0, 2.5)]
    assert attribute(USAGE, prices, "job")[0].key == "train"
    with pytest.raises(InputError, match="group"):
        attribute(USAGE, prices, "planet")


def test_monthly_split_at_month_boundary() -> None:
    rows = monthly(USAGE, Prices({"A100": 4.0, "T4": 0.5}))
    got = {(r.month, r.team): round(r.gpu_hours, 6) for r in rows}
    assert got == {("2026-01", "vision"): 32.0, ("2026-02", "vision"): 32.0, ("2026-02", "nlp"): 5.0}


def test_missing_price_is_named_unless_default() -> None:
    with pytest.raises(InputError, match="'T4'"):
        attribute(USAGE, Prices({"A100": 4.0}))
    assert attribute(USAGE, Prices({"A100": 4.0}, default_price=1.0), "team")[1].cost == 5.0


def test_price_book_is_used() -> None:
    book = prices_from_book()
    assert book.of("A100") > book.of("T4") > 0
    assert prices_from_book(basis="spot").of("A100") < book.of("A100")


def test_idle_detector_window_and_samples() -> None:
    det = IdleDetector(threshold=0.05, window_s=1800)
    for t in range(0, 3600, 60):
        det.observe_snapshot(Snapshot(float(t), "n0", samples=[
            Sample("busy", "util_gpu", 0.8, float(t)), Sample("idle", "util_gpu", 0.01, float(t)),
            Sample("late", "util_gpu", 0.9 if t < 3000 else 0.0, float(t))]))
    alloc = {"busy": "j1", "idle": "j2", "late": "j3"}
    found = det.idle(alloc, now=3540)
    assert [g.uuid for g in found] == ["idle"] and found[0].job == "j2"
    samples = {s.uuid: s.value for s in det.samples(alloc, now=3540)}
    assert samples == {"busy": 0.0, "idle": 1.0, "late": 0.0}
    assert det.samples(["free"], now=3540)[0].field == "gpu_allocated_idle"


@pytest.mark.server
def test_idle_from_victoria_metrics(victoria: VictoriaMetrics) -> None:
    victoria.start()
    now = time.time()
    lines = []
    for k in range(0, 40):
        t = int((now - 2400 + k * 60) * 1000)
        lines.append(f'gpufleet_gpu_utilization_ratio{{uuid="GPU-a"}} 0.01 {t}')
        lines.append(f'gpufleet_gpu_utilization_ratio{{uuid="GPU-b"}} {0.5 if k == 35 else 0.0} {t}')
        lines.append(f'gpufleet_gpu_utilization_ratio{{uuid="GPU-c"}} 0.0 {t}')
    httpx.post(f"{victoria.url}/api/v1/import/prometheus", content="\n".join(lines), timeout=10).raise_for_status()
    victoria.flush()
    alloc = {"GPU-a": "job-a", "GPU-b": "job-b"}  # GPU-c is idle but not allocated
    found = []
    for _ in range(50):
        found = idle_from_prometheus(victoria.url, alloc, at=now)
        if found:
            break
        time.sleep(0.2)
    assert [(g.uuid, g.job) for g in found] == [("GPU-a", "job-a")]
    with pytest.raises(BackendUnavailable):
        idle_from_prometheus("http://127.0.0.1:9", alloc, timeout=1)
