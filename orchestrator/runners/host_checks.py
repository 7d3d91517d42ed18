"""What this machine must have before a run starts: the target's GPU, the CPU flags its engine needs.

Both runners use these (the Docker runner's pre-flight calls them before it asks Docker anything), so
asking for a GPU target on a machine without that GPU fails at once, with one sentence.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from orchestrator.backends import Target
from orchestrator.errors import PreflightError
from orchestrator.harness.cpu import cpu_flags

log = logging.getLogger(__name__)


def check_gpu_visible_locally(target: Target) -> None:
    """Fail before anything runs when a GPU target is asked for on a machine without that GPU."""
    if target.gpu == "nvidia":
        smi = shutil.which("nvidia-smi")
        ok = bool(smi) and subprocess.run([smi or "nvidia-smi", "-L"], capture_output=True).returncode == 0
        if not ok:
            raise PreflightError(
                f"{target.key} needs an NVIDIA GPU but none is visible here (nvidia-smi missing or failing); "
                "run on a machine with an NVIDIA GPU and driver, or choose --backend onnxruntime --device cpu"
            )
    elif target.gpu == "amd" and not (Path("/dev/kfd").exists() and Path("/dev/dri").exists()):
        raise PreflightError(
            f"{target.key} needs an AMD GPU with ROCm but /dev/kfd or /dev/dri is missing here; "
            "run on a ROCm machine, or choose --backend onnxruntime --device cpu"
        )


def check_cpu_flags(target: Target, cpuinfo_path: Path = Path("/proc/cpuinfo")) -> None:
    if not target.cpu_flags:
        return
    have = cpu_flags(cpuinfo_path)
    if have is None:
        log.warning("cannot read %s; not checking the CPU flags %s needs", cpuinfo_path, ", ".join(target.cpu_flags))
        return
    missing = [f for f in target.cpu_flags if f not in have]
    if missing:
        raise PreflightError(
            f"{target.key} needs a CPU with {', '.join(missing)}, which this CPU lacks; run it on a newer x86-64 "
            "CPU or choose --backend onnxruntime"
        )


def check_host(target: Target) -> None:
    """Everything about the host a run of `target` needs, cheapest first."""
    if target.gpu is not None:
        check_gpu_visible_locally(target)
    check_cpu_flags(target)
