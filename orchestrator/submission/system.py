"""The system description (systems/<system>.json): detected from the run, overridable, schema-validated.

Precedence, lowest first: configs/system.defaults.yaml < detected from run.json (host, versions, image,
execution provider; the local machine only when it is the machine that ran) < the user's YAML
(--system-config) < the --submitter / --hw-name flags. Validation against configs/system.schema.json
happens before the caller writes anything.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError, SubmissionError
from orchestrator.paths import CONFIGS_DIR
from orchestrator.runs import RunRecord
from orchestrator.submission.rules import SYSTEM_KEYS

log = logging.getLogger(__name__)

DEFAULTS_FILE = CONFIGS_DIR / "system.defaults.yaml"
SCHEMA_FILE = CONFIGS_DIR / "system.schema.json"


@dataclass(frozen=True)
class Overrides:
    submitter: str | None = None
    hw_name: str | None = None
    system_config: Path | None = None


def slug(text: str) -> str:
    """A folder-safe name: letters, digits, '.', '_' and '-' only (the checker rejects spaces)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return re.sub(r"-{2,}", "-", out) or "system"


def load_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; pass an existing YAML file") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory; pass a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text; pass a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{what} {path} cannot be read ({e.strerror or e}); pass a readable YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML ({e.__class__.__name__}); fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of key: value; it holds {type(data).__name__}")
    for k, v in data.items():
        if isinstance(v, (dict, list)):
            raise ConfigError(
                f"{what} {path} gives {k} a {'mapping' if isinstance(v, dict) else 'list'}; "
                "give every key one plain value (a string)"
            )
    return {str(k): ("" if v is None else str(v)) for k, v in data.items()}


def _same_machine(record: RunRecord) -> bool:
    return record.host.get("hostname") == socket.gethostname()


def _local_cpu_topology() -> tuple[int, int] | None:
    """(sockets, physical cores per socket) from /proc/cpuinfo, when it says."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    phys = core = None
    for line in text.splitlines() + [""]:
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
        elif not line.strip():
            if phys is not None and core is not None:
                sockets.add(phys)
                cores.add((phys, core))
            phys = core = None
    if not sockets:
        return None
    return len(sockets), len(cores) // len(sockets)


def _local_storage() -> dict[str, str]:
    """The size of the root file system. (Its type is left to the user: virtual disks misreport it.)"""
    try:
        return {"host_storage_capacity": f"{shutil.disk_usage('/').total / 1e9:.0f} GB"}
    except OSError:
        return {}


def _local_nvidia_gpus() -> list[dict[str, str]]:
    try:
        res = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in res.stdout.strip().splitlines():
        name, _, mem = line.partition(",")
        gpus.append({"name": name.strip(), "memory": mem.strip()})
    return gpus


def _framework(record: RunRecord) -> str:
    target = TARGETS.get(record.target)
    backend = target.backend if target else record.target
    version = record.versions.get(backend) or record.versions.get(backend.replace("_", "-"))
    provider = record.execution_provider or (target.execution_provider if target else None)
    text = f"{backend} {version}" if version else backend
    return f"{text} ({provider})" if provider else text


def _software_stack(record: RunRecord) -> str:
    parts = []
    for key in sorted(record.versions):
        parts.append(f"{key} {record.versions[key]}")
    if record.image:
        parts.append(f"image {record.image}" + (f"@{record.image_digest}" if record.image_digest else ""))
    return ", ".join(parts) or "unspecified"


def _per_node(values: list[float]) -> tuple[str, bool]:
    """A per-node count for the system description (an integer), and whether every node has it (else the
    smallest)."""
    return str(int(min(values))), len(set(values)) == 1


def _on_other_machines(record: RunRecord) -> bool:
    """The engine ran on nodes other than the harness's machine (a Ray cluster beyond it)."""
    nodes = record.nodes
    return bool(nodes) and not (len(nodes) == 1 and nodes[0].hostname == record.host.get("hostname"))


