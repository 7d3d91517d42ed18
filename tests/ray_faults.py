"""The fault tests' harness: `python -m ray_faults RUN_DIR VICTIMS AFTER` (tests/ on PYTHONPATH) runs the
harness of RUN_DIR as `python -m orchestrator.harness` does, in a fresh process, with each victim actor
(comma-separated indices) killed right after its AFTER-th batch was sent to it: that batch is in flight.
The victims killed are written to RUN_DIR/killed.json as they are killed.

A fresh process per run, as in production: LoadGen applies its built-in mlperf.conf (the round's seeds,
hence its sample order, hence the SUT's batches) only at the first FromConfig call of a process, so a
second harness run inside one process (pytest's) issues the samples in another order, composes other
batches, and the demo int8 model's per-batch activation scales give other logits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.harness import ray_cluster
from orchestrator.harness.engines.ray_pool import RayPoolEngine
from orchestrator.harness.run import main as harness_main

KILLED_FILE = "killed.json"


def kill_after(victims: set[int], after: int, record: Path) -> None:
    """Patch RayPoolEngine._submit to kill each victim right after its `after`-th batch (the warm-up is 1),
    listing the killed ones in `record`."""
    sent: dict[int, int] = {}
    killed: list[int] = []
    submit = RayPoolEngine._submit

    def submit_then_kill(self: RayPoolEngine, index: int, *arrays: Any) -> Any:
        ref = submit(self, index, *arrays)
        sent[index] = sent.get(index, 0) + 1
        if index in victims and sent[index] == after and index not in killed:
            ray_cluster.ray_module().kill(self._actors[index], no_restart=True)
            killed.append(index)
            record.write_text(json.dumps(killed))
        return ref

    record.write_text("[]")
    RayPoolEngine._submit = submit_then_kill  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    run_dir, victims, after = Path(argv[0]), {int(v) for v in argv[1].split(",")}, int(argv[2])
    kill_after(victims, after, run_dir / KILLED_FILE)
    return harness_main([str(run_dir)])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
