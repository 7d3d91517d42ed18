"""MLPerf BERT's vocabulary: the scenario, mode and SUT-kind types and the benchmark's constants.

Declared once here and imported everywhere (host code and the harness alike: this module imports
nothing but the standard library). The enums are StrEnums, so `f"{Scenario.Offline}"` is "Offline",
they compare equal to their plain strings, and pydantic reads and writes them as those strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal


class Scenario(StrEnum):
    Offline = "Offline"
    SingleStream = "SingleStream"
    MultiStream = "MultiStream"
    Server = "Server"

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """A scenario name in any letter case (`offline`, `SINGLESTREAM`)."""
        for s in cls:
            if s.value.lower() == text.lower():
                return s
        raise ValueError(f"unknown scenario {text!r}; choose one of {', '.join(cls)}")


class Mode(StrEnum):
    """What a run does: an accuracy pass, a performance pass, or both (accuracy first)."""

    accuracy = "accuracy"
    performance = "performance"
    both = "both"

    def modes(self) -> list[Pass]:
        return ["accuracy", "performance"] if self is Mode.both else [self.value]  # type: ignore[list-item]


# One LoadGen pass: LoadGen's AccuracyOnly or PerformanceOnly test mode.
Pass = Literal["accuracy", "performance"]


class ExecutionMode(StrEnum):
    test = "test"  # a short run: labelled a test-mode result everywhere
    valid = "valid"  # full MLPerf rules (>= 600 s, all samples)


class SutKind(StrEnum):
    optimized = "optimized"  # length-sorted batches cut to the longest real row
    reference = "reference"  # the MLPerf reference behaviour: batch 1, padded to SEQ_LEN


# What a target runs: an ONNX file, or a PyTorch (Hugging Face) checkpoint directory.
ModelFormat = Literal["onnx", "pytorch"]

MODEL_NAME: Final = "bert"  # LoadGen's built-in bert rules (mlperf.conf) are keyed on "bert"
SEQ_LEN: Final = 384  # MLPerf's max_seq_length: every feature row has this many columns
DOC_STRIDE: Final = 128
MAX_QUERY_LEN: Final = 64
DEV_QUESTIONS: Final = 10_570  # questions in the SQuAD v1.1 dev set
DATASET_SIZE: Final = 10_833  # its features = the QSL size = bert's performance sample count
PERFORMANCE_SAMPLE_COUNT: Final = DATASET_SIZE
MIN_DURATION_S: Final = 600.0
SERVER_TARGET_LATENCY_MS: Final = 130.0
REFERENCE_F1: Final = 90.874  # MLPerf's BERT-large fp32 on the full dev set
