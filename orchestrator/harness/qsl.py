"""The query sample library: the features .npz in memory, and LoadGen's load/unload callbacks.

The arrays stay in memory for the whole run (10,833 x 384 small integers is a few MB); LoadGen's
"load" only builds per-sample views, so loading costs nothing and a query never touches the disk.
QSL index i is feature i.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from orchestrator.errors import ConfigError, DatasetError
from orchestrator.features_file import MODEL_INPUTS, read_npz
from orchestrator.harness.spec import HarnessSpec
from orchestrator.mlperf import DATASET_SIZE, SEQ_LEN, Pass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureArrays:
    """The model inputs of every feature, as stored (small integer dtypes), [N, 384] and seq_len [N]."""

    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    seq_len: np.ndarray

    @property
    def count(self) -> int:
        return int(self.input_ids.shape[0])


class Sample(NamedTuple):
    """Views of one feature's rows (full 384 columns, zero-padded after seq_len)."""

    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    seq_len: int


def load_feature_arrays(path: Path) -> FeatureArrays:
    """Read and check the model inputs from a features .npz; DatasetError names what is wrong."""
    arrays = read_npz(path, MODEL_INPUTS)
    _check_arrays(path, arrays)
    return FeatureArrays(**arrays)


def _check_arrays(path: Path, a: dict[str, np.ndarray]) -> None:
    def bad(what: str) -> DatasetError:
        return DatasetError(f"The features file {path} is malformed: {what}; rebuild it with the dataset step.")

    ids = a["input_ids"]
    if ids.ndim != 2 or ids.shape[1] != SEQ_LEN or ids.shape[0] == 0:
        raise bad(f"input_ids has shape {ids.shape}, expected [N, {SEQ_LEN}] with N > 0")
    for key in ("input_ids", "input_mask", "segment_ids", "seq_len"):
        if not np.issubdtype(a[key].dtype, np.integer):
            raise bad(f"{key} has dtype {a[key].dtype}, expected an integer type")
    for key in ("input_mask", "segment_ids"):
        if a[key].shape != ids.shape:
            raise bad(f"{key} has shape {a[key].shape}, expected {ids.shape}")
    seq_len = a["seq_len"]
    if seq_len.shape != (ids.shape[0],):
        raise bad(f"seq_len has shape {seq_len.shape}, expected ({ids.shape[0]},)")
    if seq_len.min() < 1 or seq_len.max() > SEQ_LEN:
        raise bad(f"seq_len ranges over [{seq_len.min()}, {seq_len.max()}], expected [1, {SEQ_LEN}]")
    # The SUT cuts rows to their real length, so the mask must be seq_len ones followed by zeros.
    mask = a["input_mask"]
    real = np.arange(SEQ_LEN)[None, :] < seq_len[:, None]
    if not np.array_equal(mask != 0, real):
        row = int(np.argmax(np.any((mask != 0) != real, axis=1)))
        raise bad(f"input_mask of feature {row} is not seq_len={int(seq_len[row])} ones followed by zeros")


def accuracy_sample_count(spec: HarnessSpec, feature_count: int) -> int:
    """Test mode scores the first test_query_count features, valid mode all of them."""
    if spec.execution_mode == "valid":
        return feature_count
    return spec.test_query_count


def check_counts(spec: HarnessSpec, feature_count: int) -> None:
    if spec.execution_mode == "test" and spec.test_query_count > feature_count:
        raise ConfigError(
            f"test_query_count {spec.test_query_count} is larger than the {feature_count} features in "
            f"{spec.features_path}; use at most {feature_count}."
        )
    if spec.execution_mode == "valid" and feature_count != DATASET_SIZE:
        log.warning("valid mode with %d features (MLPerf expects %d)", feature_count, DATASET_SIZE)


class SampleLibrary:
    """The QSL for one LoadGen test: `total_count` features (the first ones), `performance_count` of them
    resident at a time in performance mode."""

    def __init__(self, features: FeatureArrays, total_count: int, performance_count: int) -> None:
        if not 1 <= total_count <= features.count:
            raise ValueError(f"total_count {total_count} outside [1, {features.count}]")
        self.features = features
        self.total_count = total_count
        self.performance_count = min(performance_count, total_count)
        self._loaded: dict[int, Sample] = {}
        self._handle: object | None = None

    @classmethod
    def for_mode(cls, features: FeatureArrays, spec: HarnessSpec, mode: Pass) -> SampleLibrary:
        if mode == "accuracy":
            count = accuracy_sample_count(spec, features.count)
            return cls(features, count, count)
        if spec.audit_config is not None and spec.execution_mode == "test":
            # A test-mode accuracy run covered only the first test_query_count features; its compliance pass
            # draws from the same ones, so the responses it logs can be compared (a valid run uses them all).
            return cls(features, accuracy_sample_count(spec, features.count), DATASET_SIZE)
        return cls(features, features.count, DATASET_SIZE)

    def load_samples(self, indices: list[int]) -> None:
        f = self.features
        for i in indices:
            self._loaded[i] = Sample(f.input_ids[i], f.input_mask[i], f.segment_ids[i], int(f.seq_len[i]))

    def unload_samples(self, indices: list[int]) -> None:
        for i in indices:
            self._loaded.pop(i, None)

    def sample(self, index: int) -> Sample:
        return self._loaded[index]

    @property
    def loaded_count(self) -> int:
        return len(self._loaded)

    def construct(self) -> object:
        """Register with LoadGen; pair with destroy()."""
        import mlperf_loadgen as lg

        self._handle = lg.ConstructQSL(self.total_count, self.performance_count, self.load_samples, self.unload_samples)
        return self._handle

    def destroy(self) -> None:
        import mlperf_loadgen as lg

        if self._handle is not None:
            lg.DestroyQSL(self._handle)
            self._handle = None
        self._loaded.clear()
