"""The competition artifacts of one attempt N (SCC'23 list) and summary.csv.

  mlperf_submission_{N}.tar.gz        the submission tree, and nothing else
  mlperf_submission_{N}_summary.json  one record per result
  mlperf_submission_{N}.run           the exact commands that produced it
  mlperf_submission_{N}.tstamps       start and end timestamps of each command
  mlperf_submission_{N}.md            platform and highlights
  summary.csv                         every attempt's results, like the official final report

The tarball is reproducible: sorted members, fixed mtime/owner/mode, gzip header without a time stamp,
member names relative to the tree, no links. Nothing of an earlier attempt is ever overwritten.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import SubmissionError
from orchestrator.submission.findings import CheckReport
from orchestrator.submission.rules import DEMO_MODEL_LABEL, TEST_MODE_LABEL

PREFIX = "mlperf_submission_"
ARTIFACT_SUFFIXES = (".tar.gz", "_summary.json", ".run", ".tstamps", ".md")
ATTEMPT_RE = re.compile(r"^(short|[1-9][0-9]*)$")
# _report.html: the page `submission run` writes beside an attempt (orchestrator/html_report).
ENTRY_RE = re.compile(rf"^{PREFIX}(short|[1-9][0-9]*)(\.tar\.gz|_summary\.json|\.run|\.tstamps|\.md|_report\.html)?$")
SUMMARY_CSV = "summary.csv"
CSV_HEAD = [
    "Attempt",
    "Organization",
    "Availability",
    "Division",
    "SystemType",
    "SystemName",
    "Platform",
    "Model",
    "MlperfModel",
    "Scenario",
    "Result",
    "Accuracy",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "accelerator_model_name",
    "accelerators_per_node",
    "total_accelerators",
    "Location",
    "framework",
    "operating_system",
    "notes",
    "compliance",
    "errors",
    "version",
    "inferred",
    "has_power",
    "Units",
    "weight_data_types",
    "Validity",
]


@dataclass(frozen=True)
class Step:
    """One command behind an attempt, with its timestamps (ISO 8601 UTC)."""

    name: str
    command: str
    started_at: str | None
    finished_at: str | None


def attempt_paths(output_dir: Path, attempt: str) -> dict[str, Path]:
    base = f"{PREFIX}{attempt}"
    paths = {"tree": output_dir / base}
    for suffix in ARTIFACT_SUFFIXES:
        paths[suffix] = output_dir / f"{base}{suffix}"
    return paths


def existing_attempts(output_dir: Path) -> list[str]:
    if not output_dir.is_dir():
        return []
    found = {m.group(1) for p in output_dir.iterdir() if (m := ENTRY_RE.match(p.name))}
    return sorted(found, key=lambda a: (a != "short", int(a) if a.isdigit() else 0))


def check_output_dir(output_dir: Path) -> None:
    """Refuse an output folder that holds anything but earlier attempts and summary.csv."""
    if output_dir.exists() and not output_dir.is_dir():
        raise SubmissionError(f"{output_dir} is a file; pass a folder to --submission-dir")
    if not output_dir.is_dir():
        return
    foreign = sorted(
        p.name
        for p in output_dir.iterdir()
        if not ENTRY_RE.match(p.name) and p.name != SUMMARY_CSV and not p.name.startswith(".tmp-" + PREFIX)
    )
    if foreign:
        raise SubmissionError(
            f"{output_dir} holds things that are not submission attempts ({', '.join(foreign[:5])}); "
            "choose an empty or a new --submission-dir"
        )


def make_output_dir(output_dir: Path) -> list[Path]:
    """Create output_dir and the folders above it that are missing; return those it created, deepest first,
    for remove_made to take away again when the attempt is not made."""
    made: list[Path] = []
    here = output_dir
    while not here.exists() and here != here.parent:
        made.append(here)
        here = here.parent
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        remove_made(made)  # the folders above it made before the one that failed
        raise SubmissionError(
            f"cannot create --submission-dir {output_dir} ({e.strerror or e}); pass a folder that can be created"
        ) from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        remove_made(made)
        raise SubmissionError(f"--submission-dir {output_dir} is not writable; pass a folder you can write to")
    return made


def remove_made(made: list[Path]) -> None:
    """Remove the folders make_output_dir created, those still empty (what an attempt left there stays)."""
    for path in made:
        try:
            path.rmdir()
        except OSError:
            return  # not empty (or gone): nor can any folder above it be removed


def probe_output_dir(output_dir: Path) -> None:
    """check_output_dir, and that the folder can be created and written, leaving nothing behind: what
    `submission run` checks before its first benchmark run."""
    check_output_dir(output_dir)
    remove_made(make_output_dir(output_dir))


def choose_attempt(output_dir: Path, requested: str | None, test_mode: bool) -> str:
    if requested is not None:
        if not ATTEMPT_RE.match(requested):
            raise SubmissionError(f"--attempt {requested!r} must be 'short' or a positive number")
        attempt = requested
    elif test_mode:
        attempt = "short"
    else:
        numbers = [int(a) for a in existing_attempts(output_dir) if a.isdigit()]
        attempt = str(max(numbers, default=0) + 1)
    taken = [p for p in attempt_paths(output_dir, attempt).values() if p.exists() or p.is_symlink()]
    if taken:
        raise SubmissionError(
            f"attempt {attempt} already exists in {output_dir} ({taken[0].name}); earlier attempts are never "
            "overwritten: pass --attempt with a new number or choose another --submission-dir"
        )
    return attempt


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def write_tarball(tree: Path, dest: Path) -> None:
    """tar.gz of the tree's contents (member names like open/<submitter>/...), reproducibly."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
            dirnames.sort()
            here = Path(dirpath)
            for name in sorted(dirnames + filenames):
                path = here / name
                rel = path.relative_to(tree).as_posix()
                if path.is_symlink():
                    raise SubmissionError(f"{path} is a symbolic link; a submission tarball holds plain files only")
                tar.add(path, arcname=rel, recursive=False, filter=_tar_filter)
    with dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())


