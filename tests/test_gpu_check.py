"""benchmarks/gpu_check.sh --plan: on any machine, what travels to the GPU machine fits, and the steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from orchestrator.paths import REPO_ROOT


def test_plan_fits_and_names_the_steps() -> None:
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh"), "--plan"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("PLAN "))[5:])
    assert plan["fits"] and 0 < plan["total_mib"] <= plan["limit_mib"] == 64
    assert plan["tree_mib"] > 1 and plan["wheels_mib"] > 1
    assert {"mlcommons-loadgen", "pydantic", "pydantic-core", "jsonschema", "tenacity"} <= set(plan["wheels"])
    steps = plan["steps"]
    assert steps[0].startswith("derive the demo checkpoint")
    for wanted in ("pytorch-cpu fp32", "pytorch-cuda fp32", "pytorch-cuda fp16", "pytorch-cuda bf16"):
        assert any(s.startswith("accuracy") and wanted in s for s in steps), wanted
    assert any(s.startswith("Offline performance") and "5000 samples" in s for s in steps)
    assert any(s.startswith("SingleStream latency") for s in steps)
    assert set(plan["not_run"]) == {"tensorrt-cuda", "onnxruntime-cuda", "images"}


def test_every_run_step_uses_the_current_environment() -> None:
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    from pathlib import Path

    runs = [args for _, args in gpu_check.steps(Path("/out")) if args[0] == "run"]
    assert runs and all(args[args.index("--local-env") + 1] == "current" for args in runs)
    verdict = gpu_check._accuracy_verdict(
        [
            {"what": "accuracy, pytorch-cpu fp32 (the reference F1)", "results": {"accuracy": {"f1": 80.0}}},
            {"what": "accuracy, pytorch-cuda fp32", "results": {"accuracy": {"f1": 80.1}}},
            {"what": "accuracy, pytorch-cuda fp16", "results": {"accuracy": {"f1": 79.8}}},
            {"what": "accuracy, pytorch-cuda bf16", "results": {"accuracy": {"f1": 79.2}}},
        ]
    )
    assert not verdict["passed"] and verdict["gap_to_cpu"]["pytorch-cuda bf16"] == -0.8
