"""What every inference engine provides to the SUT. One module per engine in this package.

The SUT (batching, length grouping, LoadGen responses) is shared; an engine only turns a batch of
int64 [B, S] arrays into float32 start/end logits [B, S]. Engines are imported only inside the harness.
"""

from __future__ import annotations

import contextlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np

from orchestrator.errors import ConfigError, ModelError, PreflightError
from orchestrator.harness.engines.options import (
    EngineOptions,
    parse_engine_options,
    unused_options,
)
from orchestrator.harness.spec import NodeInfo

# The settings() entry where an engine that makes a precision itself names what, beside the precision and
# the calibration data, decides its numbers (a quantization recipe and its parameters): part of the key of
# that precision's accuracy-check record (orchestrator/workflows/accuracy_checks.py).
NUMERICS_SETTING = "numerics"


class Engine(ABC):
    name: str = "engine"
    # The Python packages the engine imports when it starts: the Ray runner checks every worker has them.
    packages: tuple[str, ...] = ()
    # The engine's options (parsed from the spec's strings by parse_engine_options); declared here too so
    # the host can check a run's options before any run directory (check_engine_options).
    options_class: ClassVar[type[EngineOptions]] = EngineOptions

    @classmethod  # noqa: B027 - optional: most engines' options run on any device they are built for
    def check_options(cls, options: EngineOptions, *, device: str, execution_provider: str) -> None:
        """Refuse, with one sentence, options that cannot run on this device or provider (fp16 on a CPU,
        CUDA graphs without CUDA): what the engine checks as it starts, that the host can check first."""

    def __init__(
        self,
        model_path: str,
        *,
        device: str,
        batch_size: int,
        threads: int | None,
        execution_provider: str,
        options: dict[str, str] | None = None,
    ) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self.requested_provider = execution_provider
        self.options = dict(options or {})

    @property
    @abstractmethod
    def execution_provider(self) -> str:
        """The provider/device that really runs the model (checked against the requested one)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Engine package versions to record in the run."""

    def settings(self) -> dict[str, str]:
        """What the engine really runs with (graph, fusions, instances, threads...), recorded in the run so
        that a figure can always be traced to its configuration. Empty when there is nothing to add."""
        return {}

    def seq_buckets(self) -> list[int] | None:
        """Sequence lengths the engine can run (rows are padded up to one); None means any <= 384."""
        return None

    def max_batch(self) -> int | None:
        """Largest batch the engine accepts; None means any."""
        return None

    def shape_costs_first_call(self) -> bool:
        """True when the first call at each new input shape is slow (a per-shape compile, or a model per
        length bucket): the SUT then warms every bucket the dataset's lengths fall into before LoadGen
        times anything, so a short run measures the steady speed, not the compiles."""
        return False

    @contextlib.contextmanager
    def untimed(self) -> Iterator[None]:
        """Calls made inside this block (the SUT's warm-up) are no part of any LoadGen run: an engine that
        counts its calls for run.json (the Ray pool's batches and hop cost) leaves them out."""
        yield

    def nodes(self) -> list[NodeInfo]:
        """The machines the engine runs on when they are not the harness's own (a cluster's nodes, recorded in
        run.json and described in a submission's system); empty for an engine in this process."""
        return []

    @property
    def instance_count(self) -> int:
        """Copies of the model that may run at the same time, one batch each (the SUT runs this many
        workers, passing each its `instance` number); one unless the engine holds several."""
        return 1

    @abstractmethod
    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """int64 [B, S] x3 -> (start_logits, end_logits), float32 [B, S], on engine instance `instance`
        (0 <= instance < instance_count; calls on different instances may run at the same time)."""

    def close(self) -> None:  # noqa: B027 - optional: most engines hold nothing that needs releasing
        """Release the engine's resources."""

    def abandon(self) -> None:  # noqa: B027 - optional: most engines hold nothing that outlives the process
        """The run is abandoned while LoadGen still runs (a signal; the process then ends with os._exit, so
        close() is not called): release what would outlive this process, such as remote workers."""


def load_engine_class(engine_class: str) -> type[Engine]:
    module_name, _, class_name = engine_class.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"engine_class {engine_class!r} is not 'module:Class'; fix the backend registry entry.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PreflightError(
            f"The engine module {module_name} cannot be imported ({exc}); install its engine package or use "
            "the target's container."
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise ConfigError(f"{engine_class} is not an Engine class; fix the backend registry entry.")
    return cls


def check_engine_options(
    engine_class: str, options: Mapping[str, str], *, device: str | None = None, execution_provider: str | None = None
) -> None:
    """The options parsed as the engine will parse them (and, given the device and provider, checked against
    them), so that a misspelt option, a bad value or one the device cannot run fails on the host, before any
    run directory, with the engine's own sentence. Importing an engine module imports numpy only (its engine
    package is imported when the engine starts), so the host may call this."""
    cls = load_engine_class(engine_class)
    parsed = parse_engine_options(cls.options_class, options, cls.name)
    if device is not None and execution_provider is not None:
        cls.check_options(parsed, device=device, execution_provider=execution_provider)


def native_bf16_options(engine_class: str, options: Mapping[str, str]) -> dict[str, str]:
    """{setting: what to do instead} for each option that asks the engine for bf16 arithmetic on the CPU
    (EngineOptions.native_bf16), parsed as the engine parses them."""
    cls = load_engine_class(engine_class)
    return parse_engine_options(cls.options_class, options, cls.name).native_bf16()


def unused_engine_options(engine_class: str, options: Mapping[str, str]) -> dict[str, str]:
    """{each option given that the engine would ignore with the others' values: the sentence refusing it}
    (EngineOptions.unused); an unknown option or a bad value is the parser's ConfigError as usual."""
    cls = load_engine_class(engine_class)
    return unused_options(cls.options_class, options, cls.name)


__all__ = [
    "Engine",
    "ModelError",
    "check_engine_options",
    "load_engine_class",
    "native_bf16_options",
    "unused_engine_options",
]