def summary_records(report: CheckReport, attempt: str, demo: dict[str, bool]) -> list[dict[str, Any]]:
    out = []
    for row in report.results:
        sj = row.system_json
        out.append(
            {
                "attempt": attempt,
                "submitter": row.submitter,
                "division": row.division,
                "system": row.system,
                "system_name": sj.get("system_name", ""),
                "model": row.model,
                "mlperf_model": row.mlperf_model,
                "demo_model": demo.get(row.model, False),
                "scenario": row.scenario,
                "metric": "latency_ms" if row.units.startswith("Latency") else "throughput",
                "result": row.result,
                "units": row.units,
                "accuracy": {"exact_match": row.exact_match, "f1": row.f1, "samples": row.accuracy_samples},
                "framework": sj.get("framework", ""),
                "host_processor": sj.get("host_processor_model_name", ""),
                "accelerator": sj.get("accelerator_model_name", ""),
                "mlperf_version": row.version,
                "validity": "test-mode" if row.test_mode else ("valid" if row.valid else "invalid"),
                "label": TEST_MODE_LABEL if row.test_mode else "",
                "location": row.location,
            }
        )
    return out


def csv_rows(records: list[dict[str, Any]], systems: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for rec in records:
        sj = systems.get(f"{rec['attempt']}/{rec['system']}", {})
        nodes, accels = str(sj.get("number_of_nodes", "")), str(sj.get("accelerators_per_node", ""))
        total = str(int(nodes) * int(accels)) if nodes.isdigit() and accels.isdigit() else ""
        notes = "; ".join(n for n in (sj.get("hw_notes", ""), sj.get("sw_notes", "")) if n)
        acc = rec["accuracy"]
        values = {
            "Attempt": rec["attempt"],
            "Organization": rec["submitter"],
            "Availability": sj.get("status", ""),
            "Division": rec["division"],
            "SystemType": sj.get("system_type", ""),
            "SystemName": rec["system_name"],
            "Platform": rec["system"],
            "Model": rec["model"],
            "MlperfModel": rec["mlperf_model"],
            "Scenario": rec["scenario"],
            "Result": "" if rec["result"] is None else rec["result"],
            "Accuracy": f"F1: {acc['f1']} EM: {acc['exact_match']}" if acc.get("f1") is not None else "",
            "number_of_nodes": nodes,
            "host_processor_model_name": sj.get("host_processor_model_name", ""),
            "host_processors_per_node": sj.get("host_processors_per_node", ""),
            "host_processor_core_count": sj.get("host_processor_core_count", ""),
            "accelerator_model_name": sj.get("accelerator_model_name", ""),
            "accelerators_per_node": accels,
            "total_accelerators": total,
            "Location": rec["location"],
            "framework": rec["framework"],
            "operating_system": sj.get("operating_system", ""),
            "notes": notes,
            "compliance": 0 if rec["division"] == "closed" else 1,
            "errors": 0 if rec["validity"] != "invalid" else 1,
            "version": rec["mlperf_version"],
            "inferred": 0,
            "has_power": False,
            "Units": rec["units"],
            "weight_data_types": rec.get("weight_data_types", ""),
            "Validity": rec["validity"],
        }
        rows.append([str(values[h]) for h in CSV_HEAD])
    return rows


def write_summary_csv(output_dir: Path) -> Path:
    """summary.csv over every attempt in the folder, rebuilt from their _summary.json files."""
    records: list[dict[str, Any]] = []
    systems: dict[str, dict[str, Any]] = {}
    for attempt in existing_attempts(output_dir):
        path = output_dir / f"{PREFIX}{attempt}_summary.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        records += data.get("results", [])
        for sid, sj in (data.get("systems") or {}).items():
            systems[f"{attempt}/{sid}"] = sj
    dest = output_dir / SUMMARY_CSV
    tmp = output_dir / (SUMMARY_CSV + ".tmp")
    try:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_ALL)
            writer.writerow(CSV_HEAD)
            writer.writerows(csv_rows(records, systems))
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)  # only there when the write failed
    return dest


