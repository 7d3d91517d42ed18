"""Managed virtual environments for backends whose pins conflict with the main environment.

DeepSparse 1.8 needs onnx<1.15 and numpy<2; PyTorch is a large optional install. The local runner runs
their harness with `<venv>/bin/python -m orchestrator.harness`, the package itself coming from
PYTHONPATH (the source directory), so a venv holds only third-party packages.

A venv is named after an image (a registry target's `local_env`) and installs that image's pins: the
requirements of `images/<name>/requirements.txt` with `${NAME}` expanded from its Dockerfile's build-arg
defaults, so the venv and the image cannot drift. Two kinds of line serve the image's build only and are
left out: option lines (`--extra-index-url`, `--find-links`: the host's wheelhouse download) and the pin
of pip (the image's bootstrap; a venv keeps the pip it was made with). A `# requires-python: >=3.8,<3.12`
comment there picks the venv's Python.

A venv lives at `<cache>/venvs/<name>-<hash>`, the hash covering its expanded pins and the Python
it was made with, so a changed pin makes a new one instead of mutating the old. It is built in a
temporary directory beside it and renamed into place only once pip succeeded: a directory under the
final name is always complete. An exclusive file lock keeps two runs from building the same one at
once; the second waits, then finds it built.

The rename is safe because a venv is only ever used through `bin/python`, which finds its environment
from its own location (pyvenv.cfg beside it); the absolute paths in the console scripts' shebangs,
which point at the temporary directory, are never used (pip runs as `python -m pip`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from orchestrator.backends import TARGETS
from orchestrator.backends.pins import expand_requirements, parse_build_args
from orchestrator.errors import PreflightError
from orchestrator.paths import REPO_ROOT, default_cache_dir

log = logging.getLogger(__name__)

IMAGES_DIR = REPO_ROOT / "images"
MARKER = "mlperf-bert-venv.json"  # written last inside the venv, before the rename
PINS_FILE = "mlperf-bert-requirements.txt"  # the expanded pins, written into the venv for pip
_PIP_PIN = re.compile(r"^pip\s*==")
_REQUIRES_PYTHON = re.compile(r"^#\s*requires-python:\s*(.+)$", re.MULTILINE)
_BOUND = re.compile(r"(>=|<)\s*(\d+)\.(\d+)")
_PIP_TAIL_LINES = 15


def known_venvs() -> list[str]:
    return sorted({t.local_env for t in TARGETS.values() if t.local_env != "main"})


def requirements_file(name: str) -> Path:
    """`images/<name>/requirements.txt`: the pins that the image and the venv `name` share."""
    if not IMAGES_DIR.is_dir():
        raise PreflightError(
            f"The {name} environment installs the pins of images/{name}/requirements.txt, but there is no "
            f"images folder at {IMAGES_DIR}; run from a clone of the repository, or use --runner docker."
        )
    path = IMAGES_DIR / name / "requirements.txt"
    if not path.is_file():
        raise PreflightError(
            f"There is no managed environment named {name!r} (known: {', '.join(known_venvs())}); "
            f"fix the backend registry's local_env or add images/{name}/requirements.txt."
        )
    return path


def pins(name: str) -> str:
    """What the venv `name` installs: its image's requirements, expanded, without the image-only lines."""
    path = requirements_file(name)
    text = path.read_text()
    dockerfile = path.parent / "Dockerfile"
    args = parse_build_args(dockerfile.read_text()) if dockerfile.is_file() else {}
    header = [line for line in text.splitlines() if _REQUIRES_PYTHON.match(line)]
    lines = [
        line
        for line in expand_requirements(text, args, str(path))
        if not line.startswith("-") and not _PIP_PIN.match(line)
    ]
    return "\n".join(header + lines) + "\n"


