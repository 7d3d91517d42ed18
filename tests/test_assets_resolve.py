"""Resolving what a run uses; importing, listing and verifying the cache (library and CLI)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import paths
from orchestrator.assets import hashing
from orchestrator.assets.catalogue import load_catalogue
from orchestrator.assets.resolve import resolve_dataset, resolve_model, resolve_vocab
from orchestrator.assets.store import import_file, read_stamp
from orchestrator.assets.synthetic import BertShape, write_synthetic_bert
from orchestrator.commands.assets_cmd import app
from orchestrator.errors import AssetError, DatasetError, ModelError

CATALOGUE = load_catalogue()
EMBEDDED = paths.EMBEDDED_DIR
TINY = BertShape(layers=2, hidden=64, heads=4, ffn=128)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_synthetic_bert(tmp_path_factory.mktemp("m") / "tiny.onnx", TINY, seed=3)


@pytest.fixture
def embedded_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of embedded/ (so a test may damage it), used as the embedded directory."""
    copy = tmp_path / "embedded"
    for rel in ("squad/dev-v1.1.json", "vocab/vocab.txt"):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(EMBEDDED / rel, copy / rel)
    monkeypatch.setattr(paths, "EMBEDDED_DIR", copy)
    return copy


def cli(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


# ------------------------------------------------------------------------------------------- resolve


def test_the_default_model_dataset_and_vocab_are_the_embedded_ones(tmp_path):
    model = resolve_model("demo-int8", None, tmp_path)
    assert model.path == EMBEDDED / "models" / "demo-minilm-l6-squad.int8.onnx"
    assert model.sha256 == CATALOGUE.get("demo-int8").sha256 == sha256(model.path)
    assert (model.source, model.demo, model.custom, model.precision) == ("embedded", True, False, "int8")
    assert (model.reference_f1, model.reference_exact_match) == (80.40, 70.39)
    assert model.interface.inputs == {"input_ids": "int64", "input_mask": "int64", "segment_ids": "int64"}
    assert resolve_dataset(None, tmp_path) == EMBEDDED / "squad" / "dev-v1.1.json"
    assert resolve_vocab(None, tmp_path) == EMBEDDED / "vocab" / "vocab.txt"
    assert not (tmp_path / "assets").exists()  # resolving writes nothing for embedded assets


def test_a_missing_asset_says_how_to_get_it(tmp_path):
    with pytest.raises(AssetError) as e:
        resolve_model("bert-99", None, tmp_path)
    assert str(e.value) == (
        "asset bert-large-onnx-fp32 is not in the cache; run `mlperf-bert assets fetch bert-large-onnx-fp32` "
        "(or `mlperf-bert assets import FILE --as bert-large-onnx-fp32` offline)"
    )
    with pytest.raises(AssetError, match="squad-dev-v1.1 is a dataset, not a model"):
        resolve_model("squad-dev-v1.1", None, tmp_path)
    with pytest.raises(AssetError, match="unknown model 'nope'; choose one of"):
        resolve_model("nope", None, tmp_path)


def test_a_missing_asset_without_a_mirror_is_not_sent_to_fetch(tmp_path):
    """`assets fetch demo-fp32` fails ("no download mirror"): the advice is the import that works."""
    with pytest.raises(AssetError) as e:
        resolve_model("demo-fp32", None, tmp_path)
    message = str(e.value)
    assert message.startswith("asset demo-fp32 is not in the cache: demo-fp32 has no download mirror;"), message
    assert "`mlperf-bert assets import FILE --as demo-fp32`" in message and "assets fetch" not in message
    assert "/work/shared/assets/models/demo-minilm-l6-squad.fp32.onnx" in message  # where a copy is
    with pytest.raises(AssetError) as e:
        resolve_model("bert-large-synthetic", None, tmp_path)
    assert "run `mlperf-bert assets make-synthetic`" in str(e.value) and "assets fetch" not in str(e.value)


def test_a_model_path_is_a_custom_model_identified_by_its_sha256(tiny, tmp_path):
    model = resolve_model("demo-int8", tiny, tmp_path)  # --model-path wins over --model
    assert (model.name, model.custom, model.source) == ("custom:tiny.onnx", True, "path")
    assert model.sha256 == sha256(tiny) and model.reference_f1 is None
    with pytest.raises(ModelError, match="does not exist; pass an existing .onnx file to --model-path"):
        resolve_model(None, tmp_path / "nope.onnx", tmp_path)


def test_a_model_path_with_a_catalogue_checksum_is_recognised(tmp_path):
    copy = shutil.copy(EMBEDDED / "models" / "demo-minilm-l6-squad.int8.onnx", tmp_path / "x.onnx")
    model = resolve_model(None, Path(copy), tmp_path)
    assert (model.name, model.custom, model.reference_f1) == ("demo-int8", False, 80.40)


def test_user_paths_for_dataset_and_vocab(tmp_path):
    # The flags a user types (--dataset, --vocab), not the config keys; a folder is called a folder.
    with pytest.raises(DatasetError, match="dev.json does not exist; pass a SQuAD v1.1 JSON file to --dataset$"):
        resolve_dataset(tmp_path / "dev.json", tmp_path)
    with pytest.raises(DatasetError, match="vocab.txt does not exist; pass a BERT vocab.txt to --vocab$"):
        resolve_vocab(tmp_path / "vocab.txt", tmp_path)
    with pytest.raises(DatasetError, match="is a folder; pass a SQuAD v1.1 JSON file"):
        resolve_dataset(tmp_path, tmp_path)
    with pytest.raises(DatasetError, match="is a folder; pass a BERT vocab.txt"):
        resolve_vocab(tmp_path, tmp_path)
    vocab = tmp_path / "v.txt"
    vocab.write_text("[PAD]\n")
    assert resolve_vocab(vocab, tmp_path) == vocab


def test_embedded_files_are_hashed_once_per_version(embedded_copy, tmp_path, monkeypatch):
    calls: list[Path] = []
    real = hashing.file_digests
    monkeypatch.setattr(hashing, "file_digests", lambda p, *a, **k: calls.append(Path(p)) or real(p, *a, **k))
    vocab = embedded_copy / "vocab" / "vocab.txt"
    assert resolve_vocab(None, tmp_path) == vocab
    assert resolve_vocab(None, tmp_path) == vocab
    assert calls == [vocab]
    os.utime(vocab, ns=(1, 1))  # a new version (mtime) of the file is hashed again
    resolve_vocab(None, tmp_path)
    assert calls == [vocab, vocab]


def test_a_corrupt_embedded_file_is_refused(embedded_copy, tmp_path):
    vocab = embedded_copy / "vocab" / "vocab.txt"
    vocab.write_bytes(vocab.read_bytes().replace(b"[UNK]", b"[UNX]"))
    with pytest.raises(
        AssetError, match=r"embedded asset vocab-bert-uncased .* is corrupt .*git checkout -- embedded/vocab/vocab.txt"
    ):
        resolve_vocab(None, tmp_path)


def test_without_embedded_files_the_cache_copy_is_used(embedded_copy, tmp_path):
    shutil.rmtree(embedded_copy)  # e.g. installed from a wheel
    with pytest.raises(AssetError, match="asset vocab-bert-uncased is not in the cache"):
        resolve_vocab(None, tmp_path)
    import_file(EMBEDDED / "vocab" / "vocab.txt", "vocab-bert-uncased", tmp_path, CATALOGUE)
    assert resolve_vocab(None, tmp_path) == tmp_path / "assets" / "vocab-bert-uncased" / "vocab.txt"


def test_a_cached_file_changed_after_verification_is_refused(tiny, tmp_path):
    import_file(tiny, "my-model", tmp_path, CATALOGUE)
    assert resolve_model("my-model", None, tmp_path).sha256 == sha256(tiny)
    cached = tmp_path / "assets" / "my-model" / "tiny.onnx"
    data = bytearray(cached.read_bytes())
    data[-1] ^= 1
    cached.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=r"cached asset my-model .* fails verification .*assets fetch my-model"):
        resolve_model("my-model", None, tmp_path)


