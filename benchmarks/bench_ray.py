"""The Ray runner against the local runner: the same samples, rounds interleaved, through the public API.

    .venv/bin/python benchmarks/bench_ray.py [--samples 512] [--rounds 3] [--json FILE]

Configurations, each an Offline performance run (test mode) of the embedded demo int8 model over the same
LoadGen samples (same seeds and counts):
  local     the local runner's default: 2 engine instances pinned to their own cores
  ray-1     --runner ray --ray-address local --ray-actors 1: one actor, one single-threaded engine (1 CPU)
  ray-2     the same with 2 actors (one core each, pinned as the local runner pins its instances)
Rounds are interleaved (local, ray-1, ray-2, local, ...) so that the machine's drift hits every
configuration alike. Printed: samples/s (best and median of the rounds), scaling (ray-2 / ray-1), Ray 2
actors / local, the hop cost per batch from run.json (engine_settings ray_hop_ms_per_batch: driver-side
wall time of a call minus the engine's compute inside the actor), and the CPU time of the processes this
script started, read from /proc while each run goes (utime+stime per process, the last value seen before
it exits), split into the harness process (the driver: LoadGen, the SUT, Ray's core worker in the driver),
the Ray actors (`ray::` processes), and Ray's own services (raylet, GCS, others).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.api import run_benchmark  # noqa: E402
from orchestrator.config import RunConfig  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, Any]:
    model = "?"
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return {"cpu": model, "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def _proc(pid: str) -> tuple[int, float, str] | None:
    """(parent pid, CPU seconds, command line) of a live process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, cmd


def _kind(cmd: str) -> str:
    if "orchestrator.harness" in cmd:
        return "harness"
    if cmd.startswith("ray::") or "default_worker.py" in cmd:
        return "actors"
    return "ray_services"


@dataclass
class CpuSampler:
    """CPU seconds of this process's descendants, by kind, sampled every `period_s` while a run goes."""

    period_s: float = 0.1
    seen: dict[int, tuple[str, float]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        procs = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                info = _proc(entry)
                if info is not None:
                    procs[int(entry)] = info
        me = os.getpid()
        for pid, (_, cpu, cmd) in procs.items():
            parent, hops = pid, 0
            while parent in procs and parent != me and hops < 32:
                parent, hops = procs[parent][0], hops + 1
            if parent == me and pid != me:
                # A process that exited (a zombie) shows an empty command line: keep the kind seen before.
                kind = _kind(cmd) if cmd.strip() or pid not in self.seen else self.seen[pid][0]
                self.seen[pid] = (kind, cpu)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def by_kind(self) -> dict[str, float]:
        out = {"harness": 0.0, "actors": 0.0, "ray_services": 0.0}
        for kind, cpu in self.seen.values():
            out[kind] += cpu
        return {k: round(v, 2) for k, v in out.items()}


def one_run(name: str, samples: int, out: Path) -> dict[str, Any]:
    common: dict[str, Any] = dict(mode="performance", test_query_count=samples, output_dir=out)
    if name == "local":
        config = RunConfig(runner="local", **common)
    else:
        actors = int(name.split("-")[1])
        config = RunConfig(runner="ray", ray_address="local", ray_actors=actors, threads=1, **common)
    started = time.perf_counter()
    with CpuSampler() as cpu:
        result = run_benchmark(config, progress=False, stream=False)
    wall = time.perf_counter() - started
    perf = result.performance
    assert perf is not None
    settings = result.record.engine_settings
    return {
        "config": name,
        "samples": perf.samples_issued,
        "samples_per_second": round(perf.samples_per_second, 2),
        "wall_s": round(wall, 2),
        "cpu_s": cpu.by_kind(),
        "hop_ms_per_batch": settings.get("ray_hop_ms_per_batch"),
        "batches": settings.get("ray_batches"),
        "instances": settings.get("instances") or settings.get("ray_actors"),
        "threads_per_instance": settings.get("threads_per_instance"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows and the summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    before = machine()
    print(json.dumps({"machine": before}), flush=True)
    names = ["local", "ray-1", "ray-2"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in names:
                row = {"round": r + 1, **one_run(name, args.samples, Path(tmp))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    rates = {n: [row["samples_per_second"] for row in rows if row["config"] == n] for n in names}
    summary: dict[str, Any] = {
        n: {"best": max(v), "median": round(statistics.median(v), 2), "rounds": v} for n, v in rates.items()
    }
    for stat in ("best", "median"):
        summary[f"scaling_{stat}"] = round(summary["ray-2"][stat] / summary["ray-1"][stat], 3)
        summary[f"ray2_vs_local_{stat}"] = round(summary["ray-2"][stat] / summary["local"][stat], 3)
    summary["per_round_scaling"] = [round(a / b, 3) for a, b in zip(rates["ray-2"], rates["ray-1"], strict=True)]
    summary["per_round_ray2_vs_local"] = [round(a / b, 3) for a, b in zip(rates["ray-2"], rates["local"], strict=True)]
    summary["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps({"summary": summary}, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": before, "rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
