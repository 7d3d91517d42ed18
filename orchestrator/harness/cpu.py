"""How many cores this process may really use (the thread count an inference engine should start), and
which matrix/vector instructions the CPU has (the precision an engine defaults to).

Hyper-threads share one core's vector units, so a GEMM-bound engine gains nothing from them: count
physical cores, among the CPUs this process may run on (taskset / docker --cpuset-cpus), and no more
than the CPU quota allows (docker --cpus, a cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`).
Linux first; elsewhere it falls back to os.cpu_count(). Imports nothing heavy (host code uses it too).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import PreflightError

log = logging.getLogger(__name__)

_SYS_CPU = Path("/sys/devices/system/cpu")
_CGROUP = Path("/sys/fs/cgroup")
_CPUINFO = Path("/proc/cpuinfo")
# Space- or comma-separated flags that replace /proc/cpuinfo's, to force a fallback in tests (e.g. "avx2"
# for a CPU without AVX-512 or AMX). The local runner's harness inherits it from the host.
FAKE_FLAGS_ENV = "MLPERF_BERT_CPU_FLAGS"


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The `flags` of the first CPU in a /proc/cpuinfo text (empty when there is none, e.g. on ARM)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_flags(cpuinfo_path: Path = _CPUINFO) -> set[str] | None:
    """This CPU's flags ($MLPERF_BERT_CPU_FLAGS when set), or None when /proc/cpuinfo cannot be read or has no
    x86 flags."""
    fake = os.environ.get(FAKE_FLAGS_ENV)
    if fake is not None:
        return set(fake.replace(",", " ").split())
    try:
        text = cpuinfo_path.read_text()
    except OSError:
        return None
    # No x86 `flags` line (ARM's /proc/cpuinfo has `Features`): unknown, so no x86 rule refuses or labels it.
    return parse_cpu_flags(text) if any(line.startswith("flags") for line in text.splitlines()) else None


@dataclass(frozen=True)
class Isa:
    """The instructions that decide an engine's fastest precision (bf16/int8 matrix engines first)."""

    amx_bf16: bool = False
    amx_int8: bool = False
    avx512_bf16: bool = False
    avx512_vnni: bool = False
    avx512f: bool = False
    avx2: bool = False
    known: bool = True  # False when the flags could not be read

    @classmethod
    def from_flags(cls, flags: set[str] | None) -> Isa:
        if flags is None:
            return cls(known=False)
        return cls(
            amx_bf16="amx_bf16" in flags,
            amx_int8="amx_int8" in flags,
            avx512_bf16="avx512_bf16" in flags,
            avx512_vnni="avx512_vnni" in flags or "avx_vnni" in flags,
            avx512f="avx512f" in flags,
            avx2="avx2" in flags,
        )

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic (AMX tiles or AVX-512 BF16 dot products)."""
        return self.amx_bf16 or self.avx512_bf16

    @property
    def int8(self) -> bool:
        """int8 dot products in hardware (AMX or VNNI); without them int8 still runs, only slower."""
        return self.amx_int8 or self.avx512_vnni

    def describe(self) -> str:
        """e.g. "avx512_bf16 avx512_vnni avx512f avx2" (what run.json records as the ISA)."""
        if not self.known:
            return "unknown"
        names = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
        return " ".join(n for n in names if getattr(self, n)) or "none of amx/avx512/avx2"


# How a CPU multiplies int8, which decides an int8 model's numbers, not only its speed (int8_kernels).
INT8_DOT_PRODUCTS = "int8 dot products"  # AMX or VNNI: u8 x s8 summed in int32, exact
INT8_PAIR_SUMS = "int16 pair sums"  # below VNNI (AVX2, AVX-512F): u8 x s8 pairs summed in int16, may saturate
INT8_UNKNOWN = "unknown"


def int8_kernels(isa_description: str | None) -> str:
    """The int8 arithmetic of a CPU, from its recorded ISA (Isa.describe, as run.json keeps it).

    Without VNNI or AMX, x86 int8 GEMMs (oneDNN in OpenVINO, MLAS in onnxruntime) run other kernels: u8 x s8
    pairs summed in int16 (vpmaddubsw, which can saturate) where VNNI sums in int32. The same int8 model scores
    differently there. Measured on the demo MiniLM: OpenVINO NNCF int8, full dev set, F1 80.212 on an AVX-512
    VNNI EPYC (2026-12-01) and 80.013 on an AVX2-only EPYC (2026-12-07), where fp32 scored 80.401 on both;
    onnxruntime's dynamic int8 on the first 100 questions 82.733 and 82.905. NNCF's overflow fix (7-bit
    weights) did not bring the AVX2 answers closer to fp32 (benchmarks/RESULTS.md). So an int8 accuracy check
    holds only for CPUs of the class it ran on."""
    if not isa_description or isa_description == "unknown":
        return INT8_UNKNOWN
    isa = Isa.from_flags(set(isa_description.split()))  # describe() names the flags it read
    return INT8_DOT_PRODUCTS if isa.int8 else INT8_PAIR_SUMS


def detect_isa(cpuinfo_path: Path = _CPUINFO) -> Isa:
    return Isa.from_flags(cpu_flags(cpuinfo_path))


def bf16_refusal(setting: str, isa: Isa, remedy: str) -> PreflightError:
    """The one sentence that refuses a bf16 `setting` (e.g. "precision=bf16") on a CPU without native bf16.

    Without it an engine either ignores the request (OpenVINO runs fp32 under a bf16 label) or emulates it:
    PyTorch 2.13's bf16 matmul on an AVX2-only AMD EPYC ran 0.88 GFLOP/s against fp32's 121.6 (2026-12-07,
    [512, 1024] x [1024, 1024], 2 threads, a quiet machine): 138x slower."""
    return PreflightError(
        f"{setting} needs a CPU with native bf16 (amx_bf16 or avx512_bf16), which this one lacks "
        f"(ISA: {isa.describe()}); {remedy}."
    )


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def physical_core_count(cpus: list[int] | None = None, sys_cpu: Path = _SYS_CPU) -> int:
    """Distinct (package, core) pairs among `cpus`; the number of CPUs when the topology is unreadable."""
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, len(_cores(cpus, sys_cpu)))


def _cores(cpus: list[int], sys_cpu: Path) -> list[set[int]]:
    """`cpus` grouped by physical core (hyper-thread siblings together), ordered by their first CPU; every
    CPU its own core when the topology cannot be read."""
    cores: dict[tuple[str, str], set[int]] = {}
    for cpu in cpus:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            key = ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
        except OSError:
            return [{c} for c in sorted(cpus)]
        cores.setdefault(key, set()).add(cpu)
    return sorted(cores.values(), key=min)


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


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = _CGROUP) -> int | None:
    """Memory this process can still use: MemAvailable, and no more than a cgroup v2 limit leaves
    (docker --memory); None where neither can be read."""
    found: int | None = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int((cgroup / "memory.current").read_text().strip())
            found = left if found is None else min(found, left)
    except (OSError, ValueError):
        pass
    return max(0, found) if found is not None else None


def worker_cpu_sets(workers: int, cpus: list[int] | None = None, sys_cpu: Path = _SYS_CPU) -> list[set[int]] | None:
    """Disjoint sets of CPUs, one per worker, each made of whole physical cores (hyper-thread siblings stay
    together) and as even as the cores allow; None when there are fewer cores than workers, where pinning
    would only stand in the scheduler's way."""
    ordered = _cores(usable_cpus() if cpus is None else cpus, sys_cpu)
    if workers < 1 or len(ordered) < workers:
        return None
    sets: list[set[int]] = []
    start = 0
    for w in range(workers):
        take = len(ordered) // workers + (1 if w < len(ordered) % workers else 0)
        sets.append(set().union(*ordered[start : start + take]))
        start += take
    return sets


@contextmanager
def pinned_thread(cpus: set[int] | None) -> Iterator[None]:
    """Run the calling thread on `cpus` inside the block (Linux sets affinity per thread), then restore it.

    Engine instances that each run single-threaded on the caller's thread keep their weights' working set
    and activations in one core's caches when they stop migrating (about 5% on this project's 2-core
    machine). None, or a platform without sched_setaffinity, leaves the thread as it is."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:  # e.g. CPUs outside a container's cpuset: run unpinned
        log.debug("cannot pin a worker to CPUs %s: %s", sorted(cpus), exc)
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
