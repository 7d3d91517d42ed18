"""How many cores this process may really use: the thread count an inference engine should start.

Hyper-threads share one core's vector units, so a GEMM-bound engine gains nothing from them: count
physical cores, among the CPUs this process may run on (taskset / docker --cpuset-cpus), and no more
than the CPU quota allows (docker --cpus, a cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`).
Linux first; elsewhere it falls back to os.cpu_count(). Imports nothing heavy (host code uses it too).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

_SYS_CPU = Path("/sys/devices/system/cpu")
_CGROUP = Path("/sys/fs/cgroup")


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def physical_core_count(cpus: list[int] | None = None, sys_cpu: Path = _SYS_CPU) -> int:
    """Distinct (package, core) pairs among `cpus`; the number of CPUs when the topology is unreadable."""
    cpus = usable_cpus() if cpus is None else cpus
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return max(1, len(cpus))
    return max(1, len(cores))


def cpu_quota(cgroup: Path = _CGROUP) -> float | None:
    """CPUs' worth of time the cgroup may use (e.g. 1.5), or None when unlimited or unknown."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000" or "150000 100000"
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        q = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    """Physical cores this process may use, capped by the CPU quota (rounded up: a 1.5-CPU quota runs 2)."""
    cores = physical_core_count()
    quota = cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return cores
