"""Real servers for tests: free loopback ports, temporary data folders, stopped by process id.

A missing binary or data folder skips a test on a developer's machine and fails it when CI=true.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail under CI=true, where every server and data file must be present."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        skip_or_fail(f"{name} is not installed (apt-get install it; .ci/run does)")
    assert path is not None
    return path


def require_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"real data {path} is not present")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout} s" + (f": {last}" if last else ""))


class ServerProcess:
    """A server started from its binary; stopped by process id (SIGTERM, then SIGKILL)."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def wait_http(self, url: str, timeout: float = 30.0, ok: Callable[[httpx.Response], bool] | None = None) -> None:
        def check() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.args[0]} exited early:\n{self.log()}")
            r = httpx.get(url, timeout=2.0)
            return ok(r) if ok else r.status_code == 200
        try:
            wait_until(check, timeout, url)
        except TimeoutError:
            self.stop()
            raise TimeoutError(f"{url} not ready; log:\n{self.log()}") from None

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()


class Prometheus:
    """A real Prometheus with a given scrape config and optional rule files."""

    def __init__(self, tmp: Path, scrape_targets: list[str], interval: str = "1s",
                 rule_files: list[Path] | None = None, alertmanager: str | None = None,
                 metrics_path: str = "/metrics", scheme: str = "http",
                 extra_scrape: str = "") -> None:
        binary = require_binary("prometheus")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = [
            "global:",
            f"  scrape_interval: {interval}",
            f"  evaluation_interval: {interval}",
        ]
        if rule_files:
            cfg.append("rule_files:")
            cfg += [f"  - {p}" for p in rule_files]
        if alertmanager:
            cfg += ["alerting:", "  alertmanagers:", "    - static_configs:", f"        - targets: ['{alertmanager}']"]
        cfg += [
            "scrape_configs:",
            "  - job_name: gpufleet",
            f"    metrics_path: {metrics_path}",
            f"    scheme: {scheme}",
            "    static_configs:",
            f"      - targets: [{', '.join(repr(t) for t in scrape_targets)}]",
        ]
        if extra_scrape:
            cfg.append(extra_scrape)
        (tmp / "prometheus.yml").write_text("\n".join(cfg) + "\n")
        self.server = ServerProcess([
            binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-admin-api",
            "--web.enable-lifecycle",
        ], tmp / "prometheus.log")
        self.server.wait_http(f"{self.url}/-/ready")

    def query(self, expr: str, time_: float | None = None) -> list[dict]:  # type: ignore[type-arg]
        params: dict[str, str] = {"query": expr}
        if time_ is not None:
            params["time"] = str(time_)
        r = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        r.raise_for_status()
        return r.json()["data"]["result"]  # type: ignore[no-any-return]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict]:  # type: ignore[type-arg]
        result: list[dict] = []  # type: ignore[type-arg]

        def check() -> bool:
            nonlocal result
            result = self.query(expr)
            return bool(result)
        wait_until(check, timeout, f"Prometheus result for {expr!r}", interval=0.25)
        return result

    def stop(self) -> None:
        self.server.stop()


