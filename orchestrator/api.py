"""The Python API: what the CLI does, as functions that take typed configs and return typed results.

    from orchestrator.api import RunConfig, run_benchmark
    result = run_benchmark(RunConfig(scenario="SingleStream", test_query_count=50))
    print(result.accuracy.f1, result.performance.samples_per_second)

This module only gathers the public entry points; each lives in its use-case module under
`orchestrator.workflows`.
"""

from __future__ import annotations

from orchestrator.config import RunConfig, RunOverrides
from orchestrator.workflows.benchmark import RunResult, prepare_only, run_benchmark
from orchestrator.workflows.submission_run import run_and_submit
from orchestrator.workflows.tuning import TuneRequest, TuneResult, tune

__all__ = [
    "RunConfig",
    "RunOverrides",
    "RunResult",
    "TuneRequest",
    "TuneResult",
    "prepare_only",
    "run_and_submit",
    "run_benchmark",
    "tune",
]
