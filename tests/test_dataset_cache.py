"""The features cache: keyed by inputs, written atomically, rebuilt when unreadable (dataset.cache)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orchestrator.dataset import FEATURES_FORMAT_VERSION, build_features, load_features
from orchestrator.dataset import cache as cache_module
from orchestrator.errors import DatasetError
from orchestrator.paths import EMBEDDED_VOCAB

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Cats",
            "paragraphs": [
                {
                    "context": "The cat sat on the mat, then slept.",
                    "qas": [
                        {"id": "q1", "question": "Who sat?", "answers": [{"text": "cat", "answer_start": 4}]},
                        {"id": "q2", "question": "What did the cat do?", "answers": [{"text": "slept"}]},
                    ],
                }
            ],
        }
    ],
}


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    return path


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_build_then_hit(dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache_dir = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="orchestrator.dataset.cache"):
        first = build_features(dataset, EMBEDDED_VOCAB, cache_dir)
        stamp = first.stat().st_mtime_ns, first.stat().st_ino
        caplog.clear()
        second = build_features(dataset, EMBEDDED_VOCAB, cache_dir)
    assert second == first
    assert (second.stat().st_mtime_ns, second.stat().st_ino) == stamp  # not rewritten
    assert "Using cached features" in caplog.text
    assert _files(cache_dir) == [first.name]  # no temporary file left behind

    features = load_features(first)
    assert len(features) == 2
    assert features.example_index.tolist() == [0, 1]
    assert features.meta["format_version"] == FEATURES_FORMAT_VERSION
    assert features.meta["num_examples"] == 2 and features.meta["dataset_name"] == "tiny.json"


def test_changed_inputs_get_a_new_file(dataset: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    original = build_features(dataset, EMBEDDED_VOCAB, cache_dir)

    # One byte of the dataset: "sat" -> "sit" in the context.
    data = dataset.read_bytes()
    dataset.write_bytes(data.replace(b"cat sat", b"cat sit", 1))
    changed_dataset = build_features(dataset, EMBEDDED_VOCAB, cache_dir)
    assert changed_dataset != original
    assert load_features(changed_dataset).input_ids[0].tolist() != load_features(original).input_ids[0].tolist()

    # One byte of the vocab (a token nobody uses here): another file again.
    vocab = tmp_path / "vocab.txt"
    vocab.write_bytes(EMBEDDED_VOCAB.read_bytes().replace(b"[unused0]", b"[unused!]", 1))
    changed_vocab = build_features(dataset, vocab, cache_dir)
    assert changed_vocab not in (original, changed_dataset)

    # A parameter.
    changed_stride = build_features(dataset, EMBEDDED_VOCAB, cache_dir, doc_stride=64)
    assert changed_stride not in (original, changed_dataset, changed_vocab)
    assert load_features(changed_stride).meta["parameters"]["doc_stride"] == 64

    # Restoring the dataset finds the first file again.
    dataset.write_bytes(data)
    assert build_features(dataset, EMBEDDED_VOCAB, cache_dir) == original
    assert len(_files(cache_dir)) == 4


def test_format_version_is_part_of_the_key(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_features(dataset, EMBEDDED_VOCAB, tmp_path)
    monkeypatch.setattr(cache_module, "FEATURES_FORMAT_VERSION", FEATURES_FORMAT_VERSION + 1)
    assert build_features(dataset, EMBEDDED_VOCAB, tmp_path) != first


def test_corrupt_cache_is_rebuilt(dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = build_features(dataset, EMBEDDED_VOCAB, tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # as if truncated
    with caplog.at_level(logging.WARNING, logger="orchestrator.dataset.cache"):
        again = build_features(dataset, EMBEDDED_VOCAB, tmp_path)
    assert again == path
    assert "Rebuilding the features cache" in caplog.text
    assert load_features(path).input_ids.tolist() == _load_input_ids(good, tmp_path)


def _load_input_ids(data: bytes, tmp_path: Path) -> list[list[int]]:
    copy = tmp_path / "copy.npz"
    copy.write_bytes(data)
    return load_features(copy).input_ids.tolist()


def test_failed_write_leaves_nothing(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    real_savez = np.savez

    def savez_then_disk_full(file: Any, *args: Any, **kwargs: Any) -> None:
        real_savez(file, *args, **kwargs)  # a complete write to the temporary file ...
        raise OSError(28, "No space left on device")  # ... then the disk fills up

    monkeypatch.setattr(cache_module.np, "savez", savez_then_disk_full)
    with pytest.raises(DatasetError, match="cannot be written \\(No space left on device\\); free some disk space"):
        build_features(dataset, EMBEDDED_VOCAB, cache_dir)
    assert _files(cache_dir) == []


def test_interrupted_write_leaves_nothing(dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def savez_interrupted(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK\x03\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, "savez", savez_interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_features(dataset, EMBEDDED_VOCAB, tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def test_load_rejects_what_build_did_not_write(tmp_path: Path) -> None:
    missing = tmp_path / "missing.npz"
    with pytest.raises(DatasetError, match="does not exist; build the features first"):
        load_features(missing)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="is not usable \\(cannot be read"):
        load_features(garbage)

    other = tmp_path / "other.npz"
    np.savez(other, input_ids=np.zeros((1, 384), dtype=np.int32))
    with pytest.raises(DatasetError, match="missing input_mask, segment_ids, .*, meta\\)"):
        load_features(other)


def test_load_checks_dtypes_and_pickle(dataset: Path, tmp_path: Path) -> None:
    path = build_features(dataset, EMBEDDED_VOCAB, tmp_path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}

    wrong_dtype = tmp_path / "wrong_dtype.npz"
    np.savez(wrong_dtype, **{**arrays, "input_ids": arrays["input_ids"].astype(np.int64)})
    with pytest.raises(DatasetError, match="input_ids is int64 \\[2, 384\\], expected int32 \\[2, 384\\]"):
        load_features(wrong_dtype)

    with_object = tmp_path / "with_object.npz"  # loading it would need pickle: refused
    np.savez(with_object, **{**arrays, "seq_len": np.array([None, None], dtype=object)})
    with pytest.raises(DatasetError, match="is not usable \\(cannot be read: .*allow_pickle"):
        load_features(with_object)

    old_version = tmp_path / "old_version.npz"
    meta = json.loads(str(arrays["meta"]))
    np.savez(old_version, **{**arrays, "meta": np.array(json.dumps({**meta, "format_version": 0}))})
    with pytest.raises(DatasetError, match=f"format version is not {FEATURES_FORMAT_VERSION}"):
        load_features(old_version)


def test_missing_inputs(tmp_path: Path, dataset: Path) -> None:
    with pytest.raises(DatasetError, match="SQuAD file .* does not exist"):
        build_features(tmp_path / "none.json", EMBEDDED_VOCAB, tmp_path)
    with pytest.raises(DatasetError, match="Vocabulary .* does not exist"):
        build_features(dataset, tmp_path / "none.txt", tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_unwritable_cache_dir(dataset: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "ro"
    cache_dir.mkdir()
    cache_dir.chmod(0o500)
    try:
        with pytest.raises(DatasetError, match="cannot be written .*pass another --cache-dir"):
            build_features(dataset, EMBEDDED_VOCAB, cache_dir)
    finally:
        cache_dir.chmod(0o700)


def test_cache_dir_that_is_a_file(dataset: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("")
    with pytest.raises(DatasetError, match="Cache directory .* cannot be created .*pass a writable --cache-dir"):
        build_features(dataset, EMBEDDED_VOCAB, not_a_dir)