# -------------------------------------------------------------------------------------------- import


def test_import_checks_the_catalogue_checksum(tmp_path):
    wrong = tmp_path / "vocab.txt"
    wrong.write_text("[PAD]\n")
    with pytest.raises(AssetError, match=r"is not asset vocab-bert-uncased \(size 6 \(expected 231508\); md5"):
        import_file(wrong, "vocab-bert-uncased", tmp_path / "c", CATALOGUE)
    assert not (tmp_path / "c" / "assets" / "vocab-bert-uncased" / "vocab.txt").exists()


def test_import_by_copy_and_by_link(tmp_path):
    src = tmp_path / "dev.json"
    shutil.copy(EMBEDDED / "squad" / "dev-v1.1.json", src)
    copied = import_file(src, "squad-dev-v1.1", tmp_path / "a", CATALOGUE)
    assert copied.stat().st_ino != src.stat().st_ino and sha256(copied) == CATALOGUE.get("squad-dev-v1.1").sha256
    linked = import_file(src, "squad-dev-v1.1", tmp_path / "b", CATALOGUE, link=True)
    assert linked.stat().st_ino == src.stat().st_ino  # same file system: a hard link
    stamp = read_stamp(linked.parent)
    assert stamp is not None and stamp.placed_as == "hardlink" and stamp.origin == f"import:{src.resolve()}"


