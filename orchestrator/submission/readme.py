"""README.md of each result: what ran, how to reproduce it, and plain labels for test mode and demo models.

Deterministic on purpose: built only from the runs (no generation time), so the tree is reproducible.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from orchestrator.mlperf import DATASET_SIZE
from orchestrator.submission.accuracy_files import parse_accuracy_line
from orchestrator.submission.mllog import read_detail_log, result_metric
from orchestrator.submission.rules import (
    ACCURACY_TXT,
    DEMO_MODEL_LABEL,
    DETAIL_LOG,
    TEST_MODE_LABEL,
)

if TYPE_CHECKING:
    from orchestrator.submission.generate import Entry
    from orchestrator.submission.layout import Layout


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def scenario_readme(e: Entry, lay: Layout) -> str:
    perf, acc = e.performance.record, e.accuracy.record
    perf_log = read_detail_log(e.performance.dir / "performance" / "run_1" / DETAIL_LOG)
    acc_log = read_detail_log(e.accuracy.dir / "accuracy" / DETAIL_LOG)
    value, unit = result_metric(perf_log, e.scenario)
    acc_txt = e.accuracy.dir / "accuracy" / ACCURACY_TXT
    scores = parse_accuracy_line(acc_txt.read_text().splitlines()) if acc_txt.is_file() else None
    if scores is None and isinstance(acc.results.get("accuracy"), dict):
        a = acc.results["accuracy"]
        if isinstance(a.get("exact_match"), (int, float)) and isinstance(a.get("f1"), (int, float)):
            scores = (float(a["exact_match"]), float(a["f1"]))
    samples = acc_log.get("effective_accuracy_sample_count", acc_log.get("qsl_reported_total_count"))
    cfg = perf.config
    lines = [f"# {e.model_dir} {e.scenario} on {e.system.id}", ""]
    if e.test_mode:
        lines += [
            (
                f"> **{TEST_MODE_LABEL}.** The runs were shortened (LoadGen `min_query_count` / "
                "`max_query_count` / `target_qps` in user.conf) and do not meet MLPerf's 600 s minimum "
                "duration or full-dataset accuracy; the official checker accepts this only in the open "
                "division (accuracy with `--skip-dataset-size-check`)."
            ),
            "",
        ]
    if e.demo_model:
        lines += [
            (
                f"> **{DEMO_MODEL_LABEL}.** It is submitted in the open division as the custom model "
                f"`{e.model_dir}`, mapped to `{e.benchmark}` in "
                "model_mapping.json so the results are grouped with BERT; its accuracy is not comparable "
                "with BERT-large."
            ),
            "",
        ]
    elif e.custom_model:
        lines += [
            f"> Custom model `{e.model_dir}` (open division), mapped to `{e.benchmark}` in model_mapping.json.",
            "",
        ]
    lines += [
        "| | |",
        "|---|---|",
        (
            f"| Model | `{perf.model.name or perf.model.path}` ({perf.model_meta.get('precision') or 'precision unspecified'}), "
            f"sha256 `{perf.model.sha256 or 'unknown'}` |"
        ),
        f"| Target | `{perf.target}`, execution provider `{perf.execution_provider or 'unknown'}` |",
        (f"| SUT | {cfg.sut.value}, batch size {perf.batch_size_ran or 'n/a'}, threads {cfg.threads or 'default'} |"),
        f"| Execution mode | {f'test ({cfg.test_query_count} queries)' if e.test_mode else 'valid'} |",
        f"| LoadGen | {perf_log.get('loadgen_version', 'unknown')}, result {perf_log.get('result_validity', 'unknown')} |",
        f"| Performance | {_fmt(value)} {unit} |",
        "| Accuracy | "
        + (f"EM {scores[0]:.3f}, F1 {scores[1]:.3f}" if scores else "n/a")
        + f" over {samples if samples is not None else 'n/a'} of {DATASET_SIZE} samples |",
        f"| Runs | accuracy `{e.accuracy.name}`, performance `{e.performance.name}` |",
        "",
        "## Reproduce",
        "",
        "```",
    ]
    commands = {shlex.join(r.command) for r in (acc, perf) if r.command}
    lines += sorted(commands) or ["(the runs did not record their command)"]
    lines += ["```", ""]
    return "\n".join(lines)
