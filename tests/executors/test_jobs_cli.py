"""`gpufleet jobs ...` (the console script, in a subprocess) against a real `gpufleet serve` on the twin,
whose local executor runs the jobs' commands as real processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.executors.helpers import EXAMPLE
from tests.servers import free_port, wait_until

PASSWORD = "jobs-cli-test-password"
GPUFLEET = shutil.which("gpufleet", path=str(Path(sys.executable).parent)) or "gpufleet"
ENV = {**os.environ, "GPUFLEET_API__PASSWORD_HASH_TIME_COST": "1", "GPUFLEET_API__PASSWORD_HASH_MEMORY_KIB": "8192",
       "GPUFLEET_TWIN__NODES": "1", "GPUFLEET_TWIN__GPUS_PER_NODE": "2", "GPUFLEET_TWIN__FAILURES": "false",
       "GPUFLEET_EXECUTOR__KIND": "local", "GPUFLEET_EXECUTOR__SYSTEMD": "off", "GPUFLEET_JOBS__GRACE_S": "5"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[str]]:
    """`gpufleet init` and `gpufleet serve --source twin` as a user runs them; the CLI's auth options."""
    data, pw = tmp_path / "data", tmp_path / "pw"
    pw.write_text(PASSWORD)
    init = subprocess.run([GPUFLEET, "init", "-d", str(data), "--admin-password-file", str(pw)], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    api = f"127.0.0.1:{free_port()}"
    with open(tmp_path / "serve.log", "w") as out:
        proc = subprocess.Popen([GPUFLEET, "serve", "--source", "twin", "-d", str(data), "--listen", api,
                                 "--metrics-listen", f"127.0.0.1:{free_port()}", "--interval", "1"],
                                stdout=out, stderr=subprocess.STDOUT, env=ENV)
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"http://{api}/readyz").status_code == 200
            except httpx.TransportError:
                return False
        wait_until(ready, 90, "serve ready")
        yield ["--url", f"http://{api}", "--user", "admin", "--password-file", str(pw)]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gf(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GPUFLEET, *args], capture_output=True, text=True, timeout=timeout)


def test_submit_follow_logs_list_show_cancel(served: list[str], tmp_path: Path) -> None:
    auth = served
    job_file = tmp_path / "job.yaml"
    job_file.write_text(f"""
jobs:
  - name: train
    client_id: train
    task_type: training
    command: [{sys.executable}, {EXAMPLE}, --steps, "30", --checkpoint-every, "10"]
  - name: after
    depends_on: [train]
    command: [{sys.executable}, -c, "print('after ran')"]
""")
    r = gf("jobs", "submit", "-f", str(job_file), "--json", *auth)
    assert r.returncode == 0, r.stderr
    train, after = json.loads(r.stdout)
    assert train["name"] == "train" and after["depends_on"] == [train["id"]]

    r = gf("jobs", "logs", train["id"], "--follow", "--interval", "0.2", *auth, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "checkpoint at step 30" in r.stdout and "done: 30 steps" in r.stdout
    assert r.stdout.rstrip().endswith("exited with 0")  # --follow returned once the job had ended

    r = gf("jobs", "show", train["id"], *auth)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert (shown["state"], shown["exit_code"], shown["task_type"]) == ("succeeded", 0, "training")

    sleeper = tmp_path / "sleep.json"
    sleeper.write_text(json.dumps([{"name": "sleeper", "command": [sys.executable, "-c", "import time; "
                                                                    "time.sleep(60)"]}]))
    r = gf("jobs", "submit", "-f", str(sleeper), *auth)
    assert r.returncode == 0, r.stderr
    sleeper_id = r.stdout.split()[0]
    r = gf("jobs", "cancel", sleeper_id, *auth)
    assert (r.returncode, r.stdout.split()) == (0, [sleeper_id, "cancelled"]), r.stderr
    r = gf("jobs", "cancel", sleeper_id, *auth)
    assert r.returncode == 1 and "cancelled already" in r.stderr

    def after_done() -> bool:
        rows = json.loads(gf("jobs", "list", "--json", "--state", "succeeded", *auth).stdout)
        return {j["id"] for j in rows} == {train["id"], after["id"]}
    wait_until(after_done, 30, "the dependant to succeed")
    r = gf("jobs", "list", *auth)
    assert r.returncode == 0 and train["id"] in r.stdout and "cancelled" in r.stdout
    r = gf("jobs", "show", "j999-nope", *auth)
    assert r.returncode == 1 and r.stderr.strip() == "gpufleet: error: no job 'j999-nope'"


@pytest.mark.parametrize(("text", "why"), [
    ("jobs: [\n  - name: a\n   gpus: 1\n", "job.yaml:2: not valid YAML or JSON"),
    ("- name: a\n  command: [echo]\n  comand: [echo]\n", "job a: comand: unknown field"),
    ("- {name: a, depends_on: [b], command: [echo]}\n- {name: b, depends_on: [a], command: [echo]}\n",
     "dependency cycle: a -> b -> a"),
])
def test_a_bad_job_file_is_one_clear_error(tmp_path: Path, text: str, why: str) -> None:
    f = tmp_path / "job.yaml"
    f.write_text(text)
    r = gf("jobs", "submit", "-f", str(f), "--url", "http://127.0.0.1:9", "--token-file", str(f))
    assert r.returncode == 3
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("gpufleet: error: ") and why in line


def test_the_service_refuses_a_batch_with_every_reason(served: list[str], tmp_path: Path) -> None:
    auth = served
    f = tmp_path / "job.yaml"
    f.write_text("- {name: huge, gpus: 64, command: [echo]}\n- {name: odd, gpu_types: [Z9000], command: [echo]}\n")
    r = gf("jobs", "submit", "-f", str(f), *auth)
    assert r.returncode == 3, r.stderr
    assert "asks for 64 GPUs" in r.stderr and "unknown GPU type(s) Z9000" in r.stderr
    assert json.loads(gf("jobs", "list", "--json", *auth).stdout) == []  # all or nothing


def test_an_unreachable_service_is_one_line(tmp_path: Path) -> None:
    tok = tmp_path / "tok"
    tok.write_text("x")
    r = gf("jobs", "list", "--url", f"http://127.0.0.1:{free_port()}", "--token-file", str(tok))
    assert r.returncode == 5
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("gpufleet: error: cannot reach gpufleet serve at http://127.0.0.1:")
    r = gf("jobs", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 2 and "no credentials" in r.stderr
