"""The service's one composition root: parts built with their narrow collaborators, no import cycle in
gpufleet/, long tasks (retraining) off the thread that scores and schedules."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest
from gpufleet.simulator.twin import TwinConfig, TwinSource

from gpufleet.api.context import initialise
from gpufleet.scheduler import PeriodicTask, Scheduler
from gpufleet.service import build_service
from gpufleet.settings import load_settings
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2] / "gpufleet"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the gpufleet/ modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_gpufleet() -> None:
    graph = import_graph()
    assert {"gpufleet.service", "gpufleet.tasks", "gpufleet.cluster", "gpufleet.metrics"} <= set(graph)
    assert "gpufleet.service" not in graph["gpufleet.tasks"] | graph["gpufleet.cluster"] | graph["gpufleet.metrics"]
    assert cycles(graph) == []


def test_a_retrain_that_blocks_does_not_delay_the_next_scoring() -> None:
    release = threading.Event()
    scored: list[float] = []
    retrains: list[float] = []

    def retrain(now: float) -> None:
        retrains.append(now)
        release.wait(30)

    sched = Scheduler([PeriodicTask("score", 300.0, scored.append),
                       PeriodicTask("retrain", 600.0, retrain, long=True)])

    def run(now: float) -> threading.Thread:
        th = threading.Thread(target=sched.run_due, args=(now,), daemon=True)
        th.start()
        th.join(5)
        return th
    try:
        assert not run(1000.0).is_alive(), "run_due waited for the retrain"
        assert scored == [1000.0] and retrains == [1000.0] and sched.running("retrain")
        assert not run(1300.0).is_alive() and scored == [1000.0, 1300.0]
        assert not run(1700.0).is_alive()  # the retrain is due again but still running: not started twice
        assert scored == [1000.0, 1300.0, 1700.0] and retrains == [1000.0]
    finally:
        release.set()
    assert sched.wait_long(10) and sched.task("retrain").last_ok == 1000.0
    run(2000.0)
    assert sched.wait_long(10) and retrains == [1000.0, 2000.0]


def _settings(data: Path):  # type: ignore[no-untyped-def]
    return load_settings(None, {
        "data_dir": str(data), "exporter": {"source": "twin", "interval": 1},
        "serve": {"metrics_listen": f"127.0.0.1:{free_port()}"},
        "api": {"listen": f"127.0.0.1:{free_port()}", "password_hash_time_cost": 1, "password_hash_memory_kib": 8192},
        "twin": {"nodes": 1, "gpus_per_node": 2, "seed": 3, "failures": False},
    })


def test_build_service_hands_each_part_its_collaborators(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data")
    (tmp_path / "pw").write_text("composition-test-password")
    initialise(settings.api, settings.data_dir, password_file=tmp_path / "pw")
    svc = build_service(settings)
    try:
        assert svc.audit is not None and svc.jobs.audit is svc.audit and svc.cluster.audit is svc.audit
        for part in (svc.analytics, svc.metrics, svc.cluster):
            assert not hasattr(part, "service")  # nothing reaches back into the whole service
        assert svc.analytics.fleet is svc.fleet is svc.metrics.view is svc.cluster.view
        backend = svc.api.server.config.app.state.ctx.fleet
        assert backend.view is svc.fleet and backend.jobs is svc.jobs
        with pytest.raises(AttributeError):
            backend.jobs = None  # fixed at construction: nothing is attached afterwards
        names = {t.name: t.long for t in svc.scheduler.tasks}
        assert names["retrain_failure_model"] and not names["score_failure_risk"]
        assert "audit_checkpoint" in names
        svc.loop.collect_once()
        assert len(svc.fleet.gpus()) == 2 and svc.fleet.ready
    finally:
        svc.stop()


def test_a_blocked_retrain_in_the_service_does_not_hold_back_scoring(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data")
    svc = build_service(settings, source=TwinSource(TwinConfig(nodes=1, gpus_per_node=2, seed=3, failures=False)),
                        with_api=False)
    release = threading.Event()
    try:
        retrain = svc.scheduler.task("retrain_failure_model")
        retrain.run = lambda now: release.wait(30)
        scoring = svc.scheduler.task("score_failure_risk")
        t0 = time.time()
        svc.scheduler.run_due(t0)
        svc.scheduler.run_due(t0 + settings.serve.score_interval)
        assert scoring.runs == 2 and retrain.runs == 1 and svc.scheduler.running("retrain_failure_model")
    finally:
        release.set()
        svc.stop()
