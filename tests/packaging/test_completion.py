"""Shell completion: ``gpufleet --install-completion`` installs a script that completes commands for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _gpufleet() -> str:
    exe = Path(sys.executable).with_name("gpufleet")
    if not exe.exists():
        found = shutil.which("gpufleet")
        if found is None:
            pytest.fail("the gpufleet console script is not installed next to the interpreter")
        return found
    return str(exe)


def test_install_completion_then_bash_completes_commands(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": bash}
    env.pop("_GPUFLEET_COMPLETE", None)
    exe = _gpufleet()
    r = subprocess.run([exe, "--install-completion"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    script = tmp_path / ".bash_completions" / "gpufleet.sh"
    assert script.is_file() and str(script) in (tmp_path / ".bashrc").read_text()
    # source the installed script in bash and ask its completion function, as a user's Tab key would
    probe = (f"source {script}; PATH={Path(exe).parent}:$PATH; COMP_WORDS=(gpufleet al); COMP_CWORD=1; "
             "_gpufleet_completion gpufleet; printf '%s\\n' \"${COMPREPLY[@]}\"")
    r = subprocess.run([bash, "--norc", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    words = set(r.stdout.split())
    assert {"alerting", "allocator"} <= words, r.stdout
    probe = probe.replace("COMP_WORDS=(gpufleet al); COMP_CWORD=1", "COMP_WORDS=(gpufleet allocator qu); COMP_CWORD=2")
    r = subprocess.run([bash, "--norc", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert "queue" in r.stdout.split(), r.stdout + r.stderr
