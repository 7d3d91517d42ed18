"""The device check of the GPU paths, in one run that fits 5 minutes on the lent NVIDIA machine (H200).

    benchmarks/gpu_check.sh --plan          # any machine: what travels, its size (<= 64 MiB), the steps
    benchmarks/gpu_check.sh --fetch-wheels  # here, with network: the missing small wheels into WHEEL_DIR
    benchmarks/gpu_check.sh [--out DIR]     # on the GPU machine: the steps, then DIR/gpu_check.json

The GPU machine has Python 3.12 with torch (CUDA), transformers, onnx, tokenizers and a CPU onnxruntime,
and no network; only the working tree travels (../shared does not). So the harness runs in that Python
(`run --runner local --local-env current`), the few packages it lacks travel as wheels (WHEELS, installed
with --no-deps into a private folder on PYTHONPATH), and the pytorch model is derived on the machine from
the embedded int8 ONNX (`assets derive-checkpoint`). What cannot run there is said, not attempted:
TensorRT and onnxruntime-gpu (their wheels are far larger than what may travel) and Docker (absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WHEEL_DIR = REPO / "benchmarks" / ".gpu-wheels"  # ignored by git; name it in the device tool's `carry`
LIMIT_MIB = 64  # what may travel to the device machine, tree and wheels together
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
# What the harness needs that the GPU machine's image lacks (its package list: .library/device/KINDS.md),
# at the versions this project's main environment runs. MiB: the wheel's size as downloaded (for --plan
# before --fetch-wheels).
WHEELS: dict[str, tuple[str, float]] = {
    "mlcommons-loadgen": ("6.0.17", 0.5),
    "pydantic": ("2.14.4", 0.5),
    "pydantic-core": ("2.50.5", 2.2),
    "annotated-types": ("0.8.0", 0.1),
    "typing-inspection": ("0.4.5", 0.1),
    "jsonschema": ("4.26.0", 0.1),
    "jsonschema-specifications": ("2025.9.1", 0.1),
    "referencing": ("0.37.0", 0.1),
    "rpds-py": ("2026.9.1", 0.4),
    "tenacity": ("9.2.1", 0.1),
}
QUESTIONS = 200  # features of the accuracy runs (the first ones of the dev set)
OFFLINE_SAMPLES = 5000
SINGLE_STREAM_SAMPLES = 1000
F1_TOLERANCE = 0.5  # each GPU precision's F1 within this of the CPU's on the same model
NOT_HERE = {
    "tensorrt-cuda": "not run: TensorRT's wheels (over 1 GB) cannot travel within 64 MiB",
    "onnxruntime-cuda": "not run: the onnxruntime-gpu wheel (about 255 MB) cannot travel within 64 MiB",
    "images": "not run: the GPU machine has no Docker",
}


def steps(out: Path) -> list[tuple[str, list[str]]]:
    """(what, mlperf-bert arguments) of each run, in order."""
    model = str(out / "demo-hf")
    runs = out / "runs"

    def run(*extra: str) -> list[str]:
        common = ["run", "--runner", "local", "--local-env", "current", "--model-path", model]
        return [*common, "--output-dir", str(runs), "--json", *extra]

    accuracy = ["--mode", "accuracy", "--test-query-count", str(QUESTIONS)]
    plan = [
        ("derive the demo checkpoint from the embedded int8 ONNX", ["assets", "derive-checkpoint", "--output", model])
    ]
    plan.append(
        ("accuracy, pytorch-cpu fp32 (the reference F1)", run("--backend", "pytorch", "--device", "cpu", *accuracy))
    )
    for precision in ("fp32", "fp16", "bf16"):
        plan.append(
            (
                f"accuracy, pytorch-cuda {precision}",
                run("--backend", "pytorch", "--device", "cuda", *accuracy, "--engine-option", f"precision={precision}"),
            )
        )
    for precision in ("fp32", "fp16"):
        plan.append(
            (
                f"Offline performance, pytorch-cuda {precision}, {OFFLINE_SAMPLES} samples",
                run(
                    "--backend",
                    "pytorch",
                    "--device",
                    "cuda",
                    "--scenario",
                    "Offline",
                    "--mode",
                    "performance",
                    "--test-query-count",
                    str(OFFLINE_SAMPLES),
                    "--batch-size",
                    "64",
                    "--engine-option",
                    f"precision={precision}",
                ),
            )
        )
    plan.append(
        (
            f"SingleStream latency, pytorch-cuda fp16, {SINGLE_STREAM_SAMPLES} samples",
            run(
                "--backend",
                "pytorch",
                "--device",
                "cuda",
                "--scenario",
                "SingleStream",
                "--mode",
                "performance",
                "--test-query-count",
                str(SINGLE_STREAM_SAMPLES),
                "--engine-option",
                "precision=fp16",
            ),
        )
    )
    return plan


def tree_bytes() -> int:
    """What the device tool sends: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())


def wheel_files() -> list[Path]:
    return sorted(WHEEL_DIR.glob("*.whl")) if WHEEL_DIR.is_dir() else []


def plan_report() -> dict[str, Any]:
    fetched = wheel_files()
    wheel_mib = sum(p.stat().st_size for p in fetched) / 2**20 if fetched else sum(m for _, m in WHEELS.values())
    tree_mib = tree_bytes() / 2**20
    total = tree_mib + wheel_mib
    return {
        "carry": [str(WHEEL_DIR.relative_to(REPO))],
        "wheels": {name: version for name, (version, _) in WHEELS.items()},
        "wheels_fetched": bool(fetched),
        "tree_mib": round(tree_mib, 1),
        "wheels_mib": round(wheel_mib, 1),
        "total_mib": round(total, 1),
        "limit_mib": LIMIT_MIB,
        "fits": total <= LIMIT_MIB,
        "steps": [what for what, _ in steps(Path("$OUT"))],
        "not_run": NOT_HERE,
    }


