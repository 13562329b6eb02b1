"""The gpufleet recovery example as a script: runs :mod:`gpufleet.train_example` (see its docstring).

    GPUFLEET_CHECKPOINT_DIR=/tmp/ck python examples/jobs/train_checkpointing.py --steps 200 --checkpoint-every 20
"""

from gpufleet.train_example import main

if __name__ == "__main__":
    raise SystemExit(main())
