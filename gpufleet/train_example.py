"""A small real torch training loop that checkpoints and resumes (the gpufleet recovery example).

It trains a tiny MLP on synthetic data for ``--steps`` steps with a fixed seed, writes a checkpoint every
``--checkpoint-every`` steps to ``$GPUFLEET_CHECKPOINT_DIR`` (model, optimiser and step; written to a temporary
file, then renamed), and, when ``GPUFLEET_RESUME=1``, continues from the last checkpoint. Each step's batch is
drawn from a generator seeded with (seed, step), so a resumed run ends with bit-identical weights to an
uninterrupted one. On SIGTERM (gpufleet's stop, with a grace period) it writes a last checkpoint and exits
143. The final weights go to ``final.pt`` and their SHA-256 is printed.

    gpufleet jobs submit -f job.yaml   # command: [python, -m, gpufleet.train_example, --steps, "200"]

(``examples/jobs/train_checkpointing.py`` in the repository runs this same module.) `gpufleet demo`'s
live part runs it through the local executor and injects a GPU fault under it.

It runs on the GPUs gpufleet placed it on (``CUDA_VISIBLE_DEVICES``) when CUDA is there, else on the CPU.
This script is a user's job, so it reads its environment directly (gpufleet's settings rule is for gpufleet).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import signal
import time
from pathlib import Path

import torch


def weights_digest(model: torch.nn.Module) -> str:
    buf = io.BytesIO()
    for name, t in sorted(model.state_dict().items()):
        buf.write(name.encode())
        buf.write(t.detach().cpu().contiguous().numpy().tobytes())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def save(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--checkpoint-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step-sleep", type=float, default=0.0, help="seconds per step (to make a demo visible)")
    args = ap.parse_args(argv)

    ckdir = Path(os.environ.get("GPUFLEET_CHECKPOINT_DIR", "checkpoints"))
    ckdir.mkdir(parents=True, exist_ok=True)
    ckpt = ckdir / "checkpoint.pt"
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = 0
    if os.environ.get("GPUFLEET_RESUME") == "1" and ckpt.exists():
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        print(f"resumed from step {step}", flush=True)
    else:
        print("starting from step 0", flush=True)

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("now", True))
    w_true = torch.linspace(-1, 1, 16, device=device)

    def checkpoint() -> None:
        save(ckpt, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step})
        print(f"checkpoint at step {step}", flush=True)

    while step < args.steps:
        if stop["now"]:
            checkpoint()
            print(f"stopped by SIGTERM at step {step}", flush=True)
            return 143
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        x = torch.randn(64, 16, generator=g).to(device)
        y = (x @ w_true).unsqueeze(1)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % args.checkpoint_every == 0:
            checkpoint()
        if args.step_sleep:
            time.sleep(args.step_sleep)
    save(ckdir / "final.pt", {"model": model.state_dict(), "step": step})
    print(f"done: {step} steps, loss {loss.item():.6f}, weights sha256 {weights_digest(model)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