def _nodes(record: RunRecord) -> dict[str, str]:
    """A Ray run: its nodes (count, CPUs, accelerators per node) from run.json's `nodes`, the ones that hosted
    engine actors. On the harness's machine alone, the host's own detection stands and only the note is added."""
    nodes = record.nodes
    target = TARGETS.get(record.target)
    found = {"number_of_nodes": str(len(nodes))}
    listed = "; ".join(
        f"{n.hostname} ({n.address}) {n.cpus:g} CPUs"
        + (f", {n.accelerators:g} x {n.accelerator_model or 'GPU'}" if n.accelerators else "")
        + (f", {n.isa}" if n.isa else "")
        + f", {n.actors} engine actor{'s' if n.actors != 1 else ''}"
        for n in nodes
    )
    notes = [f"Ray cluster of {len(nodes)} node{'s' if len(nodes) != 1 else ''}: {listed}"]
    if not _on_other_machines(record):
        return {**found, "hw_notes": notes[0]}  # this machine alone: its own detection stands
    found["host_processors_per_node"] = "1"  # not known for the nodes: their CPUs count as one processor
    cores, same_cores = _per_node([n.cpus for n in nodes])
    found["host_processor_core_count"] = cores
    notes.append(
        "host_processor_core_count is the CPUs each node offers to Ray" + ("" if same_cores else " (the smallest)")
    )
    models = sorted({n.cpu_model for n in nodes if n.cpu_model})
    found["host_processor_model_name"] = " / ".join(models) or "unspecified"
    if target and target.gpu:
        accelerators, same_accelerators = _per_node([n.accelerators for n in nodes])
        found["accelerators_per_node"] = accelerators
        if not same_accelerators:
            notes.append("accelerators_per_node is the smallest of the nodes'")
        kinds = sorted({n.accelerator_model for n in nodes if n.accelerator_model})
        found["accelerator_model_name"] = " / ".join(kinds) or f"unspecified {target.gpu.upper()} GPU"
        found["accelerator_memory_capacity"] = "unspecified"  # Ray does not say; run.json's GPUs are the driver's
    found["host_networking"] = "unspecified"  # the nodes' network: Ray carries every batch over it (TCP/IP)
    found["host_networking_topology"] = "unspecified"
    found["host_memory_capacity"] = "unspecified"  # run.json's memory is the harness machine's
    found["hw_notes"] = "; ".join(notes)
    return found


def detect(record: RunRecord) -> dict[str, str]:
    """What run.json (and, when it ran here, this machine) tells about the system."""
    host = record.host
    found: dict[str, str] = {}
    if host.get("cpu_model"):
        found["host_processor_model_name"] = str(host["cpu_model"])
    topology = _local_cpu_topology() if _same_machine(record) else None
    if topology:
        found["host_processors_per_node"] = str(topology[0])
        found["host_processor_core_count"] = str(topology[1])
    elif host.get("cpu_count"):
        found["host_processor_core_count"] = str(host["cpu_count"])
        found["hw_notes"] = f"host_processor_core_count is the number of logical CPUs ({host['cpu_count']})"
    if host.get("memory_gib"):
        found["host_memory_capacity"] = f"{float(host['memory_gib']):g} GiB"
    os_name = record.versions.get("os") or host.get("os")
    if os_name:
        found["operating_system"] = str(os_name)
    if _same_machine(record) and not _on_other_machines(record):
        found.update(_local_storage())
    target = TARGETS.get(record.target)
    gpus = host.get("gpus")
    if not isinstance(gpus, list) and target and target.gpu == "nvidia" and _same_machine(record):
        gpus = _local_nvidia_gpus()
    if target and target.gpu and isinstance(gpus, list) and gpus:
        names = sorted({str(g.get("name", "unknown GPU")) for g in gpus if isinstance(g, dict)})
        mems = sorted({str(g.get("memory") or g.get("memory_gib") or "") for g in gpus if isinstance(g, dict)} - {""})
        found["accelerators_per_node"] = str(len(gpus))
        found["accelerator_model_name"] = " / ".join(names)
        found["accelerator_memory_capacity"] = " / ".join(mems) or "unspecified"
        found["accelerator_host_interconnect"] = "PCIe"
        found["accelerator_memory_configuration"] = "unspecified"
    elif target and target.gpu:
        found["accelerators_per_node"] = "1"
        found["accelerator_model_name"] = f"unspecified {target.gpu.upper()} GPU"
        found["accelerator_memory_capacity"] = "unspecified"
    if record.nodes:
        cluster = _nodes(record)
        if not _on_other_machines(record) and found.get("hw_notes"):  # keep this machine's CPU note too
            cluster["hw_notes"] = f"{found['hw_notes']}; {cluster['hw_notes']}"
        found.update(cluster)
    found["framework"] = _framework(record)
    found["other_software_stack"] = _software_stack(record)
    return found


def hardware_name(record: RunRecord, detected: dict[str, str]) -> str:
    accel = detected.get("accelerator_model_name", "N/A")
    if accel != "N/A" and not accel.startswith("unspecified"):
        return slug(accel)
    return slug(detected.get("host_processor_model_name") or "cpu")


def system_id(hw_name: str, target: str) -> str:
    return f"{slug(hw_name)}-{slug(target)}"


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


# The system keys a flag sets (it wins over the YAML): an invalid value is the flag's to fix. key -> (flag, what
# a valid value is).
FLAG_KEYS = {
    "submitter": (
        "--submitter",
        "a name of letters, digits, '_', '.' and '-' that starts with a letter or digit (it names a folder)",
    ),
}


