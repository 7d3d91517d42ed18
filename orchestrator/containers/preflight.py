"""Pre-flight for the Docker runner: everything a run needs, checked before a container starts.

Cheapest first, and what needs no Docker before what does, so that asking for a GPU target on a machine
without that GPU fails at once:
  1. the GPU on the host (NVIDIA: nvidia-smi; AMD: /dev/kfd + /dev/dri), the CPU flags (DeepSparse: avx2)
  2. the Docker engine answers
  3. the image is present (else: `mlperf-bert images build KEY`) and was built for this target
  4. GPU targets: a probe container with the run's devices sees the GPU and offers the execution provider
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.backends import Target
from orchestrator.containers.client import DEFAULT_RETRY, RetryPolicy, call
from orchestrator.containers.container_spec import CONTAINER_ENV, ContainerSpec, GpuAccess, caller_user, sdk_run_kwargs
from orchestrator.containers.images import LABEL_TARGET, image_digest
from orchestrator.errors import PreflightError
from orchestrator.runners.host_checks import check_host

log = logging.getLogger(__name__)

PROBE_MARK = "MLPERF_BERT_PROBE "
# Runs inside the image with the run's devices: what GPUs and execution providers does it see?
PROBE_SCRIPT = r"""
import glob, json, os, subprocess
out = {"gpus": [], "providers": [], "errors": []}
try:
    r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    out["gpus"] += [l.strip() for l in r.stdout.splitlines() if l.startswith("GPU ")]
    if r.returncode:
        out["errors"].append("nvidia-smi: " + (r.stderr or r.stdout).strip()[:200])
except OSError:
    pass
if os.path.exists("/dev/kfd"):
    out["gpus"] += sorted(glob.glob("/dev/dri/renderD*"))
try:
    import onnxruntime
    out["providers"] += onnxruntime.get_available_providers()
except Exception as e:
    out["errors"].append("onnxruntime: %s" % e)
try:
    import tensorrt
    out["providers"].append("TensorRT")
    out["tensorrt"] = tensorrt.__version__
except Exception as e:
    out["errors"].append("tensorrt: %s" % e)
print("MLPERF_BERT_PROBE " + json.dumps(out))
"""


@dataclass(frozen=True)
class ImageFacts:
    reference: str
    image_id: str
    digest: str
    labels: dict[str, str] = field(default_factory=dict)


def missing_image_error(target: Target, image_ref: str) -> PreflightError:
    return PreflightError(
        f"the image {image_ref} is not on this Docker engine; build it with "
        f"`mlperf-bert images build {target.key}` (or pass --image)"
    )


def check_engine(connect: Callable[[], Any], retry: RetryPolicy = DEFAULT_RETRY) -> Any:
    """The client, once its engine has answered."""
    client = connect()
    call("run the benchmark in a container", client.ping, retry=retry)
    return client


def check_image(client: Any, target: Target, image_ref: str, retry: RetryPolicy = DEFAULT_RETRY) -> ImageFacts:
    image = call(
        f"inspect the image {image_ref}",
        lambda: client.images.get(image_ref),
        retry=retry,
        missing_image=lambda: missing_image_error(target, image_ref),
    )
    labels = dict(image.attrs.get("Config", {}).get("Labels") or {})
    built_for = labels.get(LABEL_TARGET)
    if built_for and built_for != target.key:
        raise PreflightError(
            f"the image {image_ref} was built for {built_for}, not {target.key}; pass the "
            f"{target.key} image to --image or build it with `mlperf-bert images build {target.key}`"
        )
    return ImageFacts(reference=image_ref, image_id=str(image.id), digest=image_digest(image.attrs), labels=labels)


def probe_spec(target: Target, image_ref: str, access: GpuAccess) -> ContainerSpec:
    """The run's image, user, environment and GPU access, nothing mounted, the probe script as the command."""
    return ContainerSpec(
        image=image_ref,
        command=("python", "-c", PROBE_SCRIPT),
        env=dict(CONTAINER_ENV),
        user=caller_user(),
        devices=access.devices,
        gpus=access.gpus,
        group_add=access.group_add,
        labels={"mlperf-bert.probe": target.key},
    )


def parse_probe(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(PROBE_MARK):
            return dict(json.loads(line[len(PROBE_MARK) :]))
    raise PreflightError(
        "the GPU probe in the container printed no result; run `mlperf-bert run --debug` to inspect the image"
    )


def check_gpu_in_container(
    client: Any, target: Target, image_ref: str, access: GpuAccess, retry: RetryPolicy = DEFAULT_RETRY
) -> dict[str, Any]:
    """Start the image with the run's devices and ask it what it sees."""
    cs = probe_spec(target, image_ref, access)

    def missing() -> PreflightError:
        return missing_image_error(target, image_ref)

    container = call(
        f"start a GPU probe container from {image_ref}",
        lambda: client.containers.run(**sdk_run_kwargs(cs)),
        retry=retry,
        missing_image=missing,
    )
    try:
        status = call("wait for the GPU probe", lambda: container.wait(timeout=300), retry=retry)
        output = container.logs().decode("utf-8", "replace")
    finally:
        try:
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001 - cleanup only; the verdict below matters
            log.debug("could not remove the probe container: %s", exc)
    if int(status.get("StatusCode", 1)) != 0:
        raise PreflightError(
            f"the GPU probe failed in {image_ref} (exit {status.get('StatusCode')}: "
            f"{output.strip().splitlines()[-1] if output.strip() else 'no output'}); rebuild the image with "
            f"`mlperf-bert images build {target.key}`"
        )
    seen = parse_probe(output)
    if not seen.get("gpus"):
        why = "; ".join(seen.get("errors", [])[:2]) or "no device"
        hint = (
            "install the NVIDIA Container Toolkit and restart Docker"
            if target.gpu == "nvidia"
            else "make /dev/kfd and /dev/dri readable by your user (groups video and render)"
        )
        raise PreflightError(f"the {target.key} container sees no GPU ({why}); {hint}, or choose --device cpu")
    if target.execution_provider not in seen.get("providers", []):
        raise PreflightError(
            f"the image {image_ref} offers {', '.join(seen.get('providers', [])) or 'no provider'} but not "
            f"{target.execution_provider}; rebuild it with `mlperf-bert images build {target.key}`"
        )
    log.info("GPU probe: %s; providers %s", ", ".join(seen["gpus"]), ", ".join(seen["providers"]))
    return seen


def run_preflight(
    target: Target, image_ref: str, connect: Callable[[], Any], *, access: GpuAccess, retry: RetryPolicy = DEFAULT_RETRY
) -> ImageFacts:
    """The checks in order; `connect` is only called once the host has what the target needs."""
    check_host(target)
    client = check_engine(connect, retry)
    facts = check_image(client, target, image_ref, retry)
    if target.gpu is not None:
        check_gpu_in_container(client, target, image_ref, access, retry)
    return facts