def python_range(requirements: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The `# requires-python: >=3.8,<3.12` header as ((3, 8), (3, 12)); any Python 3 when absent."""
    low, high = (3, 0), (4, 0)
    found = _REQUIRES_PYTHON.search(requirements)
    for part in found.group(1).split(",") if found else ():
        match = _BOUND.fullmatch(part.strip())
        if not match:
            raise ValueError(f"unsupported requires-python bound {part.strip()!r} (write >=X.Y and <X.Y)")
        bound = (int(match.group(2)), int(match.group(3)))
        if match.group(1) == ">=":
            low = bound
        else:
            high = bound
    return low, high


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def pick_python(requirements: str, name: str) -> tuple[str, tuple[int, int]]:
    """This interpreter when it fits the requirements' Python range, else a `python3.X` on PATH that does."""
    low, high = python_range(requirements)
    here = (sys.version_info[0], sys.version_info[1])
    if low <= here < high:
        return sys.executable, here
    for minor in range(high[1] - 1, low[1] - 1, -1) if high[0] == 3 else ():
        candidate = shutil.which(f"python3.{minor}")
        version = _python_version(candidate) if candidate else None
        if candidate and version and low <= version < high:
            return candidate, version
    raise PreflightError(
        f"The {name} environment needs Python >={low[0]}.{low[1]},<{high[0]}.{high[1]}, but this is "
        f"{here[0]}.{here[1]} and no fitting python3.X is on PATH; install one (e.g. python3.11) or use "
        "--runner docker."
    )


def venv_key(requirements: str, python_version: tuple[int, int]) -> str:
    digest = hashlib.sha256()
    digest.update(requirements.encode())
    digest.update(f"\npython {python_version[0]}.{python_version[1]} {sys.platform} {os.uname().machine}".encode())
    return digest.hexdigest()[:12]


def venv_path(name: str, cache_dir: Path | None = None) -> Path:
    """Where the venv for `name` lives (whether or not it is built yet)."""
    requirements = pins(name)
    _, version = pick_python(requirements, name)
    return (cache_dir or default_cache_dir()) / "venvs" / f"{name}-{venv_key(requirements, version)}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_complete(venv: Path) -> bool:
    return (venv / MARKER).is_file() and _venv_python(venv).exists()


@contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Another run is building the %s environment; waiting for it.", what)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(name: str, *, cache_dir: Path | None = None) -> Path:
    """The python of the managed venv `name`, built on first use (once; later calls return at once)."""
    requirements = pins(name)
    python, version = pick_python(requirements, name)
    root = (cache_dir or default_cache_dir()) / "venvs"
    final = root / f"{name}-{venv_key(requirements, version)}"
    if is_complete(final):
        return _venv_python(final)
    with _exclusive(root / f"{final.name}.lock", name):
        if is_complete(final):  # built by the run we waited for
            return _venv_python(final)
        _remove_leftovers(root, final)
        _build(name, python, requirements, root, final)
    return _venv_python(final)


def _remove_leftovers(root: Path, final: Path) -> None:
    """Temporary dirs of builds that died (we hold the lock, so none is in progress), and an incomplete final."""
    for stale in root.glob(f".{final.name}.*"):
        log.debug("removing the unfinished environment %s", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists():
        log.warning("Removing the incomplete environment %s and building it again.", final)
        shutil.rmtree(final, ignore_errors=True)


def _build(name: str, python: str, requirements: str, root: Path, final: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    build_log = root / f"{final.name}.log"
    log.info(
        "Creating the %s environment in %s (once; pip installs the pins of images/%s, this can take minutes).",
        name,
        final,
        name,
    )
    started = time.monotonic()
    try:
        with build_log.open("w") as sink:
            _step([python, "-m", "venv", str(tmp)], sink, name, build_log)
            tmp_python = str(_venv_python(tmp))
            req_path = tmp / PINS_FILE
            req_path.write_text(requirements)
            pip = [tmp_python, "-m", "pip", "--disable-pip-version-check", "--no-input"]
            _step([*pip, "install", "-r", str(req_path)], sink, name, build_log)
            frozen = subprocess.run([*pip, "freeze"], capture_output=True, text=True, check=False).stdout
        marker = {
            "name": name,
            "requirements": requirements,
            "python": subprocess.run(
                [tmp_python, "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip(),
            "installed": frozen.split(),
            "built_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("The %s environment is ready (%.0f s).", name, time.monotonic() - started)


def _step(cmd: list[str], sink: IO[str], name: str, build_log: Path) -> None:
    sink.write(f"$ {' '.join(cmd)}\n")
    sink.flush()
    try:
        code = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, check=False).returncode
    except OSError as exc:
        raise PreflightError(
            f"Cannot run {cmd[0]} to build the {name} environment ({exc.strerror}); check the Python installation."
        ) from None
    if code != 0:
        tail = build_log.read_text(errors="replace").strip().splitlines()[-_PIP_TAIL_LINES:]
        for line in tail:
            log.error("  %s", line)
        raise PreflightError(
            f"Building the {name} environment failed ({Path(cmd[0]).name} exited {code}; full log {build_log}); "
            "check network access to the package index (pip honours PIP_INDEX_URL) or use --runner docker."
        )
