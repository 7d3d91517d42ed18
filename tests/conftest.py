"""Shared test fixtures. Tests read ../shared when present; what they always need is vendored in the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLPERF_BERT_SHARED", REPO.parent / "shared"))
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    path = SHARED / "assets"
    if not path.is_dir():
        pytest.skip(f"{path} is not present (the shared development assets)")
    return path


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature/asset cache for the whole session, so the dev set is preprocessed once."""
    return tmp_path_factory.mktemp("cache")
