"""Where things live: the repository's embedded assets, the cache, the default runs directory."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The repository root when installed editable (`pip install -e .`), the usual way to use this tool.
REPO_ROOT = PACKAGE_DIR.parent
EMBEDDED_DIR = Path(os.environ.get("MLPERF_BERT_EMBEDDED", REPO_ROOT / "embedded"))
CONFIGS_DIR = Path(os.environ.get("MLPERF_BERT_CONFIGS", REPO_ROOT / "configs"))

EMBEDDED_DATASET = EMBEDDED_DIR / "squad" / "dev-v1.1.json"
EMBEDDED_VOCAB = EMBEDDED_DIR / "vocab" / "vocab.txt"
EMBEDDED_MODEL = EMBEDDED_DIR / "models" / "demo-minilm-l6-squad.int8.onnx"

DEFAULT_OUTPUT_DIR = Path("runs")


def default_cache_dir() -> Path:
    """--cache-dir > $MLPERF_BERT_CACHE > $XDG_CACHE_HOME/mlperf-bert > ~/.cache/mlperf-bert."""
    env = os.environ.get("MLPERF_BERT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mlperf-bert"
