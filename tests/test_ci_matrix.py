"""The CI image matrix (.github/workflows/ci.yml) is the registry's: one job per target with a `ci`
entry, its runner, model and query count from the Target, and the committed file what the registry renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.assets.catalogue import load_catalogue
from orchestrator.backends import TARGETS, render

REPO = Path(__file__).resolve().parents[1]
CI = REPO / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def matrix() -> dict[str, dict[str, Any]]:
    workflow = yaml.safe_load(CI.read_text())
    return {job["image"]: job for job in workflow["jobs"]["image"]["strategy"]["matrix"]["include"]}


def test_ci_yml_is_what_the_registry_renders() -> None:
    assert CI.read_text() == render.rendered_files()[CI], f"ci.yml's matrix is stale: run `{render.COMMAND}`"


def test_one_job_per_target_with_an_image(matrix: dict[str, dict[str, Any]]) -> None:
    with_ci = [key for key in render.image_keys() if TARGETS[key].ci is not None]
    assert list(matrix) == with_ci
    assert set(with_ci) >= {"onnxruntime-cpu", "deepsparse-cpu", "pytorch-cpu"}  # what runs on hosted runners


@pytest.mark.parametrize("key", [k for k in TARGETS if TARGETS[k].ci is not None])
def test_job_follows_its_target(matrix: dict[str, dict[str, Any]], key: str) -> None:
    target, job = TARGETS[key], matrix[key]
    ci = target.ci
    assert ci is not None
    assert (job["backend"], job["device"]) == (target.backend, target.device)
    assert job["runs-on"] == (ci.runs_on if isinstance(ci.runs_on, str) else list(ci.runs_on))
    if target.gpu:
        assert "self-hosted" in job["runs-on"] and target.gpu in " ".join(job["runs-on"])
    assert job["queries"] == ci.query_count
    assert job["model"] == (ci.model or "")
    assert job["tests"].split() == list(ci.container_tests)
    for test in ci.container_tests:
        assert (REPO / test).is_file(), test
    if ci.model:
        asset = load_catalogue().get(ci.model, "model")
        assert job["fetch"] is (asset.embedded is None)
        assert asset.mirrors or asset.embedded, f"CI cannot get {ci.model}: no mirror and not embedded"
    else:
        assert job["fetch"] is False