def print_plan() -> int:
    plan = plan_report()
    print(
        f"carry: {', '.join(plan['carry'])} ({'fetched' if plan['wheels_fetched'] else 'not fetched yet: --fetch-wheels'})"
    )
    for name, version in plan["wheels"].items():
        print(f"  wheel {name}=={version}")
    print(
        f"size: tree {plan['tree_mib']} MiB + wheels {plan['wheels_mib']} MiB = {plan['total_mib']} MiB "
        f"(limit {LIMIT_MIB} MiB: {'fits' if plan['fits'] else 'TOO LARGE'})"
    )
    for number, what in enumerate(plan["steps"], 1):
        print(f"step {number}: {what}")
    for what, why in NOT_HERE.items():
        print(f"{what}: {why}")
    print("PLAN " + json.dumps(plan))
    return 0 if plan["fits"] else 1


def fetch_wheels() -> int:
    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    platforms = [part for p in PLATFORMS for part in ("--platform", p)]
    for name, (version, _) in WHEELS.items():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *platforms,
            "-d",
            str(WHEEL_DIR),
            "-q",
            f"{name}=={version}",
        ]
        if subprocess.run(cmd, check=False).returncode != 0:
            print(f"gpu_check: cannot download {name}=={version}; check the network and the pin", file=sys.stderr)
            return 1
    return print_plan()


def _cli(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float]:
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "-q", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s", time.perf_counter() - started
    text = proc.stdout if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return proc.returncode, text, time.perf_counter() - started


def _figures(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout[stdout.index("{") :])
    return {
        "run_dir": data.get("run_dir"),
        "execution_provider": data.get("execution_provider"),
        "engine_settings": data.get("engine_settings"),
        "versions": data.get("versions"),
        "results": data.get("results"),
    }


def machine() -> dict[str, Any]:
    facts: dict[str, Any] = {"python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    smi = shutil.which("nvidia-smi")
    if smi:
        query = [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        facts["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
    try:
        import torch
        import transformers

        facts.update(torch=torch.__version__, cuda=torch.version.cuda, transformers=transformers.__version__)
        facts["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError as exc:
        facts["import_error"] = str(exc)
    return facts


def run_check(out: Path, budget_s: float) -> int:
    out.mkdir(parents=True, exist_ok=True)
    site = Path(os.environ.get("GPU_CHECK_SITE", "/tmp/gpu-check-site"))
    wheels = wheel_files()
    if wheels:
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
        subprocess.run([*pip, "--target", str(site), *map(str, wheels)], check=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(site), env.get("PYTHONPATH")]))
    report: dict[str, Any] = {"machine": machine(), "steps": [], "not_run": NOT_HERE, "verified": False}
    deadline = time.monotonic() + budget_s
    for what, args in steps(out):
        left = deadline - time.monotonic()
        if left < 10:
            report["steps"].append({"what": what, "status": "skipped: the time budget is spent"})
            continue
        code, text, seconds = _cli(args, env, left)
        entry: dict[str, Any] = {"what": what, "args": args, "exit_code": code, "seconds": round(seconds, 1)}
        if code == 0 and args[0] == "run":
            entry.update(_figures(text))
        elif code != 0:
            entry["error"] = text
        report["steps"].append(entry)
        print(f"gpu_check: {what}: {'ok' if code == 0 else 'FAILED'} in {seconds:.0f} s", flush=True)
    report["accuracy"] = _accuracy_verdict(report["steps"])
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["accuracy"], indent=2))
    return 0 if all(s.get("exit_code") == 0 for s in report["steps"]) and report["accuracy"].get("passed") else 1


def _accuracy_verdict(done: list[dict[str, Any]]) -> dict[str, Any]:
    """Each GPU precision's F1 next to the CPU's on the same model; passed when all are within F1_TOLERANCE."""
    f1s: dict[str, float] = {}
    for step in done:
        accuracy = (step.get("results") or {}).get("accuracy") or {}
        if step["what"].startswith("accuracy") and "f1" in accuracy:
            f1s[step["what"].removeprefix("accuracy, ")] = float(accuracy["f1"])
    reference = f1s.get("pytorch-cpu fp32 (the reference F1)")
    if reference is None:
        return {"f1": f1s, "passed": False, "why": "no CPU reference F1"}
    gaps = {name: round(f1 - reference, 3) for name, f1 in f1s.items() if name.startswith("pytorch-cuda")}
    passed = len(gaps) == 3 and all(abs(g) <= F1_TOLERANCE for g in gaps.values())
    return {"f1": f1s, "gap_to_cpu": gaps, "tolerance": F1_TOLERANCE, "passed": passed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="print what travels, its size and the steps")
    parser.add_argument("--fetch-wheels", action="store_true", help="download the wheels to carry (network)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check-out")))
    parser.add_argument("--budget-s", type=float, default=270.0, help="stop starting steps after this long")
    args = parser.parse_args(argv)
    if args.plan:
        return print_plan()
    if args.fetch_wheels:
        return fetch_wheels()
    return run_check(args.out, args.budget_s)


if __name__ == "__main__":
    sys.exit(main())
