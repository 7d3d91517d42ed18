"""Assemble an MLPerf submission tree from run directories made by `mlperf-bert run`.

Everything is decided first (runs paired per scenario, systems described and schema-validated, model
names mapped), then written into a temporary folder that is renamed into place at the end, so a failure
leaves nothing half-written. The tree depends only on the runs and the options: no generation time,
sorted keys, sorted iteration, so generating twice from the same runs gives the same tree.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError, SubmissionError
from orchestrator.run_status import shown_status
from orchestrator.runs import RunRecord
from orchestrator.submission import readme
from orchestrator.submission.accuracy_files import dumps_json, submission_accuracy_txt, truncated_bytes
from orchestrator.submission.layout import Layout
from orchestrator.submission.rules import (
    ACCURACY_LOG,
    ACCURACY_TXT,
    COMPLIANCE_TESTS,
    DEFAULT_VERSION,
    DETAIL_LOG,
    MLPERF_MODELS,
    SUBMITTABLE_DIVISIONS,
    SUMMARY_LOG,
    USER_CONF,
    VERIFY_ACCURACY_TXT,
    VERSIONS,
)
from orchestrator.submission.source import collect_source, write_source
from orchestrator.submission.system import Overrides, System, check_overrides, describe_system, slug
from orchestrator.workflows.accuracy_label import UNCHECKED, check_advice, unchecked_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerateOptions:
    division: str = "open"
    version: str = DEFAULT_VERSION
    benchmark: str = "bert-99"  # the MLPerf model the results count for (bert-99 or bert-99.9)
    model_name: str | None = None  # folder name for a custom (non-MLPerf) model; default from the run
    overrides: Overrides = field(default_factory=Overrides)

    def validate(self) -> None:
        if self.division not in SUBMITTABLE_DIVISIONS:
            raise ConfigError(
                f"--division {self.division!r} is not supported; choose one of {', '.join(SUBMITTABLE_DIVISIONS)}"
            )
        if self.version not in VERSIONS:
            raise ConfigError(f"--mlperf-version {self.version!r} is not known; choose one of {', '.join(VERSIONS)}")
        if self.benchmark not in MLPERF_MODELS:
            raise ConfigError(
                f"--benchmark {self.benchmark!r} is not a BERT benchmark; choose one of {', '.join(MLPERF_MODELS)}"
            )
        check_overrides(self.overrides, self.division)  # --submitter and the --system-config YAML, before any run


@dataclass
class Run:
    dir: Path
    record: RunRecord

    @property
    def name(self) -> str:
        return self.dir.name


@dataclass
class Entry:
    """One result: a scenario of one model on one system, from an accuracy run and a performance run."""

    system: System
    model_dir: str  # folder name under results/<system>/: bert-99 or the custom model name
    benchmark: str  # the MLPerf model it counts for (model_mapping.json target for a custom model)
    custom_model: bool
    scenario: str
    accuracy: Run
    performance: Run
    compliance: dict[str, Run] = field(default_factory=dict)  # test name -> its compliance run

    @property
    def test_mode(self) -> bool:
        return self.accuracy.record.test_mode or self.performance.record.test_mode

    @property
    def demo_model(self) -> bool:
        return bool(self.performance.record.model_meta.get("demo"))

    @property
    def impl(self) -> str:
        return slug(self.performance.record.target)


@dataclass
class Plan:
    layout: Layout
    entries: list[Entry]
    systems: dict[str, System]
    model_mapping: dict[str, str]
    runs: list[Run]

    @property
    def test_mode(self) -> bool:
        return any(e.test_mode for e in self.entries)


_ENDED = {
    "failed": "failed",
    "interrupted": "was interrupted",
    "abandoned": "was abandoned",
    "running": "is still running",
    "unknown": "has not recorded its end",
    "succeeded": "succeeded",
}


def load_runs(run_dirs: list[Path]) -> list[Run]:
    if not run_dirs:
        raise ConfigError("no run directories given; pass one or more directories made by `mlperf-bert run`")
    runs = []
    seen: set[Path] = set()
    for d in run_dirs:
        path = d.resolve()
        if path in seen:
            raise ConfigError(f"run directory {d} is given twice; pass each run once")
        seen.add(path)
        record = RunRecord.load(d)
        if record.status != "succeeded":
            status, why = shown_status(record)  # `running` may be a run whose process is gone: abandoned
            raise SubmissionError(
                f"run {d} {_ENDED[status]}{f' ({why})' if why else ''}; only succeeded runs can be submitted, rerun it"
            )
        if record.accuracy_check == UNCHECKED:
            raise SubmissionError(
                f"run {d} ran {unchecked_precision(record)} with no passing accuracy check; {check_advice(record)} "
                "and rerun it, or submit an fp32 run"
            )
        runs.append(Run(dir=path, record=record))
    return sorted(runs, key=lambda r: r.name)


def is_mlperf_model_name(name: str | None, demo: bool) -> bool:
    """A model of this (run record) name is the MLPerf BERT-large model, not a custom one."""
    return not demo and (name or "").startswith(("bert-large", "mlperf-bert-large"))


def is_mlperf_model(record: RunRecord) -> bool:
    """Only the MLPerf BERT-large model may appear as bert-99 itself; anything else is a custom model."""
    meta = record.model_meta
    if meta.get("demo"):
        return False
    if "mlperf_model" in meta:
        return bool(meta["mlperf_model"])
    return is_mlperf_model_name(record.model.name, False)


def _custom_folder(name: str) -> str:
    if name in MLPERF_MODELS:
        raise ConfigError(
            f"model folder name {name!r} would claim to be the MLPerf model itself; pass another --model-name"
        )
    return name


def custom_model_name(record: RunRecord, options: GenerateOptions) -> str:
    if options.model_name:
        return _custom_folder(slug(options.model_name))
    return _custom_folder(slug(record.model.name or Path(record.model.path).stem))


def check_model(name: str, path: str, demo: bool, options: GenerateOptions) -> None:
    """What plan_submission will say about runs of this model (its run record name and path), said before
    the runs are made: the closed division takes only the MLPerf model, a custom model needs a folder name
    that is not an MLPerf model's."""
    if is_mlperf_model_name(name, demo):
        return
    if options.division != "open":
        raise SubmissionError(
            f"--division {options.division} needs the MLPerf BERT-large model and {name or path} is not it; "
            "pass --division open, or the MLPerf model with --model or --model-path"
        )
    _custom_folder(slug(options.model_name or name or Path(path).stem))


