"""Calibration data for engines that quantize to int8 themselves (static post-training quantization).

MLPerf's rule: calibration data comes from the training set, never dev. `--calibration PATH` names a SQuAD
v1.1 train JSON (.json or .json.gz); its features are built once with the dataset step's own
build_features (cached by content like the dev features), and a fixed seeded subset of CALIBRATION_ROWS
rows is written beside them as a small .npz that the engine reads (its option `calibration_path`; the
Docker runner mounts `*_path` options read-only). Every file is written to a temporary name and renamed,
so nothing half-written stays in the cache.

Also here, because it is decided from the same engine option before any run directory exists: the
bf16 a run asks for (precision=bf16, openvino's int8_float=bf16) needs a CPU with native bf16.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from orchestrator.assets.hashing import cached_sha256
from orchestrator.backends import Target
from orchestrator.config import RUN_FLAGS, RunConfig, RunnerKind
from orchestrator.dataset import build_features, load_features
from orchestrator.errors import ConfigError, first_line
from orchestrator.harness.cpu import bf16_refusal, detect_isa
from orchestrator.harness.engines.engine import native_bf16_options
from orchestrator.harness.engines.options import PRECISION_OPTION
from orchestrator.harness.spec import RAY_LOCAL
from orchestrator.paths import EMBEDDED_DATASET

log = logging.getLogger(__name__)

CALIBRATION_ROWS = 300
CALIBRATION_SEED = 0
CALIBRATION_OPTION = "calibration_path"  # the engine option the features' .npz is passed as
_INPUTS = ("input_ids", "input_mask", "segment_ids")


def requested_precision(config: RunConfig, target: Target) -> str | None:
    """The precision the run's engine options ask for (lower case), or None where the target's engine makes no
    other precision itself."""
    if not target.engine_precisions:
        return None
    return config.engine_options.get(PRECISION_OPTION, "auto").strip().lower() or "auto"


def check_precision(config: RunConfig, target: Target) -> None:
    """An option asking for bf16 arithmetic (precision=bf16; openvino's int8_float=bf16) on a CPU without native
    bf16 fails here, with the engine's one sentence, before any run directory."""
    if target.device != "cpu":
        return
    wanted = native_bf16_options(target.engine_class, config.engine_options)
    if not wanted:
        return
    if config.runner is RunnerKind.ray and config.cluster is None and config.ray_address not in (None, RAY_LOCAL):
        # This host is only the driver: each node's engine checks its own CPU as its actor starts.
        log.info("%s on the Ray cluster at %s: each node checks its own CPU", ", ".join(wanted), config.ray_address)
        return
    isa = detect_isa()
    if isa.known and not isa.bf16:
        setting, remedy = next(iter(wanted.items()))
        raise bf16_refusal(setting, isa, remedy)


def with_calibration(config: RunConfig, target: Target, vocab: Path, cache_dir: Path, dev: Path) -> RunConfig:
    """The config with `calibration_path` among its engine options when the run asks for an int8 that the
    engine calibrates itself; a ConfigError when it does and --calibration is missing, or names a set that
    shares paragraphs with the dev set `dev` the run scores on."""
    flag = RUN_FLAGS["calibration_path"]
    if not target.int8_calibration or requested_precision(config, target) != "int8":
        if config.calibration_path is not None:
            log.info("%s: %s is used only by precision=int8 of a backend that calibrates; ignored", target.key, flag)
        return config
    if CALIBRATION_OPTION in config.engine_options:
        return config  # the features' .npz given directly (e.g. by a test or a --config file)
    missing = missing_calibration(config, target)
    if missing:
        raise ConfigError(missing)
    assert config.calibration_path is not None
    features = calibration_features(config.calibration_path, vocab, cache_dir, dev=dev)
    options = {**config.engine_options, CALIBRATION_OPTION: str(features.resolve())}
    return config.model_copy(update={"engine_options": options})


def missing_calibration(config: RunConfig, target: Target) -> str | None:
    """The sentence that refuses an int8 the engine calibrates itself when no calibration set is given."""
    if not target.int8_calibration or requested_precision(config, target) != "int8":
        return None
    if CALIBRATION_OPTION in config.engine_options or config.calibration_path is not None:
        return None
    return (
        f"{target.key} precision=int8 quantizes the model from calibration data; pass "
        f"{RUN_FLAGS['calibration_path']} PATH, a SQuAD v1.1 train JSON (.json or .json.gz; never the dev set)"
    )


def calibration_features(
    dataset: Path,
    vocab: Path,
    cache_dir: Path,
    *,
    dev: Path | None = None,
    rows: int = CALIBRATION_ROWS,
    seed: int = CALIBRATION_SEED,
) -> Path:
    """<cache>/calibration/<key>.npz: `rows` seeded feature rows of the train set `dataset` (built once).
    A set that shares a paragraph with SQuAD's dev set (the embedded one, and `dev` when it is another) is
    refused: MLPerf calibrates on the training set, never on what is scored."""
    dataset = Path(dataset).expanduser()
    if not dataset.is_file():
        what = "is a folder" if dataset.is_dir() else "does not exist"
        raise ConfigError(
            f"the calibration set {dataset} {what}; pass {RUN_FLAGS['calibration_path']} a SQuAD v1.1 "
            "train JSON (.json or .json.gz)"
        )
    folder = cache_dir / "calibration"
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _calibration_npz(dataset, vocab, cache_dir, folder, dev=dev, rows=rows, seed=seed)
    except BaseException:
        if made and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a refused set leaves the cache as it was
        raise


def _calibration_npz(
    dataset: Path, vocab: Path, cache_dir: Path, folder: Path, *, dev: Path | None, rows: int, seed: int
) -> Path:
    source = _plain_json(dataset, folder)
    for scored in dict.fromkeys([EMBEDDED_DATASET, *([dev] if dev is not None else [])]):
        check_not_dev(source, scored, folder, shown=dataset)
    features_path = build_features(source, vocab, cache_dir / "features")
    digest = hashlib.sha256(f"{features_path.name}:{rows}:{seed}".encode()).hexdigest()[:24]
    out = folder / f"calibration-{digest}.npz"
    if out.is_file():
        return out
    features = load_features(features_path)
    count = int(features.input_ids.shape[0])
    pick = np.sort(np.random.default_rng(seed).choice(count, size=min(rows, count), replace=False))
    arrays = {name: np.asarray(getattr(features, name))[pick] for name in _INPUTS}
    _save_atomically(out, arrays)
    log.info("calibration: %d of %d train features of %s -> %s", len(pick), count, dataset.name, out)
    return out


def check_not_dev(calibration: Path, dev: Path, folder: Path, *, shown: Path | None = None) -> None:
    """A ConfigError when the calibration JSON holds a paragraph (context) of the dev JSON; the verdict for a
    passing pair of files is kept in `folder` (both JSONs are read once, about a second for SQuAD's train)."""
    key = hashlib.sha256(f"{cached_sha256(calibration)}:{cached_sha256(dev)}".encode()).hexdigest()[:24]
    marker = folder / f"not-dev-{key}.ok"
    if marker.is_file():
        return
    shared = _contexts(calibration) & _contexts(dev)
    if shared:
        raise ConfigError(
            f"the calibration set {shown or calibration} shares {len(shared)} paragraphs with the dev set "
            f"{dev.name}; MLPerf calibrates on the training set, never on dev: pass a SQuAD v1.1 train JSON "
            f"to {RUN_FLAGS['calibration_path']}"
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{marker.name}.", dir=folder)
    os.close(fd)
    os.replace(tmp, marker)


def _contexts(path: Path) -> set[str]:
    """The sha256 of every paragraph's context in a SQuAD JSON (the dataset loader checks its form later)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            hashlib.sha256(paragraph["context"].encode()).hexdigest()
            for article in data["data"]
            for paragraph in article["paragraphs"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a SQuAD v1.1 JSON ({type(exc).__name__}: {first_line(exc)[:80]}); pass the "
            "train or dev JSON as it is published"
        ) from None


def _plain_json(dataset: Path, folder: Path) -> Path:
    """`dataset` itself, or for a .gz its decompressed copy in `folder` (named by the archive's sha256)."""
    if dataset.suffix != ".gz":
        return dataset
    data = dataset.read_bytes()
    out = (
        folder
        / f"{dataset.name.removesuffix('.gz').removesuffix('.json')}-{hashlib.sha256(data).hexdigest()[:16]}.json"
    )
    if out.is_file():
        return out
    try:
        plain = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ConfigError(f"the calibration set {dataset} is not a readable .gz ({exc}); pass an intact file") from exc
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(plain)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _save_atomically(out: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".npz", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, input_ids=arrays["input_ids"], input_mask=arrays["input_mask"], segment_ids=arrays["segment_ids"]
            )
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
