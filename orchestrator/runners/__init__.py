"""Runners: the same harness entry point, in this environment (local) or in a container (docker)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from orchestrator.backends import Target
from orchestrator.errors import PreflightError


def docker_available(target: Target) -> bool:
    """True when a Docker engine answers and the target's image is present (auto runner choice)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.images.get(f"{target.image}:latest")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable", and auto falls back to local
        return False


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
