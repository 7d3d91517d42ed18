"""Bad input to `mlperf-bert assets ...`: one `error:` line and a non-zero exit code, never a traceback, and
nothing left behind (no part file, no empty folder, nothing unusable in the cache)."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path

import pytest
from cli_support import CliResult, invoke

from orchestrator import paths
from orchestrator.assets import derive_checkpoint as derive_module
from orchestrator.assets import download, store, synthetic
from orchestrator.assets.catalogue import load_catalogue
from orchestrator.assets.store import asset_lock, import_file
from orchestrator.assets.synthetic import BertShape, write_synthetic_bert
from orchestrator.errors import AssetError, DatasetError
from orchestrator.paths import EMBEDDED_MODEL

SMALL = ["--layers", "1", "--hidden", "32", "--heads", "2", "--ffn", "16"]
CATALOGUE = load_catalogue()


def refused(result: CliResult, code: int, *fragments: str) -> str:
    """The one `error:` line on stderr (asserting there is exactly one, and no traceback)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def no_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every free-space check sees a full disk."""

    class Usage:
        total, used, free = 1 << 40, 1 << 40, 0

    monkeypatch.setattr(download.shutil, "disk_usage", lambda _path: Usage())
    monkeypatch.setattr(store.shutil, "disk_usage", lambda _path: Usage())


def disk_full(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -------------------------------------------------------------------------------------- the catalogue


def test_a_catalogue_that_is_a_directory_or_binary_is_one_sentence(tmp_path: Path) -> None:
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(256)) * 16)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    for catalogue, what in (
        (tmp_path, "is a directory, not a file"),
        (binary, "is not a YAML text file"),
        (empty, "is empty"),
    ):
        result = invoke(["assets", "--catalogue", catalogue, "list", "--cache-dir", tmp_path / "cache"])
        refused(result, 1, what)
    assert not (tmp_path / "cache").exists()


def test_a_missing_catalogue_gets_advice_that_fits_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    line = refused(invoke(["assets", "--catalogue", "/nonexistent.yaml", "list"]), 1, "does not exist", "--catalogue")
    assert "git" not in line  # a file of the user's own is not restored from git
    monkeypatch.delenv("MLPERF_BERT_CATALOGUE", raising=False)
    monkeypatch.delenv("MLPERF_BERT_CONFIGS", raising=False)
    monkeypatch.setattr(paths, "CONFIGS_DIR", tmp_path / "configs")  # the project's own catalogue is gone
    with pytest.raises(AssetError, match="does not exist; restore configs/assets.yaml from git"):
        load_catalogue()


# -------------------------------------------------------------------------------------- make-synthetic


def test_make_synthetic_output_that_is_a_directory_or_under_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    refused(invoke(["assets", "make-synthetic", *SMALL, "--output", folder]), 2, "is a directory")
    assert everything(tmp_path) == ["folder"]  # no folder.part next to it
    afile = tmp_path / "afile"
    afile.write_text("hi")
    refused(invoke(["assets", "make-synthetic", *SMALL, "--output", afile / "x.onnx"]), 2, "is not a directory")
    assert everything(tmp_path) == ["afile", "folder"]


def test_make_synthetic_negative_seed_is_refused_before_any_folder(tmp_path: Path) -> None:
    refused(invoke(["assets", "make-synthetic", *SMALL, "--seed", "-1", "--output", tmp_path / "rsyn" / "s.onnx"]), 2)
    assert not (tmp_path / "rsyn").exists()
    with pytest.raises(ValueError, match="negative"):
        write_synthetic_bert(tmp_path / "s.onnx", BertShape(layers=1, hidden=32, heads=2, ffn=16), seed=-1)
    assert everything(tmp_path) == []


def test_make_synthetic_refused_for_disk_space_leaves_no_folder(tmp_path: Path, no_space: None) -> None:
    cache = tmp_path / "cache"
    refused(invoke(["assets", "make-synthetic", *SMALL, "--as", "big", "--cache-dir", cache]), 1, "not enough free")
    line = refused(invoke(["assets", "make-synthetic", *SMALL, "--output", tmp_path / "big" / "b.onnx"]), 1)
    assert "--output" in line and "--cache-dir" not in line
    assert everything(tmp_path) == []


def test_make_synthetic_applies_the_import_name_rule(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    refused(invoke(["assets", "make-synthetic", *SMALL, "--as", "Bad Name!", "--cache-dir", cache]), 1, "not valid")
    refused(invoke(["assets", "import", EMBEDDED_MODEL, "--as", "Bad Name!", "--cache-dir", cache]), 1, "not valid")
    assert not cache.exists()


def test_make_synthetic_that_fails_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synthetic.os, "fsync", disk_full)
    cache = tmp_path / "cache"
    refused(invoke(["assets", "make-synthetic", *SMALL, "--as", "tiny", "--cache-dir", cache]), 1, "cannot write")
    refused(invoke(["assets", "make-synthetic", *SMALL, "--output", tmp_path / "out" / "t.onnx"]), 1, "cannot write")
    assert everything(tmp_path) == []  # no part file, no lock, no folder


# ------------------------------------------------------------------------------------ derive-checkpoint


def test_derive_checkpoint_from_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    text = tmp_path / "x.onnx"
    text.write_text("not a model\n")
    out = tmp_path / "out"
    refused(invoke(["assets", "derive-checkpoint", "--onnx", text, "--output", out]), 2, "not a readable ONNX model")
    refused(invoke(["assets", "derive-checkpoint", "--onnx", tmp_path, "--output", out]), 2, "is a directory")
    assert not out.exists()


def test_derive_checkpoint_output_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    refused(invoke(["assets", "derive-checkpoint", "--output", afile]), 2, "is a file")
    refused(invoke(["assets", "derive-checkpoint", "--output", afile / "sub"]), 2, "is not a directory")
    assert afile.read_text() == "keep me" and everything(tmp_path) == ["afile"]


def test_derive_checkpoint_refuses_weights_transformers_would_not_load(tmp_path: Path) -> None:
    """The synthetic model keeps its Linear weights [in, out]: a checkpoint of them would not load."""
    model = write_synthetic_bert(tmp_path / "syn.onnx", BertShape(layers=1, hidden=32, heads=2, ffn=16))
    out = tmp_path / "out"
    refused(invoke(["assets", "derive-checkpoint", "--onnx", model, "--output", out]), 2, "has the shape")
    assert not out.exists()


def test_derive_checkpoint_that_fails_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = derive_module.write_safetensors

    def half_then_full(path: Path, tensors: dict) -> None:  # type: ignore[type-arg]
        real(path, dict(list(tensors.items())[:2]))
        disk_full()

    monkeypatch.setattr(derive_module, "write_safetensors", half_then_full)
    out = tmp_path / "new" / "ckpt"
    refused(invoke(["assets", "derive-checkpoint", "--output", out]), 1, "cannot write the checkpoint")
    assert everything(tmp_path) == []


def test_derive_checkpoint_of_the_embedded_demo_still_works(tmp_path: Path) -> None:
    out = tmp_path / "demo-hf"
    result = invoke(["assets", "derive-checkpoint", "--output", out])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 6


# ------------------------------------------------------------------------------------------------ import


def _squad(path: Path) -> Path:
    context = "The cat sat on the mat."
    qa = {"id": "q1", "question": "Where did the cat sit?", "answers": [{"text": "on the mat", "answer_start": 12}]}
    path.write_text(json.dumps({"version": "1.1", "data": [{"paragraphs": [{"context": context, "qas": [qa]}]}]}))
    return path


def test_import_refuses_a_dataset_the_loader_cannot_read(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    garbage = tmp_path / "garbage.json"
    garbage.write_text("garbage\n")
    not_squad = tmp_path / "list.json"
    not_squad.write_text("[1, 2, 3]")
    for src, what in ((garbage, "is not valid JSON"), (not_squad, "SQuAD v1.1 structure")):
        args = ["assets", "import", src, "--as", "myds", "--kind", "dataset", "--cache-dir", cache]
        refused(invoke(args), 2, what)
    assert not cache.exists()
    good = _squad(tmp_path / "tiny-squad.json")
    result = invoke(["assets", "import", good, "--as", "myds", "--kind", "dataset", "--cache-dir", cache])
    assert result.exit_code == 0 and "imported (verified)" in result.stdout, result.output


def test_import_refuses_a_vocab_the_tokenizer_cannot_load(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    binary = tmp_path / "random.bin"
    binary.write_bytes(bytes(range(128, 256)) * 8)
    specials_missing = tmp_path / "words.txt"
    specials_missing.write_text("the\ncat\n##s\n")
    for src, what in ((binary, "is not valid UTF-8"), (specials_missing, "[PAD], [UNK], [CLS], [SEP]")):
        args = ["assets", "import", src, "--as", "myvocab", "--kind", "vocab", "--cache-dir", cache]
        refused(invoke(args), 2, what)
    assert not cache.exists()
    good = tmp_path / "vocab.txt"
    good.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncat\n")
    final = import_file(good, "myvocab", cache, CATALOGUE, kind="vocab")
    assert final.read_text() == good.read_text()
    with pytest.raises(DatasetError, match="not valid UTF-8"):  # the library refuses too
        import_file(binary, "othervocab", cache, CATALOGUE, kind="vocab")
    assert sorted(p.name for p in (cache / "assets").iterdir()) == ["myvocab"]


def test_an_import_refused_inside_the_lock_leaves_no_folder(tmp_path: Path, no_space: None) -> None:
    cache = tmp_path / "cache"
    good = _squad(tmp_path / "tiny-squad.json")
    with pytest.raises(AssetError, match="not enough free space"):
        import_file(good, "myds", cache, CATALOGUE, kind="dataset")
    assert not cache.exists()


def test_import_refuses_a_file_name_the_cache_uses_itself(tmp_path: Path) -> None:
    stamp_named = _squad(tmp_path / "asset.json")
    with pytest.raises(AssetError, match="a file name the cache uses itself"):
        import_file(stamp_named, "myds", tmp_path / "cache", CATALOGUE, kind="dataset")
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------------------- the lock


def test_a_waiter_whose_lock_file_was_removed_takes_a_new_one(tmp_path: Path) -> None:
    """The first writer gives up (and removes the empty folder with its lock); the waiter still writes."""
    entered = threading.Event()

    def second() -> None:
        entered.set()
        with asset_lock(tmp_path, "x") as directory:
            (directory / "x.bin").write_bytes(b"ok")

    with asset_lock(tmp_path, "x"):
        waiter = threading.Thread(target=second)
        waiter.start()
        entered.wait()
        time.sleep(0.3)  # let it block on the lock
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert sorted(p.name for p in (tmp_path / "assets" / "x").iterdir()) == [".lock", "x.bin"]