class VictoriaMetrics:
    """A real VictoriaMetrics single-node server (takes InfluxDB line protocol on /api/v2/write)."""

    def __init__(self, tmp: Path, port: int | None = None, extra_args: list[str] | None = None) -> None:
        self.binary = require_binary("victoria-metrics")
        self.tmp = tmp
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args or [])  # e.g. -promscrape.config=FILE to scrape exporters
        self.server: ServerProcess | None = None
        self.start()

    def start(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess([
            self.binary, f"-storageDataPath={self.tmp / 'vmdata'}", f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y", "-search.disableCache", "-search.latencyOffset=0s",
            "-dedup.minScrapeInterval=0s", *self.extra_args,
        ], self.tmp / f"vm-{time.time_ns()}.log")
        self.server.wait_http(f"{self.url}/health")

    def flush(self) -> None:
        httpx.get(f"{self.url}/internal/force_flush", timeout=10)

    def stop(self) -> None:
        if self.server:
            self.server.stop()


class Alertmanager:
    """A real Alertmanager with a given configuration file."""

    def __init__(self, tmp: Path, config: Path) -> None:
        binary = require_binary("prometheus-alertmanager")
        self.port = free_port()
        cluster_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tmp.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess([
            binary, f"--config.file={config}", f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
        ], tmp / "alertmanager.log")
        self.server.wait_http(f"{self.url}/-/ready")

    def stop(self) -> None:
        self.server.stop()


class Postgres:
    """A real PostgreSQL server in a temporary data folder (initdb + postgres, run as the postgres user
    when the tests run as root, since PostgreSQL refuses to run as root)."""

    def __init__(self, tmp: Path) -> None:
        import glob
        import pwd

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            skip_or_fail("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
        bindir = Path(bins[-1])
        import tempfile

        self.port = free_port()
        # pytest's tmp folders are private to root; the postgres user needs its own folder in /tmp
        self.dir = Path(tempfile.mkdtemp(prefix="gpufleet-pg-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            prefix = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        tmp.mkdir(parents=True, exist_ok=True)
        init = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "gpufleet",
                               "--auth=trust", "-E", "UTF8", "--no-sync"], capture_output=True, text=True,
                              timeout=120)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        self.server = ServerProcess([*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                                     "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off"],
                                    tmp / "postgres.log")
        self.url = f"postgresql+psycopg://gpufleet@127.0.0.1:{self.port}/postgres"

        def ready() -> bool:
            if not self.server.alive():
                raise RuntimeError(f"postgres exited:\n{self.server.log()}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
            import psycopg

            with psycopg.connect(f"host=127.0.0.1 port={self.port} user=gpufleet dbname=postgres", connect_timeout=2):
                return True
        wait_until(ready, 60, "PostgreSQL")

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A real redis-server on a free loopback port, no persistence (no RDB, no AOF), stopped by process id."""

    def __init__(self, tmp: Path) -> None:
        binary = require_binary("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        tmp.mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no",
                                     "--protected-mode", "yes"], tmp / "redis.log")

        def ready() -> bool:
            if not self.server.alive():
                raise RuntimeError(f"redis-server exited:\n{self.server.log()}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        wait_until(ready, 20, "redis-server", interval=0.05)

    def stop(self) -> None:
        self.server.stop(grace=5.0)


class Slurm:
    """A single-host Slurm cluster (slurmctld + slurmd) with ``gpus`` fake GPUs, for integration tests.

    The GPUs are device nodes made with ``mknod ... c 1 3`` (Slurm drops GRES without device files);
    ``AuthType=auth/none`` / ``CredType=cred/none`` (no munged); free loopback ports; daemons stopped by pid.
    Needs root (mknod, SlurmUser=root). Clients reach it with ``SLURM_CONF=<self.conf>``.
    """

    NODE = "gpunode1"

    def __init__(self, gpus: int = 8, cpus: int = 16) -> None:
        for b in ("slurmctld", "slurmd", "sinfo", "squeue", "scontrol", "sbatch", "scancel"):
            require_binary(b)
        if os.geteuid() != 0:
            skip_or_fail("the Slurm fixture needs root (mknod for fake GPU devices, SlurmUser=root)")
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="gf-slurm-"))  # short: slurmd puts unix sockets under it
        for sub in ("dev", "state", "spool", "log"):
            (self.dir / sub).mkdir()
        try:
            for i in range(gpus):
                subprocess.run(["mknod", str(self.dir / "dev" / f"nvidia{i}"), "c", "1", "3"], check=True,
                               capture_output=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            skip_or_fail(f"cannot make fake GPU device nodes: {exc}")
        self.gpus = gpus
        d = self.dir
        self.conf = d / "slurm.conf"
        self.conf.write_text("\n".join([
            "ClusterName=gpufleettest", "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/none", "CredType=cred/none",
            f"StateSaveLocation={d}/state", f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/slurmctld.pid", f"SlurmdPidFile={d}/slurmd.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log", f"SlurmdLogFile={d}/log/slurmd.log",
            "ProctrackType=proctrack/pgid", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
            "SwitchType=switch/none", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "GresTypes=gpu", "ReturnToService=2", "SlurmdParameters=config_overrides",
            "KillWait=2", "MinJobAge=2", "MessageTimeout=5", "SchedulerType=sched/builtin",
            f"NodeName={self.NODE} NodeHostname=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=4000 "
            f"Gres=gpu:{gpus} State=UNKNOWN",
            f"PartitionName=gpu Nodes={self.NODE} Default=YES MaxTime=INFINITE State=UP", ""]))
        (d / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.NODE} Name=gpu File={d}/dev/nvidia[0-{gpus - 1}]\n")
        self.env = {"SLURM_CONF": str(self.conf)}
        self.ctld = ServerProcess(["slurmctld", "-D", "-i"], d / "log" / "slurmctld.out", env=self.env)
        self.slurmd = ServerProcess(["slurmd", "-D", "-N", self.NODE], d / "log" / "slurmd.out", env=self.env)

        def ready() -> bool:
            for p in (self.ctld, self.slurmd):
                if not p.alive():
                    raise RuntimeError(f"{p.args[0]} exited early:\n{p.log()}\n{self.logs()}")
            out = self.cli("sinfo", "-h", "-o", "%T", check=False)
            return out.strip() == "idle"
        try:
            wait_until(ready, 45, "Slurm node idle", interval=0.3)
        except Exception:
            self.stop()
            raise

    def logs(self) -> str:
        return "".join((self.dir / "log" / n).read_text(errors="replace")[-3000:]
                       for n in ("slurmctld.log", "slurmd.log") if (self.dir / "log" / n).exists())

    def cli(self, *args: str, check: bool = True, timeout: float = 10.0) -> str:
        try:
            p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, **self.env}, check=False)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return ""
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def clear_queue(self, timeout: float = 20.0) -> None:
        """Cancel every job and wait until the queue is empty (completed jobs leave after MinJobAge)."""
        ids = self.cli("squeue", "-h", "-o", "%i", check=False).split()
        if ids:
            self.cli("scancel", *ids, check=False)
        self.cli("scontrol", "update", f"NodeName={self.NODE}", "State=RESUME", check=False)
        wait_until(lambda: not self.cli("squeue", "-h", "-o", "%i", check=False).strip(), timeout, "empty queue",
                   interval=0.5)
        # after a resume slurmctld pings the node; "idle*" (not responding) until slurmd answers
        wait_until(lambda: self.cli("sinfo", "-h", "-o", "%T", check=False).strip() == "idle", timeout,
                   "node idle and responding", interval=0.3)

    def _stepds(self) -> list[int]:
        """slurmstepd processes of this cluster (they run in their own sessions): by their SLURM_CONF."""
        mine = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                if (p / "cmdline").read_bytes().startswith(b"slurmstepd") and mine in (p / "environ").read_bytes().split(b"\0"):
                    pids.append(int(p.name))
            except OSError:
                continue
        return pids

    def stop(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):
            if self.ctld.alive():
                self.clear_queue()
        self.slurmd.stop(grace=3.0)  # slurmd ignores SIGTERM while registering: SIGKILL after the grace
        self.ctld.stop(grace=5.0)
        for pid in self._stepds():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
