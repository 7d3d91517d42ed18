"""Where each file of a submission lives, for the v6.x layout and the older v5.x one.

v6.x:  <division>/<submitter>/{src/, systems/<sys>.json, results/<sys>/<model>/<Scenario>/{measurements.json,
       user.conf, README.md, performance/run_1/, accuracy/}}
v5.x:  <division>/<submitter>/{code/<model>/<impl>/, systems/<sys>.json,
       measurements/<sys>/<model>/<Scenario>/{<sys>_<impl>_<Scenario>.json, user.conf, README.md},
       results/<sys>/<model>/<Scenario>/{performance/run_1/, accuracy/}}
(The v5.x checker derives <impl> from the measurements file name and looks for code/<model>/<impl>.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.submission.rules import MEASUREMENTS_JSON, is_v6


@dataclass(frozen=True)
class Layout:
    root: Path  # the submission root, holding <division>/
    division: str
    submitter: str
    version: str

    @property
    def v6(self) -> bool:
        return is_v6(self.version)

    @property
    def submitter_dir(self) -> Path:
        return self.root / self.division / self.submitter

    @property
    def source_dir_name(self) -> str:
        return "src" if self.v6 else "code"

    def source_dir(self, model: str, impl: str) -> Path:
        base = self.submitter_dir / self.source_dir_name
        return base / "mlperf-bert" if self.v6 else base / model / impl

    def system_json(self, system: str) -> Path:
        return self.submitter_dir / "systems" / f"{system}.json"

    def model_mapping(self) -> Path:
        return self.submitter_dir / "model_mapping.json"

    def result_dir(self, system: str, model: str, scenario: str) -> Path:
        return self.submitter_dir / "results" / system / model / scenario

    def measurements_dir(self, system: str, model: str, scenario: str) -> Path:
        if self.v6:
            return self.result_dir(system, model, scenario)
        return self.submitter_dir / "measurements" / system / model / scenario

    def measurements_json(self, system: str, model: str, scenario: str, impl: str) -> Path:
        name = MEASUREMENTS_JSON if self.v6 else f"{system}_{impl}_{scenario}.json"
        return self.measurements_dir(system, model, scenario) / name

    def performance_dir(self, system: str, model: str, scenario: str) -> Path:
        return self.result_dir(system, model, scenario) / "performance" / "run_1"

    def accuracy_dir(self, system: str, model: str, scenario: str) -> Path:
        return self.result_dir(system, model, scenario) / "accuracy"

    def compliance_dir(self, system: str, model: str, scenario: str, test: str) -> Path:
        if self.v6:
            return self.result_dir(system, model, scenario) / test
        return self.submitter_dir / "compliance" / system / model / scenario / test
