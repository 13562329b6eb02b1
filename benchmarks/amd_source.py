#!/usr/bin/env python
"""What gpufleet itself costs per AMD GPU and on a mixed node, over zero-cost fake libraries.

Figures:
- CPU time per device per collection cycle of AmdSource (fake amdsmi, MI300X), beside NvmlSource
  (fake pynvml, H100) in the same run: the baseline the AMD path is compared with
- the same for an 8 + 8 GPU mixed node through MultiSource, against the sum of the two sources alone
  (the cost of combining snapshots)
- the amdsmi / NVML calls made per device per cycle once unsupported fields have been learnt

The fakes answer instantly, so these are upper bounds of gpufleet's own Python cost, not of the driver's.

Usage: python benchmarks/amd_source.py [--gpus 8] [--cycles 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpufleet.exporter.sources.amd import AmdSource
from gpufleet.exporter.sources.base import Source
from gpufleet.exporter.sources.multi import MultiSource
from gpufleet.exporter.sources.nvml import NvmlSource

from tests.exporter.fake_amdsmi import FakeAmdGpu, FakeAmdSmi
from tests.exporter.fake_pynvml import FakeGpu, FakeNvml


def per_cycle_cpu(src: Source, cycles: int) -> float:
    """CPU seconds per collection cycle (after two warm-up cycles that learn unsupported fields)."""
    for t in range(2):
        src.collect(float(t))
    t0 = time.process_time()
    for t in range(cycles):
        src.collect(float(t + 2))
    return (time.process_time() - t0) / cycles


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=200)
    a = ap.parse_args()
    n, c = a.gpus, a.cycles
    amd = FakeAmdSmi([FakeAmdGpu(f"amd-{i}", processes=[(1000 + i, 2**30)]) for i in range(n)])
    nv = FakeNvml([FakeGpu(f"GPU-{i}", processes=[(2000 + i, 2**30)]) for i in range(n)])
    a_src = AmdSource(amdsmi=amd.module, node="bench")
    n_src = NvmlSource(nvml=nv.module, node="bench", xid_wait_ms=50)
    with a_src, n_src:
        calls0 = a_src.query.calls if a_src.query else 0
        t_amd = per_cycle_cpu(a_src, c)
        amd_calls = ((a_src.query.calls if a_src.query else 0) - calls0) / (c + 2) / n
        ncalls0 = n_src.query.calls if n_src.query else 0
        t_nv = per_cycle_cpu(n_src, c)
        nv_calls = ((n_src.query.calls if n_src.query else 0) - ncalls0) / (c + 2) / n
        t_multi = per_cycle_cpu(MultiSource([n_src, a_src], node="bench"), c)
    print(f"AmdSource  ({n} x MI300X, fake amdsmi): {1e3 * t_amd / n:.3f} ms CPU per GPU per cycle, "
          f"{amd_calls:.1f} amdsmi calls per GPU per cycle")
    print(f"NvmlSource ({n} x H100, fake pynvml):   {1e3 * t_nv / n:.3f} ms CPU per GPU per cycle, "
          f"{nv_calls:.1f} NVML calls per GPU per cycle (baseline)")
    print(f"ratio AMD / NVIDIA per GPU: {t_amd / t_nv:.2f}")
    print(f"MultiSource ({n} + {n} GPUs): {1e3 * t_multi:.2f} ms per cycle vs {1e3 * (t_amd + t_nv):.2f} ms "
          f"for the two alone (combining overhead {100 * (t_multi / (t_amd + t_nv) - 1):+.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
