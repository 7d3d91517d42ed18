"""src/ (v6.x) or code/ (v5.x): the project's source of record for the runs in a submission.

Preferred: the exact commit the runs recorded (run.json git_sha), exported with `git archive`, so the
code in the submission is the code that ran, whatever the working tree holds now. Without git (an
installed package) the installed package's files are copied and SOURCE.md says so. Either way the
copy is filtered for the submission's hygiene rules: no dot files, no caches, no vendored models or
data (they are not source), nothing over 5 MB, no spaces in names.
"""

from __future__ import annotations

import io
import logging
import subprocess
import tarfile
from pathlib import Path

from orchestrator import __version__
from orchestrator.paths import PACKAGE_DIR, REPO_ROOT

log = logging.getLogger(__name__)

MAX_SOURCE_FILE = 5 * 1024 * 1024
EXCLUDED_TOP = ("embedded", "runs", "submissions", "build", "dist", "wheelhouse")


def _keep(rel: str, size: int) -> bool:
    parts = rel.split("/")
    if any(p.startswith(".") or p == "__pycache__" or " " in p for p in parts):
        return False
    if parts[0] in EXCLUDED_TOP or rel.endswith((".pyc", ".onnx", ".npz")):
        return False
    return size <= MAX_SOURCE_FILE


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, timeout=60, check=False)


def _commit_available(sha: str) -> bool:
    try:
        return _git("cat-file", "-e", f"{sha}^{{commit}}").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _files_from_git(sha: str) -> dict[str, bytes]:
    # Pathspecs leave the vendored models and data out of the archive itself (they are not source).
    res = _git("archive", "--format=tar", sha, "--", ".", *(f":(exclude){top}" for top in EXCLUDED_TOP))
    if res.returncode != 0:
        return {}
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        for member in tar.getmembers():
            if member.isfile() and _keep(member.name, member.size):
                f = tar.extractfile(member)
                if f is not None:
                    files[member.name] = f.read()
    return files


def _files_from_package() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    base = PACKAGE_DIR.parent
    candidates = list(PACKAGE_DIR.rglob("*")) + [base / "pyproject.toml"] + list((base / "configs").glob("*"))
    for path in candidates:
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(base).as_posix()
            if _keep(rel, path.stat().st_size):
                files[rel] = path.read_bytes()
    return files


def collect_source(git_shas: list[str | None]) -> tuple[dict[str, bytes], str]:
    """The files for src/ and the text of its SOURCE.md."""
    shas = sorted({s for s in git_shas if s})
    clean = sorted({s.removesuffix("-dirty") for s in shas})
    dirty = any(s.endswith("-dirty") for s in shas)
    if len(clean) == 1 and _commit_available(clean[0]):
        files = _files_from_git(clean[0])
        if files:
            note = (
                f"mlperf-bert source at git commit {clean[0]}, the commit recorded by the runs in this "
                "submission (exported with `git archive`; vendored models and data are left out)."
            )
            if dirty:
                note += (
                    "\n\nWARNING: the runs recorded uncommitted changes (-dirty); those changes are NOT in this "
                    "copy. Commit them and rerun for a reproducible submission."
                )
            return files, note
    if len(clean) > 1:
        log.warning(
            "the runs recorded different git commits (%s); src/ holds the installed package instead", ", ".join(clean)
        )
    files = _files_from_package()
    note = (
        f"mlperf-bert {__version__}: the installed package's files at the time the submission was generated "
        f"(the runs recorded git commit(s): {', '.join(shas) or 'none'}; that commit was not available here)."
    )
    return files, note


def write_source(dest: Path, files: dict[str, bytes], note: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for rel, data in sorted(files.items()):
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (dest / "SOURCE.md").write_text(f"# Source of record\n\n{note}\n")