def _flag_values(overrides: Overrides) -> dict[str, str]:
    """key -> value, for each system key given by a flag."""
    return {"submitter": overrides.submitter} if overrides.submitter is not None else {}


def _flag_error(key: str, value: Any, err: jsonschema.ValidationError) -> str:
    flag, valid = FLAG_KEYS[key]
    return f"{flag} {value!r} is invalid ({err.message}); pass {valid}"


def validate(desc: dict[str, Any], where: str, flag_keys: Collection[str] = ()) -> None:
    """Raise SubmissionError naming the first key that breaks configs/system.schema.json, or the flag to fix
    when a flag gave that key (one of flag_keys, in FLAG_KEYS) its value."""
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(desc), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if key in flag_keys:
            raise SubmissionError(_flag_error(key, desc[key], err))
        raise SubmissionError(
            f"system description for {where} is invalid at {key}: {err.message}; "
            "fix it in your --system-config YAML (see configs/system.schema.json)"
        )


def load_system_config(overrides: Overrides, division: str) -> dict[str, str]:
    """The user's --system-config YAML (empty without one): readable, a mapping of known keys, agreeing with
    --division."""
    if overrides.system_config is None:
        return {}
    user = load_yaml_mapping(overrides.system_config, "system config")
    unknown = sorted(set(user) - set(SYSTEM_KEYS))
    if unknown:
        raise ConfigError(
            f"system config {overrides.system_config} has unknown keys {', '.join(unknown)}; "
            "use the 35 keys listed in configs/system.schema.json"
        )
    if user.get("division") and user["division"] != division:
        raise ConfigError(
            f"system config {overrides.system_config} says division {user['division']!r} but --division is "
            f"{division!r}; remove division from the YAML or pass --division {user['division']}"
        )
    return user


def _key_error(schema: dict[str, Any], key: str, value: str) -> jsonschema.ValidationError | None:
    """The first way value breaks the schema of its key, if any."""
    sub = schema.get("properties", {}).get(key, {})
    return next(iter(jsonschema.Draft202012Validator(sub).iter_errors(value)), None)


def check_overrides(overrides: Overrides, division: str) -> None:
    """Check what the flags and the --system-config YAML say about the system, before any run is read: every
    value given there ends up in the description as given (division and sw_notes aside, which are set or
    extended here), so each is held against its key's schema now, as describe_system would later."""
    schema = load_schema()
    flags = _flag_values(overrides)
    for key, value in flags.items():
        err = _key_error(schema, key, value)
        if err is not None:
            raise SubmissionError(_flag_error(key, value, err))
    user = load_system_config(overrides, division)
    for key, value in user.items():
        if key in flags or key in ("division", "sw_notes"):
            continue
        err = _key_error(schema, key, value)
        if err is not None:
            raise SubmissionError(
                f"system config {overrides.system_config} is invalid at {key}: {err.message}; "
                "fix it in that YAML (see configs/system.schema.json)"
            )


@dataclass(frozen=True)
class System:
    id: str  # the folder and file name: systems/<id>.json, results/<id>/
    description: dict[str, str]
    undetected: tuple[str, ...] = ()  # keys left "unspecified": the user must give them before a real submission

    def warn_undetected(self) -> None:
        """Say once per system (not once per run of it) which keys detection could not fill in."""
        if self.undetected:
            log.warning(
                "system %s: %s not detected; give the real values in a --system-config YAML before a real submission",
                self.id,
                ", ".join(self.undetected),
            )


def describe_system(record: RunRecord, division: str, overrides: Overrides, sw_notes: str) -> System:
    """The validated description of the system a run used."""
    desc: dict[str, str] = load_yaml_mapping(DEFAULTS_FILE, "system defaults file")
    detected = detect(record)
    desc.update(detected)
    user = load_system_config(overrides, division)
    desc.update(user)
    flags = _flag_values(overrides)
    desc.update(flags)
    if overrides.hw_name:
        hw = overrides.hw_name
    elif user.get("system_name"):
        hw = user["system_name"]
    else:
        hw = hardware_name(record, detected)
    sid = system_id(hw, record.target)
    desc["division"] = division
    if "system_name" not in user:
        desc["system_name"] = (
            f"{overrides.hw_name or detected.get('host_processor_model_name') or hw} ({record.target})"
        )
    notes = [n for n in (desc.get("sw_notes", ""), sw_notes) if n]
    desc["sw_notes"] = "; ".join(notes)
    ordered = {k: desc.get(k, "") for k in SYSTEM_KEYS}
    validate(ordered, f"system {sid}", flags)
    undetected = tuple(k for k, v in ordered.items() if v == "unspecified")
    return System(id=sid, description=ordered, undetected=undetected)
