"""The catalogue (configs/assets.yaml): the real file validates, its facts hold, bad entries are refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from orchestrator.assets.catalogue import MLPERF_INTERFACE, load_catalogue, parse_catalogue
from orchestrator.errors import AssetError
from orchestrator.paths import EMBEDDED_DIR

CATALOGUE = load_catalogue()
SHARED_MODELS = Path("/work/shared/assets/models")

MINIMAL = {
    "name": "x",
    "kind": "vocab",
    "filename": "v.txt",
    "md5": "0" * 32,
}
MODEL = {
    "name": "m",
    "kind": "model",
    "format": "onnx",
    "filename": "m.onnx",
    "sha256": "a" * 64,
    "precision": "fp32",
    "interface": {"inputs": {"input_ids": "int64"}, "outputs": {"output_start_logits": "float32"}},
}


def parse(*entries: dict) -> object:
    return parse_catalogue(yaml.safe_dump({"assets": list(entries)}))


def test_mlperf_models_carry_the_published_md5s_and_reference_accuracy():
    fp32 = CATALOGUE.get("bert-large-onnx-fp32")
    assert fp32.md5 == "819b25b19cd8e59080c10892689750ca"
    assert CATALOGUE.get("bert-large-onnx-int8").md5 == "45f88ffb2915362242703c85c38ec2d4"
    assert CATALOGUE.get("bert-large-pytorch-fp32").md5 == "00fbcbfaebfa20d87ac9885120a6e9b4"
    assert CATALOGUE.get("squad-dev-v1.1").md5 == "3e85deb501d4e538b6bc56f786231552"
    assert CATALOGUE.get("vocab-bert-uncased").md5 == "64800d5d8528ce344256daf115d4965e"
    assert fp32.reference is not None and fp32.reference.f1 == 90.874
    assert fp32.interface is not None and fp32.interface.inputs == MLPERF_INTERFACE.inputs
    assert fp32.interface.outputs == MLPERF_INTERFACE.outputs and fp32.interface.seq_len == 384
    assert CATALOGUE.get("bert-99") is fp32 and CATALOGUE.get("bert-99.9") is fp32


def test_every_downloadable_asset_says_where_its_facts_come_from():
    for asset in CATALOGUE.assets:
        if asset.mirrors:
            assert asset.source, asset.name
            assert all(m.source for m in asset.mirrors), asset.name
            assert all(m.url.startswith("https://") for m in asset.mirrors), asset.name
        if asset.size is None and not asset.synthetic:
            assert "size" in asset.unverified and asset.approx_size, asset.name  # said, not guessed


@pytest.mark.parametrize("name", ["squad-dev-v1.1", "vocab-bert-uncased", "demo-int8"])
def test_embedded_files_match_their_entries(name):
    asset = CATALOGUE.get(name)
    data = (EMBEDDED_DIR / asset.embedded).read_bytes()
    assert len(data) == asset.size
    assert hashlib.sha256(data).hexdigest() == asset.sha256
    if asset.md5:
        assert hashlib.md5(data).hexdigest() == asset.md5


@pytest.mark.skipif(not (SHARED_MODELS / "demo-minilm-l6-squad.fp32.onnx").is_file(), reason="no shared assets")
def test_demo_fp32_entry_matches_the_shared_copy():
    asset = CATALOGUE.get("demo-fp32")
    path = Path(asset.import_hint)
    assert path.stat().st_size == asset.size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == asset.sha256


def test_unknown_keys_are_rejected_at_any_depth():
    with pytest.raises(AssetError, match=r"assets\.0\.colour: unknown key"):
        parse({**MINIMAL, "colour": "red"})
    with pytest.raises(AssetError, match=r"assets\.0\.interface\.seq: unknown key"):
        parse({**MODEL, "interface": {**MODEL["interface"], "seq": 384}})
    with pytest.raises(AssetError, match=r"assets\.0\.mirrors\.0\.mirror: unknown key"):
        parse({**MINIMAL, "mirrors": [{"url": "https://a/b", "mirror": "x"}]})
    with pytest.raises(AssetError, match="unknown key"):
        parse_catalogue(yaml.safe_dump({"assets": [MINIMAL], "extra": 1}))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({**MINIMAL, "md5": None}, "needs an md5 or a sha256"),
        ({**MINIMAL, "md5": "XYZ"}, "md5"),
        ({**MINIMAL, "filename": "a/b.txt"}, "plain file name"),
        ({**MINIMAL, "embedded": "../secrets"}, "without '..'"),
        ({**MINIMAL, "mirrors": [{"url": "ftp://x/y"}]}, "http"),
        ({**MINIMAL, "unverified": ["colour"]}, "unverified names unknown fields"),
        ({**MODEL, "interface": None}, "needs an interface"),
        ({**MODEL, "interface": {"inputs": {"input_ids": "int63"}, "outputs": {}}}, "input_ids"),
        ({**MINIMAL, "vocab": "nope"}, "not in the catalogue"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(entry, message):
    with pytest.raises(AssetError, match=message):
        parse(entry)


def test_names_and_aliases_are_unique():
    with pytest.raises(AssetError, match="used by both"):
        parse(MINIMAL, {**MINIMAL, "name": "y", "aliases": ["x"]})


def test_synthetic_entries_need_no_checksum():
    catalogue = parse({**MODEL, "sha256": None, "synthetic": True})
    assert catalogue.get("m").checksums == {}  # type: ignore[attr-defined]


def test_lookup_errors_list_the_choices():
    with pytest.raises(AssetError, match=r"unknown model 'bert-huge'; choose one of .*bert-large-onnx-fp32"):
        CATALOGUE.get("bert-huge", "model")
    with pytest.raises(AssetError, match="unknown model 'squad-dev-v1.1'") as caught:
        CATALOGUE.get("squad-dev-v1.1", "model")
    assert caught.value.exit_code == 2  # a bad value the user typed, as a bad flag value is


def test_invalid_yaml_and_missing_file_are_asset_errors(tmp_path):
    with pytest.raises(AssetError, match="not valid YAML"):
        parse_catalogue("assets: [", origin="x.yaml")
    with pytest.raises(AssetError, match="does not exist"):
        load_catalogue(tmp_path / "nope.yaml")
