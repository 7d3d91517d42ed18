"""The harness: `python -m orchestrator.harness <run_dir>`.

Reads `<run_dir>/harness.json` (HarnessSpec), writes `<run_dir>/user.conf`, builds the QSL, the SUT and
the engine named by `spec.engine_class`, runs LoadGen for each mode (accuracy first, then performance)
into `<run_dir>/accuracy` and `<run_dir>/performance/run_1` (there also the SUT's per-sample latencies,
harness/latencies.py), and always writes `harness_result.json`.

LoadGen's StartTest blocks in C++ and cannot be cancelled, so it runs in a worker thread while the main
thread waits on it: that keeps SIGINT/SIGTERM/SIGHUP and SUT failures observable. When a test has to be
abandoned (a signal, or a failed SUT whose test does not end within a grace period), `run_harness`
writes the result and reports `abandoned`; `main` then ends the process with os._exit, the only way to
leave while LoadGen's threads still run. The logs LoadGen has written so far stay in the run directory.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from pydantic import ValidationError

from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError, MlperfBertError, PreflightError, RunError
from orchestrator.harness.cpu import detect_isa
from orchestrator.harness.engines.engine import Engine, load_engine_class
from orchestrator.harness.engines.ray_pool import RayPoolEngine
from orchestrator.harness.qsl import FeatureArrays, SampleLibrary, check_counts, load_feature_arrays
from orchestrator.harness.settings import (
    USER_CONF_FILE,
    build_test_settings,
    expected_samples,
    set_mode,
    write_user_conf,
)
from orchestrator.harness.spec import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    SPEC_FILE,
    HarnessResult,
    HarnessSpec,
    ModeResult,
)
from orchestrator.harness.sut import BertSUT
from orchestrator.logs import setup_logging
from orchestrator.mlperf import Pass

log = logging.getLogger(__name__)
VERBOSITY_ENV = "MLPERF_BERT_VERBOSITY"

MODE_ORDER: tuple[Pass, ...] = ("accuracy", "performance")
LOG_DIRS: dict[Pass, str] = {"accuracy": "accuracy", "performance": "performance/run_1"}
# After a SUT failure the remaining samples are answered empty; a short test then ends by itself.
FAILURE_GRACE_S = 10.0
_POLL_S = 0.2


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"The run was interrupted by {signal.Signals(signum).name}.")
        self.signum = signum


@dataclass
class Outcome:
    exit_code: int
    result: HarnessResult
    abandoned: bool = False  # LoadGen is still running: the process must end with os._exit


def run_harness(run_dir: Path) -> Outcome:
    """Run everything harness.json asks for; never raises. Meant to own its process (see module doc)."""
    result = HarnessResult(status="failed", versions=base_versions())
    state = _RunState(result)
    try:
        state.run(run_dir)
        result.status = "succeeded"
        code = EXIT_OK
    except Interrupted as exc:
        result.status = "interrupted"
        result.error = str(exc)
        code = EXIT_INTERRUPTED
    except MlperfBertError as exc:
        result.error = str(exc)
        code = EXIT_BAD_INPUT if exc.exit_code == EXIT_BAD_INPUT else EXIT_FAILED
    except Exception as exc:
        log.debug("harness failure", exc_info=True)
        result.error = f"The harness failed: {type(exc).__name__}: {exc}"
        code = EXIT_FAILED
    finally:
        state.restore_signals()
    if result.error:
        log.error("%s", result.error)
    if run_dir.is_dir():
        result.write(run_dir)
    return Outcome(code, result, abandoned=state.loadgen_running)


def base_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        versions["mlperf_loadgen"] = importlib.metadata.version("mlcommons-loadgen")
    except importlib.metadata.PackageNotFoundError:
        versions["mlperf_loadgen"] = "unknown"
    return versions


def build_engine(spec: HarnessSpec) -> Engine:
    """The run's engine: the backend's own in this process, or a pool of Ray actors each owning one."""
    common: dict[str, Any] = {
        "device": target_device(spec.target),
        # The reference SUT runs one sample at a time; fixed-shape engines must compile for that.
        "batch_size": 1 if spec.sut == "reference" else spec.batch_size,
        "threads": spec.threads,
        "execution_provider": spec.execution_provider,
        "options": spec.engine_options,
    }
    if spec.ray is not None:
        return RayPoolEngine(
            spec.ray, engine_class=spec.engine_class, target=spec.target, model_path=spec.model_path, **common
        )
    return load_engine_class(spec.engine_class)(spec.model_path, **common)


def target_device(target: str) -> str:

    known = TARGETS.get(target)
    return known.device if known is not None else target.rsplit("-", 1)[-1]


class _RunState:
    def __init__(self, result: HarnessResult) -> None:
        self.result = result
        self.loadgen_running = False
        self._old_handlers: dict[int, Any] = {}

    # ---- signals -----------------------------------------------------------------------------------
    def install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signals(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    @staticmethod
    def _on_signal(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    # ---- the run -----------------------------------------------------------------------------------
    def run(self, run_dir: Path) -> None:
        self.install_signals()
        spec = read_spec(run_dir)
        modes = [m for m in MODE_ORDER if m in spec.modes]
        if not modes:
            raise ConfigError("harness.json asks for no mode; ask for accuracy and/or performance.")
        if (spec.audit_config is None) != (spec.compliance_test is None):
            raise ConfigError("harness.json sets only one of compliance_test and audit_config; set both or neither.")
        if spec.audit_config is not None and modes != ["performance"]:
            raise ConfigError(
                f"a {spec.compliance_test} compliance run is a performance pass only; ask for mode performance."
            )
        user_conf = write_user_conf(spec, run_dir)
        self.result.user_conf = USER_CONF_FILE
        features = load_feature_arrays(Path(spec.features_path))
        check_counts(spec, features.count)
        engine = build_engine(spec)
        try:
            self.result.versions.update(engine.versions())
            self.result.execution_provider = engine.execution_provider
            self.result.engine_settings = dict(engine.settings())
            self.result.nodes = engine.nodes()
            self.result.engine_settings["isa"] = detect_isa().describe()  # what decides a CPU engine's precision
            check_provider(spec, engine)
            settings = build_test_settings(user_conf, spec.scenario)  # once per process (see settings.py)
            for mode in modes:
                set_mode(settings, mode)
                self.result.modes.append(self.run_mode(spec, engine, features, settings, mode, run_dir))
            check_provider(spec, engine)
        finally:
            # What changed while it ran (the Ray pool: lost actors, the hop's cost), also when the run failed.
            self.result.engine_settings.update(engine.settings())
            if not self.loadgen_running:
                engine.close()
            else:
                engine.abandon()

    def run_mode(
        self,
        spec: HarnessSpec,
        engine: Engine,
        features: FeatureArrays,
        settings: Any,  # mlperf_loadgen.TestSettings, its mode already set
        mode: Pass,
        run_dir: Path,
    ) -> ModeResult:
        import mlperf_loadgen as lg
        from tqdm import tqdm

        log_dir = run_dir.resolve() / LOG_DIRS[mode]  # absolute: a compliance pass changes the cwd
        log_dir.mkdir(parents=True, exist_ok=True)
        log_settings = lg.LogSettings()
        log_settings.log_output.outdir = str(log_dir)
        log_settings.log_output.copy_summary_to_stdout = False
        log_settings.log_output.copy_detail_to_stdout = False
        log_settings.enable_trace = False
        qsl = SampleLibrary.for_mode(features, spec, mode)
        log.info("%s %s: %d QSL samples, %s SUT", spec.scenario, mode, qsl.total_count, spec.sut)
        expected = expected_samples(spec, mode, qsl.total_count)
        bar = tqdm(
            total=expected,
            desc=f"{spec.scenario} {mode}",
            unit="sample",
            file=sys.stderr,
            disable=not spec.progress,
            mininterval=0.5,
        )
        sut = BertSUT(
            engine,
            qsl,
            scenario=spec.scenario,
            kind=spec.sut,
            batch_size=spec.batch_size,
            on_complete=bar.update,
            expected_samples=expected or 1024,
            # Ray actors run on their own cores (or nodes): the driver's worker threads only wait on them.
            pin_workers=spec.ray is None,
        )
        # The batch the SUT really plans with (SingleStream: 1; capped by what the engine was built for).
        self.result.engine_settings["max_batch"] = str(sut.batch_size)
        if sut.worker_cpus:
            self.result.engine_settings["worker_cpus"] = " | ".join(
                ",".join(str(c) for c in sorted(cpus)) for cpus in sut.worker_cpus
            )
        failure: list[BaseException] = []
        # LoadGen applies an audit.config (compliance tests) it finds at the path it is given, "audit.config"
        # in the working directory by default. A normal pass is given no path at all, so no audit.config
        # anywhere can change it; a compliance pass gets its own fresh working directory holding the file.
        audit_path = write_audit_config(spec, run_dir)

        def start_test() -> None:
            try:
                lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, audit_path)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                failure.append(exc)

        qsl_handle = qsl.construct()
        sut_handle = sut.construct()
        started = time.perf_counter()
        thread = threading.Thread(target=start_test, name=f"loadgen-{mode}", daemon=True)
        self.loadgen_running = True
        previous_cwd = os.getcwd()
        try:
            if audit_path:
                os.chdir(Path(audit_path).parent)  # as MLPerf runs it: audit.config in the working directory
            thread.start()
            failed_at: float | None = None
            while thread.is_alive():
                thread.join(_POLL_S)
                if sut.error is not None:
                    failed_at = failed_at or time.monotonic()
                    if time.monotonic() - failed_at > FAILURE_GRACE_S:
                        raise RunError(f"Inference failed during the {mode} run: {sut.error}")
            self.loadgen_running = False
        finally:
            os.chdir(previous_cwd)
            bar.close()
            if not self.loadgen_running:
                sut.close()
                qsl.destroy()
        wall = time.perf_counter() - started
        if failure:
            raise RunError(f"LoadGen failed during the {mode} run: {failure[0]}")
        if sut.error is not None:
            raise RunError(f"Inference failed during the {mode} run: {type(sut.error).__name__}: {sut.error}")
        log.info("%s %s: %d samples in %.2f s", spec.scenario, mode, sut.samples_issued, wall)
        if mode == "performance":  # the report's latency distribution (LoadGen's trace is off)
            sut.latencies.save(log_dir)
        return ModeResult(
            mode=mode, log_dir=LOG_DIRS[mode], samples_issued=sut.samples_issued, wall_seconds=round(wall, 3)
        )


AUDIT_DIR = "audit"  # the compliance pass's working directory, inside its own run directory
AUDIT_CONFIG_FILE = "audit.config"


def write_audit_config(spec: HarnessSpec, run_dir: Path) -> str:
    """The audit.config path to hand LoadGen: "" (none) for a normal pass; for a compliance pass the file,
    written into a fresh working directory of this run's own, where no later run looks."""
    if spec.audit_config is None:
        return ""
    workdir = run_dir.resolve() / AUDIT_DIR
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / AUDIT_CONFIG_FILE
    path.write_text(spec.audit_config)
    log.info("%s: LoadGen runs in %s with its audit.config", spec.compliance_test, workdir)
    return str(path)


