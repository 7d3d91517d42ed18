"""Managed backend environments: keyed by requirements, built atomically, built once under a lock."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator.backends import TARGETS
from orchestrator.errors import PreflightError
from orchestrator.runners import venvs


@pytest.fixture()
def req_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "requirements"
    path.mkdir()
    monkeypatch.setattr(venvs, "REQUIREMENTS_DIR", path)
    return path


def test_every_registry_env_has_requirements() -> None:
    for target in TARGETS.values():
        if target.local_env != "main":
            assert venvs.requirements_file(target.local_env).is_file(), target.key
    with pytest.raises(PreflightError, match="no managed environment"):
        venvs.requirements_file("no-such-env")


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


def test_no_fitting_python_is_a_clear_error(req_dir: Path, tmp_path: Path) -> None:
    (req_dir / "old.txt").write_text("# requires-python: >=2.6,<2.7\n")
    with pytest.raises(PreflightError, match="needs Python"):
        venvs.ensure_venv("old", cache_dir=tmp_path / "cache")


@pytest.mark.slow
def test_build_once_atomically_and_reuse(req_dir: Path, tmp_path: Path) -> None:
    (req_dir / "tiny.txt").write_text("# nothing to install: only the venv itself\n")
    cache = tmp_path / "cache"
    root = cache / "venvs"
    root.mkdir(parents=True)
    key = venvs.venv_key((req_dir / "tiny.txt").read_text(), sys.version_info[:2])  # type: ignore[arg-type]
    stale = root / f".tiny-{key}.dead-build"  # a build that died: removed by the next one
    stale.mkdir()

    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(venvs.ensure_venv("tiny", cache_dir=cache)))
               for _ in range(2)]
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
    out = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == venv  # usable after the rename from its temporary name
    assert not stale.exists() and not list(root.glob(".tiny-*"))  # no temporary dirs left
    built = (venv / venvs.MARKER).stat().st_mtime_ns
    assert venvs.ensure_venv("tiny", cache_dir=cache) == python
    assert (venv / venvs.MARKER).stat().st_mtime_ns == built  # reused, not rebuilt

    (req_dir / "tiny.txt").write_text("# changed requirements make a new environment\n")
    assert venvs.ensure_venv("tiny", cache_dir=cache) != python


@pytest.mark.slow
def test_failed_build_leaves_nothing_behind(req_dir: Path, tmp_path: Path) -> None:
    (req_dir / "broken.txt").write_text("this is not a requirement ===\n")
    cache = tmp_path / "cache"
    with pytest.raises(PreflightError, match="Building the broken environment failed"):
        venvs.ensure_venv("broken", cache_dir=cache)
    root = cache / "venvs"
    assert not [p for p in root.iterdir() if p.is_dir()]  # neither a final nor a temporary venv
    assert list(root.glob("broken-*.log"))  # the pip log stays for the user
