"""What the registry renders: each image's Dockerfile from the shared skeleton and its fragment, every
version declared once, stale files found and rewritten by one command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from orchestrator.backends import TARGETS, render
from orchestrator.containers import images
from orchestrator.errors import ConfigError
from orchestrator.paths import PACKAGE_DIR, REPO_ROOT

KEYS = render.image_keys()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A copy of what the rendering reads and writes."""
    for name in ("images", "compose", ".github"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("wheelhouse*"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_every_target_with_an_image_has_a_fragment() -> None:
    assert KEYS == list(images.recipes())
    assert set(KEYS) == set(TARGETS)


@pytest.mark.parametrize("key", KEYS)
def test_dockerfile_is_what_the_registry_renders(key: str) -> None:
    path = REPO_ROOT / "images" / key / "Dockerfile"
    assert path.read_text() == render.render_dockerfile(TARGETS[key]), f"{path} is stale: run `{render.COMMAND}`"


@pytest.mark.parametrize("key", KEYS)
def test_each_version_is_declared_once(key: str) -> None:
    """One declaration per version: a default in the fragment or the skeleton, never both, never in the
    requirements (they name build args), and no second pin list for the local runner's venv."""
    fragment = (REPO_ROOT / "images" / key / render.FRAGMENT).read_text()
    skeleton = (REPO_ROOT / render.SKELETON).read_text()
    declared = re.findall(r"^ARG ([A-Z0-9_]+)=", fragment + "\n" + skeleton, flags=re.MULTILINE)
    assert len(declared) == len(set(declared)), (
        f"{key}: declared twice: {sorted(n for n in declared if declared.count(n) > 1)}"
    )
    assert set(images.get_recipe(key).build_args) == set(declared)
    for raw in (REPO_ROOT / "images" / key / "requirements.txt").read_text().splitlines():
        if not raw.lstrip().startswith("#"):
            assert not re.search(r"==\s*[0-9]", raw), f"{key}: {raw!r} hard-codes a version; name a build arg"
    assert not list(PACKAGE_DIR.rglob("requirements*/*.txt")), "a second pin list inside the package"
    assert images.get_recipe(key).build_args["LOADGEN_VERSION"] == render.loadgen_pin()


def test_a_second_declaration_is_refused(repo: Path) -> None:
    fragment = repo / "images" / "onnxruntime-cpu" / render.FRAGMENT
    fragment.write_text(
        fragment.read_text().replace("ARG GLIBC_VERSION=2.36", "ARG GLIBC_VERSION=2.36\nARG PIP_VERSION=1")
    )
    with pytest.raises(ConfigError, match="declares PIP_VERSION a second time"):
        render.render_dockerfile(TARGETS["onnxruntime-cpu"], repo)


def test_an_undeclared_build_arg_is_refused(repo: Path) -> None:
    req = repo / "images" / "onnxruntime-cpu" / "requirements.txt"
    req.write_text(req.read_text() + "sympy==${SYMPY_VERSION}\n")
    with pytest.raises(ConfigError, match="use SYMPY_VERSION, which no ARG declares"):
        render.render_dockerfile(TARGETS["onnxruntime-cpu"], repo)


@pytest.mark.parametrize("key", KEYS)
def test_stages_declare_what_they_use(key: str) -> None:
    text = (REPO_ROOT / "images" / key / "Dockerfile").read_text()
    _, _runtime, venv_stage, final_stage = text.split("\nFROM ")
    assert "ARG GIT_SHA" not in venv_stage  # a new commit reuses the venv layer
    assert "ARG GIT_SHA" in final_stage and "ARG BASE_IMAGE" in final_stage
    requirements = (REPO_ROOT / "images" / key / "requirements.txt").read_text().splitlines()
    for name in re.findall(r"\$\{([A-Z0-9_]+)\}", "\n".join(ln for ln in requirements if not ln.startswith("#"))):
        assert f"\nARG {name}\n" in venv_stage, f"{key}: pip in the venv stage cannot expand ${{{name}}}"
    target = TARGETS[key]
    assert ('mlperf-bert.verified="false"' in text) is (not target.verified)


def test_stale_files_are_found_and_rewritten(repo: Path) -> None:
    assert render.stale_files(repo) == []
    fragment = repo / "images" / "deepsparse-cpu" / render.FRAGMENT
    fragment.write_text(fragment.read_text().replace("NUMPY_VERSION=1.26.4", "NUMPY_VERSION=1.26.3"))
    compose = repo / "compose" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("network: none\n", "network: host\n", 1))
    dockerfile = repo / "images" / "deepsparse-cpu" / "Dockerfile"
    assert render.stale_files(repo) == [dockerfile, compose]
    assert render.write_files(repo) == [dockerfile, compose]
    assert "ARG NUMPY_VERSION=1.26.3" in dockerfile.read_text() and "network: host" not in compose.read_text()
    assert render.stale_files(repo) == []


def test_markers_missing_is_a_clear_error(repo: Path) -> None:
    ci = repo / ".github" / "workflows" / "ci.yml"
    ci.write_text(ci.read_text().replace(render.END, ""))
    with pytest.raises(ConfigError, match="needs one .*BEGIN.* line and one .*END rendered"):
        render.rendered_files(repo)


def test_check_command_exits_zero_on_the_committed_tree() -> None:
    assert render.main(["--check"]) == 0


def test_a_new_target_is_four_files(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ADDING_A_BACKEND.md's steps, for its openvino-cpu example: a registry entry, a fragment and a
    pin list (and the engine, not needed here) give the Dockerfile, the compose service, the CI job and the
    local venv's pins."""
    from orchestrator.backends import CiJob, Target
    from orchestrator.runners import venvs

    target = Target(
        backend="openvino",
        device="cpu",
        engine_class="orchestrator.harness.engines.openvino:OpenVinoEngine",
        execution_provider="CPU",
        local_env="openvino-cpu",
        verified=False,
        notes="not yet run",
        ci=CiJob(runs_on="ubuntu-24.04", model="bert-large-onnx-fp32", query_count=20),
    )
    monkeypatch.setitem(TARGETS, target.key, target)
    doc = (REPO_ROOT / "docs" / "ADDING_A_BACKEND.md").read_text()
    blocks = re.findall(r"```(?:dockerfile|text)\n(.*?)```", doc, flags=re.DOTALL)
    fragment, requirements = blocks[0], blocks[1]
    folder = repo / "images" / "openvino-cpu"
    shutil.rmtree(folder, ignore_errors=True)  # the real target exists now: walk the doc's steps from scratch
    folder.mkdir()
    (folder / render.FRAGMENT).write_text(fragment)
    (folder / "requirements.txt").write_text(requirements)

    written = render.write_files(repo)
    assert set(written) == {folder / "Dockerfile", repo / render.COMPOSE, repo / render.CI}
    recipe = images.get_recipe("openvino-cpu", repo / "images")
    assert (
        recipe.build_args["OPENVINO_VERSION"] == "2026.4.1"
        and recipe.build_args["WHEELHOUSE"] == "wheelhouse/openvino-cpu"
    )
    lines = images.expand_requirements(recipe.requirements.read_text(), recipe.build_args)
    assert "openvino==2026.4.1" in lines and "mlcommons-loadgen==" + render.loadgen_pin() in lines
    dockerfile = recipe.dockerfile.read_text()
    assert 'mlperf-bert.verified="false"' in dockerfile and 'mlperf-bert.backend="openvino"' in dockerfile
    assert "  openvino-cpu:\n" in (repo / render.COMPOSE).read_text()
    assert "- image: openvino-cpu\n" in (repo / render.CI).read_text()
    monkeypatch.setattr(venvs, "IMAGES_DIR", repo / "images")
    assert venvs.pins("openvino-cpu").startswith("# requires-python: >=3.10,<3.14\nopenvino==2026.4.1\n")
