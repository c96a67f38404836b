"""The runner -> edge seam: what one edge program is told. The runner writes it and the edge reads it
through this module only, so a field is named in one place and a key nothing writes cannot be read.
Defaults live in the scenario schema; every field here is required (the runner has them all)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from splitbed.devices.catalog import BoardPower


@dataclass(frozen=True)
class PathFacts:
    """Each direction's delay between the edge and the server (a WAN hop's included) and a WAN
    uplink's rate: the truth the oracle plans on and the model's judge predicts with."""
    up_ms: float
    down_ms: float
    wan_up_bps: float | None


@dataclass(frozen=True)
class Workload:
    requests: int
    warmup: int
    deadline_s: float
    interval_s: float
    duration_s: float | None  # None: the plan ends after `requests`

    @classmethod
    def from_scenario(cls, workload: dict) -> Workload:
        """From a resolved scenario's workload (the schema filled its defaults; duration_s is optional)."""
        return cls(**{f.name: workload.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class EdgeConfig:
    server: str
    port: int
    model: str
    dataset: str
    seed: int
    plans: list[dict]  # as validated by the scenario schema, with the runner's name and type (default fixed)
    workload: Workload
    csv: str  # the run's requests.csv, appended to
    trace: dict | None  # the uplink's trace fields (file, format, scale, ...), for the rows' trace rate
    uplink_rate_bps: float | None  # the uplink's fixed rate when it has no trace
    path: PathFacts
    tcp_congestion_control: str | None
    profile: str | None  # the AGLOP profile's JSON file, when a plan needs it
    threads: int
    max_inputs: int
    references: list[int]  # the uncompressed model's top-1 per input (computed by the runner)
    power: BoardPower | None  # None: the device's power is not published; no compute energy
    radio: str | None  # the uplink's radio model (network.radio.RADIOS); None: no radio energy

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> EdgeConfig:
        data = json.loads(Path(path).read_text())
        expected = {f.name for f in fields(cls)}
        if set(data) != expected:
            raise ValueError(f"{path}: edge config keys differ from EdgeConfig's: missing "
                             f"{sorted(expected - set(data))}, unknown {sorted(set(data) - expected)}")
        return cls(**{**data, "workload": Workload(**data["workload"]), "path": PathFacts(**data["path"]),
                      "power": BoardPower(**data["power"]) if data["power"] else None})