def test_importing_a_custom_onnx_model_checks_its_interface(tiny, tmp_path):
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
    )
    save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(AssetError, match=r"does not have the expected model interface: missing inputs 'input_ids'"):
        import_file(tmp_path / "other.onnx", "other", tmp_path / "c", CATALOGUE)
    final = import_file(tiny, "bert-tiny", tmp_path / "c", CATALOGUE)
    model = resolve_model("bert-tiny", None, tmp_path / "c")
    assert (model.path, model.custom, model.sha256) == (final, True, sha256(tiny))


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_import_list_verify_path(tmp_path):
    cache = tmp_path / "cache"
    src = tmp_path / "vocab.txt"
    shutil.copy(EMBEDDED / "vocab" / "vocab.txt", src)
    result = cli("import", str(src), "--as", "vocab-bert-uncased", "--cache-dir", str(cache))
    assert result.exit_code == 0, result.output
    result = cli("list", "--json", "--cache-dir", str(cache))
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["vocab-bert-uncased"]["where"] == "embedded"  # embedded wins when present
    assert rows["bert-large-onnx-fp32"]["where"] == "missing" and rows["demo-int8"]["verified"] == "yes"
    assert "alias bert-99,bert-99.9" in rows["bert-large-onnx-fp32"]["notes"]
    table = cli("list", "--cache-dir", str(cache)).output
    assert "bert-large-synthetic" in table and "`assets make-synthetic`" in table
    result = cli("verify", "--cache-dir", str(cache))
    assert result.exit_code == 0 and "3 asset(s) verified" in result.output  # the embedded ones
    result = cli("path", "demo-int8", "--cache-dir", str(cache))
    assert result.output.strip() == str(EMBEDDED / "models" / "demo-minilm-l6-squad.int8.onnx")


def test_cli_verify_reports_a_corrupt_file_and_keeps_it(tiny, tmp_path):
    cache = tmp_path / "cache"
    assert cli("import", str(tiny), "--as", "tiny", "--cache-dir", str(cache)).exit_code == 0
    cached = cache / "assets" / "tiny" / "tiny.onnx"
    cached.write_bytes(cached.read_bytes()[:-10])
    result = cli("verify", "tiny", "--cache-dir", str(cache))
    assert isinstance(result.exception, AssetError)
    assert "1 asset(s) failed verification (tiny); replace them with `mlperf-bert assets fetch tiny`" in str(
        result.exception
    )
    assert cached.is_file()  # reported, not deleted
    result = cli("verify", "tiny", "--move-aside", "--cache-dir", str(cache))
    assert isinstance(result.exception, AssetError)
    assert not cached.exists() and len(list(cached.parent.glob("tiny.onnx.corrupt-*"))) == 1


def test_cli_make_synthetic_small_model_into_the_cache(tmp_path):
    cache = tmp_path / "cache"
    result = cli(
        "make-synthetic",
        "--as",
        "bert-l2",
        "--layers",
        "2",
        "--hidden",
        "64",
        "--heads",
        "4",
        "--ffn",
        "128",
        "--cache-dir",
        str(cache),
    )
    assert result.exit_code == 0, result.output
    model = resolve_model("bert-l2", None, cache)
    assert model.custom and model.path.name == "bert-l2.onnx" and model.sha256 == sha256(model.path)
    stamp = read_stamp(model.path.parent)
    assert stamp is not None and stamp.placed_as == "generated" and "seed=0" in stamp.origin
    result = cli("make-synthetic", "--layers", "2", "--cache-dir", str(cache))  # bert-large-synthetic
    assert isinstance(result.exception, AssetError) and "must have BERT-large's shape" in str(result.exception)
    result = cli("make-synthetic", "--as", "demo-int8", "--cache-dir", str(cache))
    assert isinstance(result.exception, AssetError) and "real catalogue asset" in str(result.exception)
    result = cli(
        "make-synthetic",
        "--output",
        str(tmp_path / "x.onnx"),
        "--layers",
        "1",
        "--hidden",
        "32",
        "--heads",
        "2",
        "--ffn",
        "64",
    )
    assert result.exit_code == 0 and (tmp_path / "x.onnx").is_file()
    result = cli("make-synthetic", "--output", str(tmp_path / "y.onnx"), "--hidden", "100", "--heads", "16")
    assert result.exit_code != 0 and not (tmp_path / "y.onnx").exists()


def test_cli_fetch_needs_a_name_or_all(tmp_path):
    result = cli("fetch", "--cache-dir", str(tmp_path))
    assert result.exit_code == 2 and "name at least one asset" in result.output
