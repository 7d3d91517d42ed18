"""compose/docker-compose.yml: one service per image, rendered from the registry, the same mounts, devices
and options as the Docker runner, and valid for `docker-compose config` (Debian's docker-compose; no
engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.backends import render
from orchestrator.containers import images
from orchestrator.containers.container_spec import CONTAINER_ENV
from orchestrator.containers.docker_runner import HARNESS_COMMAND

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose" / "docker-compose.yml"
REQUIRE = os.environ.get("MLPERF_BERT_REQUIRE_DOCKER") == "1"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_one_service_per_image(compose: dict[str, Any]) -> None:
    assert sorted(compose["services"]) == sorted(images.recipes())


def test_services_are_what_the_registry_renders() -> None:
    """A target added, removed or changed without re-rendering fails here; the fix is one command."""
    assert COMPOSE.read_text() == render.rendered_files()[COMPOSE], (
        f"compose/docker-compose.yml is stale: run `{render.COMMAND}`"
    )


@pytest.mark.parametrize("key", list(images.recipes()))
def test_service_matches_the_runner(compose: dict[str, Any], key: str) -> None:
    svc = compose["services"][key]
    recipe = images.get_recipe(key)
    assert svc["image"] == recipe.reference
    assert key in svc["profiles"]
    assert svc["build"]["dockerfile"] == f"images/{key}/Dockerfile" and svc["build"]["context"] == ".."
    assert (COMPOSE.parent / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    assert svc["build"]["network"] == "none"
    assert svc["command"] == list(HARNESS_COMMAND)
    assert svc["environment"] == CONTAINER_ENV
    assert svc["init"] is True and svc["network_mode"] == "none" and svc["cap_drop"] == ["ALL"]
    assert svc["security_opt"] == ["no-new-privileges"] and svc["stop_signal"] == "SIGINT"
    assert "privileged" not in svc
    mounts = {v["target"]: v.get("read_only", False) for v in svc["volumes"]}
    assert mounts == {"/models": True, "/data": True, "/run": False}
    assert svc["user"].startswith("${MLPERF_BERT_UID")
    gpu = recipe.target.gpu
    reservations = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    if gpu == "nvidia":
        assert reservations == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    else:
        assert not reservations
    if gpu == "amd":
        assert svc["devices"] == ["/dev/kfd:/dev/kfd", "/dev/dri:/dev/dri"] and "video" in svc["group_add"]
    else:
        assert "devices" not in svc


def _compose_bin() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        if REQUIRE:
            pytest.fail("docker-compose is not installed (bash .ci/docker-setup.sh installs it)")
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return found


@pytest.mark.parametrize("profile", ["cpu", "gpu", "onnxruntime-cpu"])
def test_docker_compose_config_validates(profile: str, tmp_path: Path) -> None:
    env = dict(os.environ, MLPERF_BERT_UID="1000", MLPERF_BERT_GID="1000", MLPERF_BERT_RUN_DIR=str(tmp_path))
    proc = subprocess.run(
        [_compose_bin(), "-f", str(COMPOSE), "--profile", profile, "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    svc = resolved["services"]["onnxruntime-cpu"]
    assert svc["user"] == "1000:1000"
    run_mount = next(v for v in svc["volumes"] if v["target"] == "/run")
    assert run_mount["source"] == str(tmp_path)


def test_docker_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    """The validation can fail: a service with a misspelt key is refused."""
    broken = tmp_path / "docker-compose.yml"
    data = yaml.safe_load(COMPOSE.read_text())
    data["services"]["onnxruntime-cpu"]["netwrok_mode"] = "none"
    broken.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [_compose_bin(), "-f", str(broken), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "netwrok_mode" in proc.stderr
