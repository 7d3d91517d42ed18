"""Managed backend environments: the image's pins, keyed by them, built atomically, built once under a lock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator.backends import TARGETS
from orchestrator.containers import images
from orchestrator.errors import PreflightError
from orchestrator.runners import venvs


class ReqDir:
    """A stand-in images/ folder: `add(name, requirements, dockerfile)` makes images/<name>/."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, name: str, requirements: str, dockerfile: str = "") -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(dockerfile)
        path = folder / "requirements.txt"
        path.write_text(requirements)
        return path


@pytest.fixture()
def req_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ReqDir:
    root = tmp_path / "images"
    root.mkdir()
    monkeypatch.setattr(venvs, "IMAGES_DIR", root)
    return ReqDir(root)


def test_every_registry_env_is_an_image_with_pins() -> None:
    for target in TARGETS.values():
        if target.local_env != "main":
            assert venvs.requirements_file(target.local_env) == images.get_recipe(target.local_env).requirements
            assert venvs.pins(target.local_env).strip(), target.key
    with pytest.raises(PreflightError, match="no managed environment"):
        venvs.requirements_file("no-such-env")


@pytest.mark.parametrize("env", sorted({t.local_env for t in TARGETS.values() if t.local_env != "main"}))
def test_venv_installs_exactly_the_image_pins(env: str) -> None:
    """The venv and the image share one pin list: every image pin but pip's, at the image's version."""
    recipe = images.get_recipe(env)
    image = images.expand_requirements(recipe.requirements.read_text(), recipe.build_args)
    expected = [line for line in image if not line.startswith("-") and not line.startswith("pip==")]
    venv = [line for line in venvs.pins(env).splitlines() if not line.startswith("#")]
    assert venv == expected and venv
    assert all("==" in line and "${" not in line for line in venv)
    assert venvs.python_range(venvs.pins(env)) != ((3, 0), (4, 0))  # the image folder says which Python


def test_pins_expand_build_args_and_drop_image_only_lines(req_dir: ReqDir) -> None:
    req_dir.add(
        "demo",
        "# requires-python: >=3.9,<3.13\n--extra-index-url https://x/${V}\npip==${P}\npkg==${V}\n",
        "ARG V=1.2\nARG P=26.3\nFROM x\nARG V\n",
    )
    assert venvs.pins("demo") == "# requires-python: >=3.9,<3.13\npkg==1.2\n"


def test_no_images_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(venvs, "IMAGES_DIR", tmp_path / "not-a-clone" / "images")
    with pytest.raises(PreflightError, match="no images folder at .*clone of the repository, or use --runner docker"):
        venvs.ensure_venv("deepsparse-cpu", cache_dir=tmp_path / "cache")


def test_python_range() -> None:
    assert venvs.python_range("# requires-python: >=3.8,<3.12\nx==1\n") == ((3, 8), (3, 12))
    assert venvs.python_range("x==1\n") == ((3, 0), (4, 0))
    with pytest.raises(ValueError):
        venvs.python_range("# requires-python: ~=3.11\n")


def test_key_follows_requirements_and_python() -> None:
    a = venvs.venv_key("deepsparse==1.8.0\n", (3, 11))
    assert a == venvs.venv_key("deepsparse==1.8.0\n", (3, 11))
    assert a != venvs.venv_key("deepsparse==1.7.1\n", (3, 11))
    assert a != venvs.venv_key("deepsparse==1.8.0\n", (3, 10))


def test_no_fitting_python_is_a_clear_error(req_dir: ReqDir, tmp_path: Path) -> None:
    req_dir.add("old", "# requires-python: >=2.6,<2.7\n")
    with pytest.raises(PreflightError, match="needs Python"):
        venvs.ensure_venv("old", cache_dir=tmp_path / "cache")


@pytest.mark.slow
def test_build_once_atomically_and_reuse(req_dir: ReqDir, tmp_path: Path) -> None:
    req = req_dir.add("tiny", "# nothing to install: only the venv itself\n")
    cache = tmp_path / "cache"
    root = cache / "venvs"
    root.mkdir(parents=True)
    key = venvs.venv_key(venvs.pins("tiny"), sys.version_info[:2])  # type: ignore[arg-type]
    stale = root / f".tiny-{key}.dead-build"  # a build that died: removed by the next one
    stale.mkdir()

    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(venvs.ensure_venv("tiny", cache_dir=cache))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    python = results[0]
    venv = python.parent.parent
    assert venv == root / f"tiny-{key}" == venvs.venv_path("tiny", cache)
    assert venvs.is_complete(venv)
    marker = json.loads((venv / venvs.MARKER).read_text())
    assert marker["name"] == "tiny"
    out = subprocess.run(
        [str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()) == venv  # usable after the rename from its temporary name
    assert not stale.exists() and not list(root.glob(".tiny-*"))  # no temporary dirs left
    built = (venv / venvs.MARKER).stat().st_mtime_ns
    assert venvs.ensure_venv("tiny", cache_dir=cache) == python
    assert (venv / venvs.MARKER).stat().st_mtime_ns == built  # reused, not rebuilt

    req.write_text("# changed requirements make a new environment\npip==${P}\n")
    (req.parent / "Dockerfile").write_text("ARG P=1\n")
    assert venvs.ensure_venv("tiny", cache_dir=cache) == python  # an image-only line changes nothing
    req.write_text("# requires-python: >=3.0,<4.0\n")  # changed pins (a header counts) make a new environment
    assert venvs.ensure_venv("tiny", cache_dir=cache) != python


@pytest.mark.slow
def test_failed_build_leaves_nothing_behind(req_dir: ReqDir, tmp_path: Path) -> None:
    req_dir.add("broken", "this is not a requirement ===\n")
    cache = tmp_path / "cache"
    with pytest.raises(PreflightError, match="Building the broken environment failed"):
        venvs.ensure_venv("broken", cache_dir=cache)
    root = cache / "venvs"
    assert not [p for p in root.iterdir() if p.is_dir()]  # neither a final nor a temporary venv
    assert list(root.glob("broken-*.log"))  # the pip log stays for the user
