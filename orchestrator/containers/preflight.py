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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from orchestrator.containers.images import LABEL_TARGET, image_digest
from orchestrator.errors import PreflightError
from orchestrator.runners.host_checks import check_host

if TYPE_CHECKING:
    from orchestrator.containers.docker_runner import DockerRunner

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


@dataclass
class ImageFacts:
    reference: str
    image_id: str
    digest: str
    labels: dict[str, str] = field(default_factory=dict)


def check_engine(runner: DockerRunner) -> Any:
    client = runner.client
    runner.call("reach the Docker engine", client.ping)
    return client


def check_image(runner: DockerRunner, client: Any) -> ImageFacts:
    from docker.errors import ImageNotFound

    try:
        image = runner.call(f"inspect the image {runner.image_ref}", lambda: client.images.get(runner.image_ref))
    except PreflightError:
        raise
    except ImageNotFound:  # pragma: no cover - runner.call already rewrites it
        raise runner.missing_image_error() from None
    labels = dict(image.attrs.get("Config", {}).get("Labels") or {})
    built_for = labels.get(LABEL_TARGET)
    if built_for and built_for != runner.target.key:
        raise PreflightError(
            f"the image {runner.image_ref} was built for {built_for}, not {runner.target.key}; pass the "
            f"{runner.target.key} image to --image or build it with `mlperf-bert images build {runner.target.key}`"
        )
    return ImageFacts(reference=runner.image_ref, image_id=str(image.id), digest=image_digest(image.attrs),
                      labels=labels)


def parse_probe(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(PROBE_MARK):
            return dict(json.loads(line[len(PROBE_MARK):]))
    raise PreflightError(
        "the GPU probe in the container printed no result; run `mlperf-bert run --debug` to inspect the image"
    )


def check_gpu_in_container(runner: DockerRunner, client: Any) -> dict[str, Any]:
    """Start the image with the run's devices and ask it what it sees."""
    from orchestrator.containers.docker_runner import ContainerSpec, sdk_run_kwargs

    target = runner.target
    base: ContainerSpec = runner.container_spec_for_probe()
    cs = replace(base, command=("python", "-c", PROBE_SCRIPT))
    container = runner.call(f"start a GPU probe container from {runner.image_ref}",
                            lambda: client.containers.run(**sdk_run_kwargs(cs)))
    try:
        status = runner.call("wait for the GPU probe", lambda: container.wait(timeout=300))
        output = container.logs().decode("utf-8", "replace")
    finally:
        try:
            container.remove(force=True)
        except Exception as exc:  # noqa: BLE001 - cleanup only; the verdict below matters
            log.debug("could not remove the probe container: %s", exc)
    if int(status.get("StatusCode", 1)) != 0:
        raise PreflightError(
            f"the GPU probe failed in {runner.image_ref} (exit {status.get('StatusCode')}: "
            f"{output.strip().splitlines()[-1] if output.strip() else 'no output'}); rebuild the image with "
            f"`mlperf-bert images build {target.key}`"
        )
    seen = parse_probe(output)
    if not seen.get("gpus"):
        why = "; ".join(seen.get("errors", [])[:2]) or "no device"
        hint = ("install the NVIDIA Container Toolkit and restart Docker" if target.gpu == "nvidia"
                else "make /dev/kfd and /dev/dri readable by your user (groups video and render)")
        raise PreflightError(
            f"the {target.key} container sees no GPU ({why}); {hint}, or choose --device cpu"
        )
    if target.execution_provider not in seen.get("providers", []):
        raise PreflightError(
            f"the image {runner.image_ref} offers {', '.join(seen.get('providers', [])) or 'no provider'} but not "
            f"{target.execution_provider}; rebuild it with `mlperf-bert images build {target.key}`"
        )
    log.info("GPU probe: %s; providers %s", ", ".join(seen["gpus"]), ", ".join(seen["providers"]))
    return seen


def run_preflight(runner: DockerRunner) -> ImageFacts:
    target = runner.target
    check_host(target)
    client = check_engine(runner)
    facts = check_image(runner, client)
    if target.gpu is not None:
        check_gpu_in_container(runner, client)
    return facts
