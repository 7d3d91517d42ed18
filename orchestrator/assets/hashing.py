"""Streaming file digests, and a per-process memo so a file is hashed once per (path, size, mtime)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

CHUNK = 1 << 20

_memo: dict[tuple[str, int, int], dict[str, str]] = {}
_memo_lock = threading.Lock()


def file_digests(
    path: Path, algorithms: Iterable[str] = ("md5", "sha256"), on_bytes: Callable[[int], None] | None = None
) -> dict[str, str]:
    """Hash a file in one streaming pass with every algorithm given; returns {name: hexdigest}."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashers.values():
                h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return {name: h.hexdigest() for name, h in hashers.items()}


def _key(path: Path) -> tuple[str, int, int]:
    st = path.stat()  # follows symbolic links: a changed target is a changed file
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def cached_digests(path: Path) -> dict[str, str]:
    """md5 and sha256 of a file, computed once per process for a given (path, size, mtime)."""
    key = _key(path)
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    digests = file_digests(path)
    with _memo_lock:
        _memo[key] = digests
    return digests


def cached_sha256(path: Path) -> str:
    return cached_digests(path)["sha256"]


def mismatches(digests: dict[str, str], expected: dict[str, str]) -> list[str]:
    """Describe every expected digest that differs, e.g. ["md5 ab12... (expected 3e85...)"]."""
    return [
        f"{name} {digests.get(name, '?')} (expected {want})"
        for name, want in expected.items()
        if digests.get(name) != want
    ]