def _sw_notes(run: Run) -> str:
    rec = run.record
    cfg = rec.config
    parts = [f"mlperf-bert target {rec.target}"]
    if rec.execution_provider:
        parts.append(f"execution provider {rec.execution_provider}")
    parts.append(f"{cfg.sut.value} SUT")
    if rec.batch_size_ran:
        parts.append(f"batch size {rec.batch_size_ran}")
    if rec.git_sha:
        parts.append(f"git {rec.git_sha}")
    return ", ".join(parts)


def plan_submission(runs: list[Run], options: GenerateOptions, root: Path) -> Plan:
    """Pair runs per (system, model, scenario), describe and validate every system. Writes nothing."""
    options.validate()
    systems: dict[str, System] = {}
    host_of: dict[str, str] = {}
    slots: dict[tuple[str, str, str], dict[str, list[Run]]] = {}
    mapping: dict[str, str] = {}
    custom: dict[tuple[str, str], bool] = {}
    submitter: str | None = None
    compliance_runs = [r for r in runs if r.record.compliance_test]
    for run in runs:
        rec = run.record
        if rec.compliance_test:
            continue  # placed with the run it verifies, below
        system = describe_system(rec, options.division, options.overrides, _sw_notes(run))
        prev = systems.get(system.id)
        if prev is not None and host_of[system.id] != str(rec.host.get("hostname")):
            raise SubmissionError(
                f"runs from two machines ({host_of[system.id]}, {rec.host.get('hostname')}) map to the same system "
                f"{system.id!r}; generate one submission per machine or pass --hw-name"
            )
        if prev is None:
            system.warn_undetected()
            systems[system.id] = system
            host_of[system.id] = str(rec.host.get("hostname"))
        if submitter is not None and system.description["submitter"] != submitter:
            raise SubmissionError("the runs resolve to different submitters; pass --submitter")
        submitter = system.description["submitter"]
        if is_mlperf_model(rec):
            model_dir = options.benchmark
        else:
            if options.division != "open":
                raise SubmissionError(
                    f"run {run.dir} used {rec.model.name or rec.model.path}, which is not the MLPerf BERT-large model; "
                    "the closed division needs the reference model, so generate with --division open"
                )
            model_dir = custom_model_name(rec, options)
            mapping[model_dir] = options.benchmark
        custom[(system.id, model_dir)] = model_dir not in MLPERF_MODELS
        slot = slots.setdefault((system.id, model_dir, rec.scenario), {"accuracy": [], "performance": []})
        for mode in rec.modes:
            if mode in slot:
                slot[mode].append(run)
    entries = []
    for (sid, model_dir, scenario), slot in sorted(slots.items()):
        for mode in ("accuracy", "performance"):
            got = slot[mode]
            if not got:
                raise SubmissionError(
                    f"no {mode} run for {scenario} on {sid}; add a run with --mode {mode} (or both) to the inputs"
                )
            if len(got) > 1:
                raise SubmissionError(
                    f"{len(got)} {mode} runs for {scenario} on {sid} ({', '.join(r.name for r in got)}); "
                    "pass only the one to submit"
                )
        acc, perf = slot["accuracy"][0], slot["performance"][0]
        if acc.record.model.sha256 != perf.record.model.sha256:
            raise SubmissionError(
                f"the accuracy run {acc.name} and the performance run {perf.name} of {scenario} used different "
                "models; both must come from the same model"
            )
        entry = Entry(systems[sid], model_dir, options.benchmark, custom[(sid, model_dir)], scenario, acc, perf)
        for crun in compliance_runs:
            if Path(crun.record.verified_run or "").resolve() in (acc.dir, perf.dir):
                entry.compliance[str(crun.record.compliance_test)] = crun
        missing = [t for t in COMPLIANCE_TESTS[options.benchmark] if t not in entry.compliance]
        if options.division == "closed" and missing:
            raise SubmissionError(
                f"the closed division needs {', '.join(missing)} for {scenario} on {sid}; run "
                f"`mlperf-bert compliance run --test {missing[0]} {perf.dir}` and add its run directory"
            )
        entries.append(entry)
    placed = {id(r) for e in entries for r in e.compliance.values()}
    for crun in compliance_runs:
        if id(crun) not in placed:
            raise SubmissionError(
                f"compliance run {crun.name} verifies {crun.record.verified_run}, which is not among the inputs; "
                "pass the run it verifies too"
            )
    assert submitter is not None
    layout = Layout(root=root, division=options.division, submitter=submitter, version=options.version)
    return Plan(layout=layout, entries=entries, systems=systems, model_mapping=mapping, runs=runs)


