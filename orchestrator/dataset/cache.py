"""Features cached as a plain .npz, keyed by everything that determines them.

The file name carries a hash of the dataset bytes, the vocab bytes, the parameters, the tokenizers
version and FEATURES_FORMAT_VERSION, so a changed input gets a new file and a stale one is never
read. Files are written to a temporary name in the same directory, fsynced, then renamed: a crash
leaves either no file or a complete one, and concurrent builders each rename a complete file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers

from orchestrator.dataset.features import Features, check_parameters, convert_examples_to_features
from orchestrator.dataset.squad import parse_examples
from orchestrator.dataset.tokenizer import BertUncasedTokenizer
from orchestrator.dataset.vocab import parse_vocab
from orchestrator.errors import DatasetError
from orchestrator.features_file import ARRAYS, META, read_npz, unusable
from orchestrator.mlperf import DOC_STRIDE, MAX_QUERY_LEN, SEQ_LEN

logger = logging.getLogger(__name__)

# Bump whenever the content or layout of the features changes, so old cache files are not reused.
FEATURES_FORMAT_VERSION = 1


def build_features(
    dataset: Path,
    vocab: Path,
    cache_dir: Path,
    *,
    max_seq_length: int = SEQ_LEN,
    doc_stride: int = DOC_STRIDE,
    max_query_length: int = MAX_QUERY_LEN,
) -> Path:
    """Return the cached features file for these inputs, building it first if needed."""
    check_parameters(max_seq_length, doc_stride, max_query_length)
    dataset, vocab, cache_dir = Path(dataset), Path(vocab), Path(cache_dir)
    dataset_bytes = _read(dataset, "SQuAD file")
    vocab_bytes = _read(vocab, "Vocabulary")
    parameters = {
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "max_query_length": max_query_length,
        "do_lower_case": True,
    }
    key_fields = {
        "format_version": FEATURES_FORMAT_VERSION,
        "parameters": parameters,
        "dataset_sha256": hashlib.sha256(dataset_bytes).hexdigest(),
        "vocab_sha256": hashlib.sha256(vocab_bytes).hexdigest(),
        "tokenizers_version": tokenizers.__version__,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()
    path = cache_dir / f"squad-features-{key[:24]}.npz"

    if path.exists():
        try:
            load_features(path)
            logger.info("Using cached features %s", path)
            return path
        except DatasetError as exc:
            logger.warning("Rebuilding the features cache: %s", exc)

    started = time.perf_counter()
    examples = parse_examples(dataset_bytes, dataset)
    tokenizer = BertUncasedTokenizer(parse_vocab(vocab_bytes, vocab))
    features = convert_examples_to_features(
        examples,
        tokenizer,
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
    )
    meta = {
        **key_fields,
        "dataset_name": dataset.name,
        "vocab_name": vocab.name,
        "num_examples": len(examples),
        "num_features": len(features),
    }
    _write_atomically(path, features, meta)
    logger.info(
        "Built %d features from %d questions in %.1f s: %s",
        len(features),
        len(examples),
        time.perf_counter() - started,
        path,
    )
    return path


def load_features(path: Path) -> Features:
    """Load a features file written by build_features; raise DatasetError if it is not one."""
    path = Path(path)

    def invalid(what: str) -> DatasetError:
        return unusable(path, what)

    loaded = read_npz(path, [*ARRAYS, META])
    arrays = {name: loaded[name] for name in ARRAYS}
    meta_array = loaded[META]

    if meta_array.shape != () or meta_array.dtype.kind != "U":
        raise invalid("meta is not a JSON string")
    try:
        meta = json.loads(str(meta_array))
    except json.JSONDecodeError:
        raise invalid("meta is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FEATURES_FORMAT_VERSION:
        raise invalid(f"format version is not {FEATURES_FORMAT_VERSION}")

    n = meta.get("num_features")
    width = meta.get("parameters", {}).get("max_seq_length")
    for name, (dtype, rank) in ARRAYS.items():
        array = arrays[name]
        expected = (n, width) if rank == 2 else (n,)
        if array.dtype != dtype or array.shape != expected:
            raise invalid(f"{name} is {array.dtype} {list(array.shape)}, expected {dtype} {list(expected)}")
    return Features(**arrays, meta=meta)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{what} {path} does not exist; check the path.") from None
    except OSError as exc:
        raise DatasetError(f"{what} {path} cannot be read ({exc.strerror}); check its permissions.") from exc


def _write_atomically(path: Path, features: Features, meta: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"Cache directory {path.parent} cannot be created ({exc.strerror}); pass a writable --cache-dir."
        ) from exc
    arrays = {name: getattr(features, name) for name in ARRAYS}
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    tmp = Path(tmp_name)
    renamed = False
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        renamed = True
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    finally:
        if not renamed:  # any failure, Ctrl-C included: never leave a partial file behind
            tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _unwritable(path: Path, exc: OSError) -> DatasetError:
    return DatasetError(
        f"Features file {path} cannot be written ({exc.strerror}); free some disk space or pass another --cache-dir."
    )


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened for this.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
