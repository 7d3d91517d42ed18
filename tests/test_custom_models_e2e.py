"""Custom and imported models through the whole run: the path a user takes with their own BERT.

A small BERT-shaped model with random weights (the same generator as the BERT-large speed model) is
made, imported into the asset cache under a name, and run by that name and by path with real LoadGen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from onnx import helper
from typer.testing import CliRunner

from orchestrator.api import run_benchmark
from orchestrator.cli import app
from orchestrator.config import RunConfig
from orchestrator.paths import EMBEDDED_DIR
from orchestrator.run_summary import format_result
from orchestrator.runs import RunRecord
from orchestrator.workflows.accuracy_label import UNCHECKED

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "small-bert.onnx"
    res = CliRunner().invoke(
        app,
        [
            "assets",
            "make-synthetic",
            "--output",
            str(out),
            "--layers",
            "2",
            "--hidden",
            "64",
            "--heads",
            "4",
            "--ffn",
            "128",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_imported_model_runs_by_name(small_bert: Path, tmp_path: Path, session_cache: Path) -> None:
    cache = tmp_path / "cache"
    res = CliRunner().invoke(app, ["assets", "import", str(small_bert), "--as", "my-bert", "--cache-dir", str(cache)])
    assert res.exit_code == 0, res.output
    # the feature cache is shared with the session so the dev set is not preprocessed again
    (session_cache / "features").mkdir(exist_ok=True)
    (cache / "features").symlink_to(session_cache / "features", target_is_directory=True)
    result = run_benchmark(
        RunConfig(
            runner="local",
            model="my-bert",
            mode="performance",
            test_query_count=8,
            output_dir=tmp_path / "runs",
            cache_dir=cache,
        ),
        progress=False,
        stream=False,
    )
    rec = RunRecord.load(result.run_dir)
    assert rec.status == "succeeded" and rec.model.name == "my-bert"
    assert rec.model.sha256 == hashlib.sha256(small_bert.read_bytes()).hexdigest()
    assert result.performance.samples_issued == 8


def test_model_path_is_recorded_as_custom(small_bert: Path, tmp_path: Path, session_cache: Path) -> None:
    result = run_benchmark(
        RunConfig(
            runner="local",
            model_path=small_bert,
            mode="accuracy",
            test_query_count=8,
            output_dir=tmp_path / "runs",
            cache_dir=session_cache,
        ),
        progress=False,
        stream=False,
    )
    rec = result.record
    assert rec.model.name == "custom:small-bert.onnx" and rec.model_meta["reference_f1"] is None
    assert rec.model_meta["precision"] == "fp32" and rec.accuracy_check is None  # read from the file itself
    # random weights answer nonsense, and the report says there is no reference to compare with
    assert result.accuracy.questions_scored == 8 and result.accuracy.passes_bert_99 is None


def test_importing_a_random_model_under_an_mlperf_name_is_refused(small_bert: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["assets", "import", str(small_bert), "--as", "bert-99", "--cache-dir", str(tmp_path / "cache")]
    )
    assert res.exit_code != 0
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # nothing half-imported


def test_an_int8_file_by_path_is_labelled_unchecked(tmp_path: Path, session_cache: Path) -> None:
    """An int8 ONNX file the catalogue does not know (here the embedded demo-int8 with one more metadata
    entry, so its sha256 is new) is an int8 model: without a check beside it the run says so, and a
    submission refuses it; it is not taken for full precision because no catalogue entry names it."""
    model = onnx.load(str(EMBEDDED_DIR / "models" / "demo-minilm-l6-squad.int8.onnx"))
    helper.set_model_props(model, {"note": "a copy"})
    path = tmp_path / "mine.int8.onnx"
    onnx.save(model, str(path))
    result = run_benchmark(
        RunConfig(
            runner="local",
            model_path=path,
            mode="performance",
            test_query_count=8,
            output_dir=tmp_path / "runs",
            cache_dir=session_cache,
        ),
        progress=False,
        stream=False,
    )
    rec = RunRecord.load(result.run_dir)
    assert rec.model.name == "custom:mine.int8.onnx" and rec.model_meta["precision"] == "int8"
    assert rec.accuracy_check == UNCHECKED
    assert "ACCURACY UNCHECKED: this int8 run" in format_result(result)
