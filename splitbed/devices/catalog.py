"""Device profiles from devices.yaml: cores, clock, memory and published reference latencies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from splitbed.errors import UserError

PROFILES_FILE = Path(__file__).resolve().parent / "devices.yaml"


@dataclass(frozen=True)
class Reference:
    workload: str
    ms: float
    threads: int
    framework: str
    estimate: bool
    source: str
    derived: str | None = None


@dataclass(frozen=True)
class PublishedTable:
    """One runtime's published latencies of many architectures on the device, ms per architecture
    (splitbed/devices/architectures.py names): what the emulation is checked against beyond its fit."""
    framework: str
    threads: int
    source: str
    ms: dict[str, float]


@dataclass(frozen=True)
class Power:
    """The whole board's draw, idle and with every core busy (published measurements)."""
    idle_w: float
    full_w: float
    estimate: bool
    source: str
    derived: str | None = None

    def busy_w(self, threads: int, cores: int) -> float:
        """With `threads` of its `cores` busy: linear between idle and all cores (no per-core steps
        are published for these boards)."""
        return self.idle_w + (self.full_w - self.idle_w) * min(threads, cores) / cores

    def with_threads(self, threads: int, cores: int) -> BoardPower:
        return BoardPower(self.idle_w, self.busy_w(threads, cores))


@dataclass(frozen=True)
class BoardPower:
    """The edge board's draw as a run uses it: idle, and busy with the threads its reference latency
    was measured with (the emulated node's one fast thread stands for them)."""
    idle_w: float
    busy_w: float

    def request_mj(self, busy_ms: float, idle_ms: float) -> float:
        """The board's energy over a request: busy while it computes (head, encode), idle while it
        waits on the link and the server (and until the next request). W x ms = mJ."""
        return self.busy_w * busy_ms + self.idle_w * idle_ms


@dataclass(frozen=True)
class DeviceProfile:
    key: str
    name: str
    cores: int | None
    clock_ghz: float | None
    memory_mb: int | None
    calibrate_on: str | None  # None: unconstrained (a server)
    references: dict[str, Reference]
    power: Power | None = None  # None: its energy is not modelled
    published: PublishedTable | None = None  # None: no cross-model check

    @property
    def constrained(self) -> bool:
        return self.calibrate_on is not None

    @property
    def target(self) -> Reference | None:
        return self.references.get(self.calibrate_on) if self.calibrate_on else None


def load_profiles(path: Path = PROFILES_FILE) -> dict[str, DeviceProfile]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read device profiles: {err}", where=str(path)) from err
    if not isinstance(data, dict):
        raise UserError("expected a mapping of device keys to profiles", where=str(path))
    profiles = {}
    for key, entry in data.items():
        where = f"{path}: {key}"
        try:
            references = {
                workload: Reference(workload, float(r["ms"]), int(r["threads"]), str(r["framework"]),
                                    bool(r["estimate"]), str(r["source"]), r.get("derived"))
                for workload, r in (entry.get("references") or {}).items()
            }
            power = entry.get("power")
            power = Power(float(power["idle_w"]), float(power["full_w"]), bool(power["estimate"]),
                          str(power["source"]), power.get("derived")) if power else None
            table = entry.get("published")
            table = PublishedTable(str(table["framework"]), int(table["threads"]), str(table["source"]),
                                   {str(k): float(v) for k, v in table["ms"].items()}) if table else None
            profile = DeviceProfile(key, str(entry["name"]), entry.get("cores"), entry.get("clock_ghz"),
                                    entry.get("memory_mb"), entry.get("calibrate_on"), references, power, table)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UserError(f"malformed profile ({type(err).__name__}: {err})", where=where,
                            fix="each reference needs ms, threads, framework, estimate, source; "
                                "power needs idle_w, full_w, estimate, source; published needs framework, "
                                "threads, source and ms (architecture: ms)") from err
        if table and not all(0 < v < 1e6 for v in table.ms.values()):
            raise UserError("published: every latency must be between 0 and 1e6 ms", where=where)
        if power and not (0 < power.idle_w <= power.full_w < 1000):
            raise UserError(f"power: idle_w {power.idle_w} and full_w {power.full_w} W", where=where,
                            fix="0 < idle_w <= full_w < 1000")
        if power and (power.estimate and not power.derived or not profile.cores):
            raise UserError("power: an estimate must say how it was derived, and the device must give its cores",
                            where=where)
        if profile.calibrate_on and profile.target is None:
            raise UserError(f"calibrate_on names {profile.calibrate_on!r}, which is not among its references",
                            where=where)
        for ref in references.values():
            if ref.estimate and not ref.derived:
                raise UserError(f"estimated reference {ref.workload} must say how it was derived", where=where)
        profiles[key] = profile
    return profiles


def get_profile(key: str) -> DeviceProfile:
    profiles = load_profiles()
    if key not in profiles:
        raise UserError(f"unknown device {key!r}", fix=f"choose one of: {', '.join(profiles)}")
    return profiles[key]
