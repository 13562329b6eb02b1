"""CLI: `gpufleet allocator replay | submit | queue | idle`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from gpufleet.exporter.errors import ConfigError, InputError

allocator_app = typer.Typer(help="Place jobs: trace replay, the job queue, idle GPUs.", no_args_is_help=True)



def _settings(config: Path | None) -> Any:
    from gpufleet.settings import load_settings

    return load_settings(config)


def _progress(total: int, label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)


@allocator_app.command("replay")
def replay(
    nodes: Path | None = typer.Option(None, "--nodes", help="openb node list CSV (default: "
                                      "<data>/csv/openb_node_list_gpu_node.csv)."),
    pods: Path | None = typer.Option(None, "--pods", help="openb pod list CSV (default: "
                                     "<data>/csv/openb_pod_list_default.csv)."),
    data: Path | None = typer.Option(None, "--data", help="The alibaba-openb folder (default: where "
                                     "`gpufleet data fetch openb` puts it)."),
    policy: str = typer.Option("default", "--policy", help="Placement policy (default, fgd, best_fit, random, "
                               "first_fit, load_aware, topology, risk_aware)."),
    seeds: str = typer.Option("42-51", "--seeds", help="Seeds: a range 42-51 or a list 1,2,3."),
    mode: str = typer.Option("fgd", "--mode", help="fgd (the FGD paper's protocol) or timed (creation/deletion)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes for the seeds (fgd mode)."),
    compress: float = typer.Option(1.0, "--compress", min=1.0, help="timed mode: divide gaps between arrivals."),
    summary: Path | None = typer.Option(None, "--summary", help="Published figures CSV (default: "
                                        "fgd_alloc_ratio_summary.csv beside the pod list's folder)."),
) -> None:
    """Replay an openb pod list against a node list and print the allocation figures.

    fgd mode: per seed shuffle the pods, append random copies up to 130 % of GPU capacity, place one at a
    time with no departures; prints the allocated GPU share when 100 % has been requested (mean and std over
    seeds) beside the FGD paper's published figures. timed mode: creation/deletion times through the queue.

    Example: gpufleet data fetch openb && gpufleet allocator replay --policy default --seeds 42-51
    """
    from gpufleet.allocator.replay import parse_seeds, published_figures, replay_fgd

    if nodes is None or pods is None:
        from gpufleet.datasets import default_path, require

        folder = require("openb", data if data is not None else default_path("openb", _settings(None).data_dir))
        nodes = nodes or folder / "csv" / "openb_node_list_gpu_node.csv"
        pods = pods or folder / "csv" / "openb_pod_list_default.csv"
    seed_list = parse_seeds(seeds)
    if mode == "timed":
        from gpufleet.allocator.replay_timed import replay_timed

        rep = replay_timed(nodes, pods, policy, seed=seed_list[0], compress=compress)
        out = rep.to_json()
        if as_json:
            typer.echo(json.dumps(out))
            return
        out.pop("series")
        for k, v in out.items():
            typer.echo(f"{k:22s} {v}")
        return
    if mode != "fgd":
        raise ConfigError(f"--mode must be fgd or timed, got {mode!r}")
    with _progress(len(seed_list), f"{policy} on {pods.stem}") as bar:
        task = bar.add_task("seeds", total=len(seed_list))
        report = replay_fgd(nodes, pods, policy, seed_list, progress=lambda n: bar.advance(task, n),
                            workers=workers)
    summary = summary or pods.resolve().parent.parent / "fgd_alloc_ratio_summary.csv"
    pub = published_figures(summary, pods)
    if as_json:
        typer.echo(json.dumps(report.to_json(pub)))
        return
    m, s = report.at(100)
    typer.echo(f"{pods.stem}: {policy} allocates {m:.2f} % ± {s:.2f} of GPUs at 100 % requested "
               f"({len(seed_list)} seeds)")
    for name, (pm, ps) in pub.items():
        typer.echo(f"  published {name:18s} {pm:6.2f} ± {ps:.2f}")


def _queue(nodes: Path, config: Path | None, state_file: Path | None) -> Any:
    from gpufleet.allocator.policies import make_policy
    from gpufleet.allocator.queue import JobQueue
    from gpufleet.allocator.state import ClusterState

    st = _settings(config)
    path = state_file or st.allocator.queue_path or (st.data_dir / "allocator" / "queue.json")
    state = ClusterState.from_openb(str(nodes))
    kwargs: dict[str, Any] = {}
    if st.allocator.policy in ("default", "risk_aware"):
        kwargs["risk_weight"] = st.allocator.risk_weight
    policy = make_policy(st.allocator.policy, **kwargs)
    return JobQueue.load(path, state, policy, aging_per_hour=st.allocator.aging_per_hour)


def _check_job(d: Any, index: int, path: Path) -> dict[str, Any]:
    """One job mapping from a jobs file, its fields checked against :class:`JobSpec`'s types.

    A wrong type or an out-of-range priority is an :class:`InputError` naming the job and the field,
    never a traceback from deep in the queue.
    """
    import typing

    from pydantic import ValidationError

    from gpufleet.allocator.jobs import JobSpec, PriorityClass

    if not isinstance(d, dict):
        raise InputError(f"job {index + 1}: expected a mapping of fields, got {type(d).__name__}", path=str(path))
    who = f"job {d.get('name', index + 1)}"
    hints = typing.get_type_hints(JobSpec)
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key == "priority":
            classes = ", ".join(f"{c.value} ({c.name.lower()})" for c in PriorityClass)
            if isinstance(value, bool) or not isinstance(value, int | str) or (
                    isinstance(value, int) and value not in {c.value for c in PriorityClass}) or (
                    isinstance(value, str) and value.upper() not in PriorityClass.__members__):
                raise InputError(f"{who}: priority must be one of {classes}, got {value!r}", path=str(path))
            out[key] = value
        elif key in hints and key not in ("command", "env"):  # from_dict checks command and env itself
            try:
                out[key] = _adapter(hints[key]).validate_python(value)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"]
                raise InputError(f"{who}: {key}: {reason}, got {value!r}", path=str(path)) from None
        else:
            out[key] = value
    return out


_ADAPTERS: dict[Any, Any] = {}


def _adapter(hint: Any) -> Any:
    from pydantic import TypeAdapter

    if hint not in _ADAPTERS:
        _ADAPTERS[hint] = TypeAdapter(hint)
    return _ADAPTERS[hint]


def _read_jobs(path: Path) -> list[Any]:
    import yaml

    from gpufleet.allocator.jobs import JobSpec

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML/JSON: {problem}", path=str(path),
                         line=mark.line + 1 if mark is not None else None) from None
    if isinstance(data, dict):
        data = data.get("jobs", [data])
    if not isinstance(data, list):
        raise InputError("expected a list of jobs", path=str(path))
    return [JobSpec.from_dict(_check_job(d, i, path)) for i, d in enumerate(data)]


@allocator_app.command("submit")
def submit(
    jobs: Path = typer.Argument(..., help="YAML or JSON file: a list of jobs (name, gpus, gpu_milli, priority, "
                                "depends_on, preemptible, checkpointing, duration_s, user, team, ...)."),
    nodes: Path = typer.Option(..., "--nodes", help="The cluster: an openb-format node list CSV."),
    state_file: Path | None = typer.Option(None, "--state", help="Queue state file (default from settings)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """Submit a batch of jobs; bad jobs are rejected with the reason, a dependency cycle is named.

    Example: gpufleet allocator submit jobs.yaml --nodes cluster.csv
    """
    q = _queue(nodes, config, state_file)
    ok, rejected = q.submit(_read_jobs(jobs), now=time.time())
    started = q.schedule(time.time())
    for name in ok:
        typer.echo(f"accepted {name}" + (" (running)" if name in started else " (queued)"))
    for r in rejected:
        typer.secho(f"rejected {r.job}: {r.reason}", fg=typer.colors.RED)
    if rejected:
        raise typer.Exit(3)


@allocator_app.command("queue")
def queue(
    nodes: Path = typer.Option(..., "--nodes", help="The cluster: an openb-format node list CSV."),
    state_file: Path | None = typer.Option(None, "--state", help="Queue state file (default from settings)."),
    schedule: bool = typer.Option(False, "--schedule", help="Run one scheduling pass first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """Show the queue: every job with its status, priority, GPUs and wait, and the counters.

    Example: gpufleet allocator queue --nodes cluster.csv --schedule
    """
    q = _queue(nodes, config, state_file)
    now = time.time()
    if schedule:
        q.schedule(now)
    rows = [{"name": r.spec.name, "status": r.status, "priority": r.spec.priority.name.lower(),
             "effective_priority": round(q.effective_priority(r, now), 2), "gpus": r.spec.gpu_count,
             "team": r.spec.team, "user": r.spec.user, "restarts": r.restarts,
             "lost_gpu_hours": round(r.lost_gpu_hours, 3),
             "nodes": sorted({q.state.names[p.node] for p in r.placements})}
            for r in sorted(q.jobs.values(), key=lambda r: r.seq)]
    summary = q.summary()
    if as_json:
        typer.echo(json.dumps({"summary": summary, "jobs": rows}))
        return
    _print_queue(rows, summary)


def _print_queue(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """The queue as a table (one row per job) and the counters under it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Job queue", title_justify="left")
    for col, justify in (("Job", "left"), ("Status", "left"), ("Priority", "left"), ("Effective", "right"),
                         ("GPUs", "right"), ("Team", "left"), ("User", "left"), ("Restarts", "right"),
                         ("Lost GPU-h", "right"), ("Nodes", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r["name"], r["status"], r["priority"], f"{r['effective_priority']:g}", f"{r['gpus']:g}",
                      r["team"] or "", r["user"] or "", str(r["restarts"]), f"{r['lost_gpu_hours']:g}",
                      ", ".join(r["nodes"]) or "-")
    console = Console(width=max(Console().width, 120))
    if rows:
        console.print(table)
    else:
        console.print("The queue is empty.")
    by = ", ".join(f"{n} {status}" for status, n in sorted(summary.get("jobs", {}).items())) or "no jobs"
    others = "  ".join(f"{k}: {v}" for k, v in summary.items() if k != "jobs")
    console.print(f"Jobs: {by}  {others}", highlight=False, soft_wrap=True)


@allocator_app.command("idle")
def idle(
    prometheus: str = typer.Option(..., "--prometheus", help="Prometheus-compatible URL holding GPU utilisation."),
    nodes: Path = typer.Option(..., "--nodes", help="The cluster: an openb-format node list CSV."),
    state_file: Path | None = typer.Option(None, "--state", help="Queue state file (default from settings)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Utilisation under which a GPU is idle."),
    window: float | None = typer.Option(None, "--window", help="Seconds under the threshold (default 1800)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML settings file."),
) -> None:
    """List GPUs that jobs hold but have not used (utilisation under 5 % for 30 min by default).

    Example: gpufleet allocator idle --prometheus http://127.0.0.1:9090 --nodes cluster.csv
    """
    from gpufleet.allocator.idle import idle_from_prometheus

    st = _settings(config)
    q = _queue(nodes, config, state_file)
    allocated = {q.state.uuids[p.node][g]: r.spec.name for r in q.jobs.values() if r.status == "running"
                 for p in r.placements for g in p.gpus}
    found = idle_from_prometheus(prometheus, allocated, threshold=threshold or st.allocator.idle_threshold,
                                 window_s=window or st.allocator.idle_window_s)
    for g in found:
        typer.echo(f"{g.uuid}  job {g.job}  idle for at least {g.idle_s / 60:.0f} min")
    typer.echo(f"{len(found)} of {len(allocated)} allocated GPUs idle")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(allocator_app, name="allocator")