def _measurements(entry: Entry) -> dict[str, str]:
    rec = entry.performance.record
    precision = str(rec.model_meta.get("precision") or "unspecified")
    if entry.demo_model:
        retraining = (
            "yes: a demo model (MiniLM-L6 fine-tuned on SQuAD v1.1), not the MLPerf BERT-large "
            "checkpoint; open division only"
        )
    elif entry.custom_model:
        retraining = "unspecified: a custom model, not the MLPerf BERT-large checkpoint; open division only"
    else:
        retraining = "no"
    transformations = {"int8": "int8 quantization of the fp32 weights", "fp32": "none"}.get(precision, "unspecified")
    return {
        "input_data_types": "int64",
        "retraining": retraining,
        "starting_weights_filename": Path(rec.model.path).name,
        "weight_data_types": precision,
        "weight_transformations": transformations,
        "model_sha256": rec.model.sha256 or "unknown",
    }


def _copy_logs(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = src / name
        if not path.is_file():
            raise SubmissionError(f"{path} is missing; the run did not finish its LoadGen logs, rerun it")
        shutil.copyfile(path, dst / name)


def write_tree(plan: Plan, dest_root: Path) -> None:
    """Write the whole tree under dest_root (the submission root, holding <division>/)."""
    lay = Layout(
        root=dest_root, division=plan.layout.division, submitter=plan.layout.submitter, version=plan.layout.version
    )
    files, note = collect_source([r.record.git_sha for r in plan.runs])
    if lay.v6:
        write_source(lay.source_dir("", ""), files, note)
    else:
        for model_dir, impl in sorted({(e.model_dir, e.impl) for e in plan.entries}):
            write_source(lay.source_dir(model_dir, impl), files, note)
    for sid, system in sorted(plan.systems.items()):
        path = lay.system_json(sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_json(system.description))
    if plan.model_mapping:
        lay.model_mapping().write_text(dumps_json(plan.model_mapping))
    for e in plan.entries:
        sid = e.system.id
        perf_src = e.performance.dir / "performance" / "run_1"
        acc_src = e.accuracy.dir / "accuracy"
        _copy_logs(perf_src, lay.performance_dir(sid, e.model_dir, e.scenario), (SUMMARY_LOG, DETAIL_LOG))
        acc_dst = lay.accuracy_dir(sid, e.model_dir, e.scenario)
        _copy_logs(acc_src, acc_dst, (SUMMARY_LOG, DETAIL_LOG))
        full_log = acc_src / ACCURACY_LOG
        if not full_log.is_file():
            raise SubmissionError(f"{full_log} is missing; the accuracy run did not finish, rerun it")
        (acc_dst / ACCURACY_LOG).write_bytes(truncated_bytes(full_log))
        (acc_dst / ACCURACY_TXT).write_text(
            submission_accuracy_txt(acc_src / ACCURACY_TXT, e.accuracy.record.results, full_log)
        )
        mdir = lay.measurements_dir(sid, e.model_dir, e.scenario)
        mdir.mkdir(parents=True, exist_ok=True)
        user_conf = e.performance.dir / USER_CONF
        if not user_conf.is_file() or not user_conf.read_text().strip():
            raise SubmissionError(f"{user_conf} is missing or empty; the harness writes it, rerun the performance run")
        shutil.copyfile(user_conf, mdir / USER_CONF)
        lay.measurements_json(sid, e.model_dir, e.scenario, e.impl).write_text(dumps_json(_measurements(e)))
        (mdir / "README.md").write_text(readme.scenario_readme(e, lay))
        for test, crun in sorted(e.compliance.items()):
            _copy_compliance(crun.dir / test, lay.compliance_dir(sid, e.model_dir, e.scenario, test))


def _copy_compliance(src: Path, dst: Path) -> None:
    """A compliance run's <test>/ folder (MLPerf's layout already), its accuracy log truncated like the
    results' (the truncation tool does the same for TEST01, tied to the full log by accuracy.txt's hash)."""
    if not (src / VERIFY_ACCURACY_TXT).is_file():
        raise SubmissionError(f"{src} holds no {VERIFY_ACCURACY_TXT}; rerun `mlperf-bert compliance run`")
    shutil.copytree(src, dst)
    log_path = dst / "accuracy" / ACCURACY_LOG
    if log_path.is_file():
        log_path.write_bytes(truncated_bytes(src / "accuracy" / ACCURACY_LOG))