def read_spec(run_dir: Path) -> HarnessSpec:
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; the runner must write the harness spec before starting the harness.")
    try:
        return HarnessSpec.read(run_dir)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise ConfigError(
            f"{path} is not a valid harness spec ({where}: {first['msg']}); rewrite it with the runner."
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); rewrite it with the runner.") from exc


def check_provider(spec: HarnessSpec, engine: Engine) -> None:
    actual = engine.execution_provider
    if actual != spec.execution_provider:
        raise PreflightError(
            f"The engine runs on {actual}, not on {spec.execution_provider} as target {spec.target} requires; "
            "fix the drivers or the engine build instead of accepting a fallback."
        )


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m orchestrator.harness", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run directory holding harness.json")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    args = parser.parse_args(argv)
    # Runners pass the orchestrator's verbosity through the environment (the same for a container).
    inherited = int(os.environ.get(VERBOSITY_ENV, "0") or 0)
    setup_logging(-1 if args.quiet else (args.verbose or inherited))
    if not args.run_dir.is_dir():
        log.error("The run directory %s does not exist; the runner must create it first.", args.run_dir)
        return EXIT_BAD_INPUT
    outcome = run_harness(args.run_dir)
    if outcome.abandoned:
        # LoadGen cannot be stopped and its threads still call into Python: leave without unwinding.
        logging.shutdown()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(outcome.exit_code)
    return outcome.exit_code