def write_artifacts(
    output_dir: Path,
    attempt: str,
    tree: Path,
    report: CheckReport,
    steps: list[Step],
    systems: dict[str, dict[str, Any]],
    demo: dict[str, bool],
    highlights: list[str],
    weight_types: dict[str, str],
) -> dict[str, Path]:
    paths = attempt_paths(output_dir, attempt)
    write_tarball(tree, paths[".tar.gz"])
    records = summary_records(report, attempt, demo)
    for rec in records:
        rec["weight_data_types"] = weight_types.get(rec["model"], "")
    test_mode = report.verdict == "test-mode"
    summary = {
        "attempt": attempt,
        "verdict": report.verdict,
        "label": TEST_MODE_LABEL if test_mode else "",
        "mlperf_version": report.version,
        "results": records,
        "systems": systems,
        "checker_findings": [str(f) for f in report.findings],
    }
    paths["_summary.json"].write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    run_lines = [f"# Commands that produced {PREFIX}{attempt} (in order)"]
    tstamp_lines = [f"# {PREFIX}{attempt}: step, start (UTC), end (UTC)"]
    for step in steps:
        run_lines += [f"# {step.name}", step.command]
        tstamp_lines.append(f"{step.name}\t{step.started_at or 'unknown'}\t{step.finished_at or 'unknown'}")
    paths[".run"].write_text("\n".join(run_lines) + "\n")
    paths[".tstamps"].write_text("\n".join(tstamp_lines) + "\n")
    paths[".md"].write_text(attempt_markdown(attempt, report, records, systems, demo, highlights))
    written = {k: v for k, v in paths.items() if k != "tree"}
    written[SUMMARY_CSV] = write_summary_csv(output_dir)  # every attempt's rows, this one's included
    return written


def attempt_markdown(
    attempt: str,
    report: CheckReport,
    records: list[dict[str, Any]],
    systems: dict[str, dict[str, Any]],
    demo: dict[str, bool],
    highlights: list[str],
) -> str:
    lines = [f"# MLPerf Inference BERT submission, attempt {attempt}", ""]
    if report.verdict == "test-mode":
        lines += [f"> **{TEST_MODE_LABEL}.** Every result below comes from a shortened run.", ""]
    if any(demo.values()):
        lines += [f"> **{DEMO_MODEL_LABEL}.** Submitted in the open division under a custom model name.", ""]
    lines += [
        f"Checked by `mlperf-bert submission check` as {report.version}: **{report.verdict}**.",
        "",
        "## Platform",
        "",
    ]
    for sid, sj in sorted(systems.items()):
        lines += [
            f"### {sid}",
            "",
            f"- System: {sj.get('system_name', '')} ({sj.get('system_type', '')}, {sj.get('status', '')})",
            (
                f"- Host: {sj.get('host_processors_per_node', '')} x {sj.get('host_processor_model_name', '')}, "
                f"{sj.get('host_processor_core_count', '')} cores, {sj.get('host_memory_capacity', '')} memory"
            ),
            f"- Accelerators: {sj.get('accelerators_per_node', '')} x {sj.get('accelerator_model_name', '')}",
            f"- OS: {sj.get('operating_system', '')}",
            f"- Framework: {sj.get('framework', '')}",
            f"- Software: {sj.get('other_software_stack', '')}",
            "",
        ]
    lines += (
        ["## Highlights", ""]
        + [f"- {h}" for h in highlights]
        + [
            "",
            "## Results",
            "",
            "| System | Model | Scenario | Result | Units | Accuracy (F1 / EM) | Validity |",
            "|---|---|---|---|---|---|---|",
        ]
    )
    for rec in records:
        acc = rec["accuracy"]
        acc_text = f"{acc['f1']:.3f} / {acc['exact_match']:.3f}" if acc.get("f1") is not None else "n/a"
        result = "n/a" if rec["result"] is None else f"{rec['result']:.3f}"
        lines.append(
            f"| {rec['system']} | {rec['model']} ({rec['mlperf_model']}) | {rec['scenario']} | {result} | "
            f"{rec['units']} | {acc_text} | {rec['validity']} |"
        )
    return "\n".join(lines) + "\n"
