"""Fit a node's CPU share so that our reference workload runs as long as on the real device.

A node's quota is set by its governor (`governor.py`) from a gain and the canary's current time on
the node's cores, so what is fitted is the gain. Measure the workload unconstrained, run it inside the
node at quota = threads x free / reference while the governor only senses, derive the gain from that
step, then let the governor drive the quota and rescale the gain by measured / reference until within
tolerance. Cached per machine (CPU model and core count) and device; a device faster than this
machine can be made is reported with a warning, never silently capped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from splitbed.devices.catalog import DeviceProfile
from splitbed.devices.cgroups import CgroupManager, NodeGroup, min_cores
from splitbed.devices.child import PipedChild
from splitbed.devices.governor import Governor, node_cpus
from splitbed.errors import UserError
from splitbed.host.cache import cache_root

TOLERANCE = 0.03
MAX_ITERATIONS = 8
HEADROOM = 1.4  # this host's cores slow down by up to ~1.4x within seconds (benchmarks/devices.py --host-noise)
CAPPED_LIMIT = 0.1  # a governor held at the node's cores this often cannot make up for the host's slow
#                     moments: the device would be silently capped then, so it is not emulated (nor is one
#                     whose mean quota leaves less than HEADROOM below the node's cores)
# short CFS periods throttle smoothly (a 60 ms pass spans a dozen of 5 ms); slow devices need longer
# ones, since the kernel's smallest quota (1 ms) must stay under their share of a period
PERIODS_US = (5_000, 10_000, 20_000, 50_000, 100_000)
QUOTA_MARGIN = 1.5  # the expected share stays this far above the floor, so the governor can go lower
FIT_LIMIT = 0.10  # a calibration that ends further than this from the device's time is no calibration
REFUSAL_PAUSE_S = 20.0  # a refusal must hold twice this far apart: this host's slow spells pass
CACHE_FORMAT = 7  # 2: the governor's gain instead of a fixed quota; 3: gain on canary ms ** SENSITIVITY;
#                  4: torch buffers on huge pages (splitbed/__init__.py), which changes the speeds;
#                  5: torch threads sleep while waiting (OMP_WAIT_POLICY, ditto): two-thread nodes change;
#                  6: the period is chosen per device (5's slow devices sat at the quota floor, too fast);
#                  7: the gain estimated from the mean of the governor's law, two governed steps at least


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_key() -> str:
    text = f"{cpu_model()}|{os.cpu_count()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class WorkloadWorker(PipedChild):
    """A workload process: loads unconstrained, then moved into `group`, then timed on request."""

    def __init__(self, workload: str, threads: int, group: NodeGroup | None, env: dict | None = None,
                 python: list[str] | None = None):
        super().__init__("splitbed.devices.workload", [workload, "--threads", str(threads)], threads,
                         f"workload {workload}", env, python)
        if group is not None:
            group.add(self.pid)

    def run(self, count: int) -> list[float]:
        return self.ask(f"run {count}")

    def medians(self, runs: int, seconds: float) -> list[float]:
        """`runs` medians, each over at least `seconds` of passes (and 3 passes): this host's speed
        moves within seconds, so a run is a span of time, not a count of passes."""
        self.run(2)  # settle into the quota
        result = []
        for _ in range(runs):
            started, times = time.monotonic(), self.run(3)
            while time.monotonic() - started < seconds:
                times += self.run(3)
            result.append(statistics.median(times))
        return result


@dataclass
class NodeCalibration:
    device: str
    workload: str
    reference_ms: float
    threads: int
    cpus: str  # the cores a node of this device is pinned to while calibrating
    gain: float  # the governor's: quota = gain x (canary ms on the node's cores) ** SENSITIVITY
    canary_ms: float  # the canary's median time during the last calibration step
    quota_cores: float  # the mean quota the governor applied during the last step
    period_us: int
    measured_ms: float
    ratio: float
    iterations: int
    machine: str
    cpu_model: str
    warning: str | None
    calibrated_at: float

    def settings(self) -> dict:
        """What `governor.limit_cpu` needs to give a node this device's CPU."""
        return {"device": self.device, "quota_cores": self.quota_cores, "period_us": self.period_us,
                "threads": self.threads, "gain": self.gain}


def period_for(cores: float) -> int:
    """The shortest period whose smallest quota leaves the node's expected share QUOTA_MARGIN above
    the kernel's floor: a Pi Zero on a fast host needs a tenth of a core, under 1 ms of 5."""
    return next((p for p in PERIODS_US if cores >= QUOTA_MARGIN * min_cores(p)), PERIODS_US[-1])


def most_threads(profile: DeviceProfile) -> int:
    """A node gets at most the device's cores and the cores this process may use."""
    cores = len(os.sched_getaffinity(0))
    return min(cores, profile.cores or cores)


def calibrate(profile: DeviceProfile, manager: CgroupManager, runs: int = 5, seconds: float = 1.2,
              start: NodeCalibration | None = None, threads: int | None = None) -> NodeCalibration:
    """Fit the governor's gain so that the workload runs as long as on the device. `start` (an earlier
    calibration, e.g. the cached one) skips the free-speed measurement and begins from its gain;
    `threads` forces the node's thread count (starting at that many full cores)."""
    reference = profile.target
    gain = None
    if start is not None:
        threads, proposal, gain, period = start.threads, start.quota_cores, start.gain, start.period_us
    else:
        with WorkloadWorker(reference.workload, 1, None) as free_worker:
            free_one = statistics.median(free_worker.medians(runs, seconds))
        # one thread only with room for the governor to make up for this host's slow moments
        threads = threads or (1 if free_one * HEADROOM <= reference.ms else most_threads(profile))
        # one thread: scale the free time to the device's; more: start from all the cores allowed
        proposal = free_one / reference.ms if threads == 1 else float(threads)
        # the node's share of one core, whatever its threads: what the quota floor must stay under
        period = period_for(free_one / reference.ms)
    cpus = node_cpus(threads)
    group = manager.create(f"calibrate-{profile.key}")
    warning, gains, governed = None, [], 0
    try:
        group.set_cpuset(cpus)
        group.set_cpu(min(proposal, threads), period)  # the first step senses at this fixed quota
        with Governor(group, cpus, threads, period, gain or 0.0) as governor, \
                WorkloadWorker(reference.workload, threads, group) as worker:
            for iteration in range(1, MAX_ITERATIONS + 1):  # noqa: B007  (reported as iterations)
                governor.stats()
                measured = statistics.median(worker.medians(runs, seconds))
                sensed = governor.stats()
                ratio = measured / reference.ms
                quota = sensed["quota_cores_mean"] if gain else min(proposal, threads)
                gains.append(quota * ratio / sensed["law_mean"])  # what this step asked for
                governed += bool(gain)  # two at least: one 6 s step alone can catch a passing moment
                converged = governed >= 2 and abs(ratio - 1) <= TOLERANCE
                warning = limit_warning(profile, threads, measured, quota, sensed["capped_fraction"], converged,
                                        at_full_cores=not gain and quota >= threads) or floor_warning(
                    profile, measured, sensed.get("floored_fraction", 0.0), period)
                if converged:
                    gain = statistics.median(gains[-3:])
                if converged or warning:
                    break
                gain = gains[-1]
                governor.set_gain(gain)
    finally:
        manager.discard(group)
    if warning is None and abs(ratio - 1) > FIT_LIMIT:
        warning = (f"{profile.name} could not be calibrated on this machine: {measured:.1f} ms against "
                   f"{reference.ms:.1f} ms on the device after {iteration} steps")
    return NodeCalibration(profile.key, reference.workload, reference.ms, threads, cpus, gain or 0.0,
                           sensed["canary_ms_median"], round(quota, 4), period, measured, ratio, iteration,
                           machine_key(), cpu_model(), warning, time.time())


def floor_warning(profile: DeviceProfile, measured_ms: float, floored_fraction: float, period_us: int) -> str | None:
    """A node held at the kernel's smallest quota more than CAPPED_LIMIT of a step runs faster than the
    device whenever it is: the period is too short for so slow a device."""
    if floored_fraction <= CAPPED_LIMIT:
        return None
    return (f"{profile.name} is slower than a {period_us} us period can throttle this machine to: the node sat "
            f"at the kernel's smallest quota {100 * floored_fraction:.0f}% of the time ({measured_ms:.1f} ms vs "
            f"{profile.target.ms:.1f} ms on the device)")


def limit_warning(profile: DeviceProfile, threads: int, measured_ms: float, quota_cores: float,
                  capped_fraction: float, converged: bool, at_full_cores: bool) -> str | None:
    """Why this calibration step shows the device cannot be emulated here, or None. Too slow with the
    governor mostly at the node's cores (or a fixed quota of all of them) is a device faster than the
    machine. On target, but with a mean quota that leaves less than HEADROOM for the governor to make
    up this host's slow moments (or capped more than CAPPED_LIMIT of the step), is a device emulated
    only while the host is fast and silently capped the rest of the time."""
    reference = profile.target
    if converged:
        if capped_fraction <= CAPPED_LIMIT and quota_cores * HEADROOM <= threads:
            return None
        return (f"{profile.name} is at the limit of what this machine can emulate: it needs {quota_cores:.2f} of "
                f"{threads} full cores on average ({measured_ms:.1f} ms vs {reference.ms:.1f} ms on the device), which "
                f"leaves its governor less than {HEADROOM}x to make up this host's slow moments (at the cap "
                f"{100 * capped_fraction:.0f}% of the time)")
    if measured_ms / reference.ms > 1 + TOLERANCE and (capped_fraction > 0.5 or at_full_cores):
        return (f"{profile.name} is faster than this machine can emulate: "
                f"{measured_ms:.1f} ms at {threads} full cores vs {reference.ms:.1f} ms on the device")
    return None


class CalibrationCache:
    """One JSON file per machine: device -> NodeCalibration."""

    def __init__(self, root: str | Path | None = None):
        self.path = Path(root or cache_root() / "devices") / f"{machine_key()}-v{CACHE_FORMAT}.json"

    def load(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def get(self, device: str) -> NodeCalibration | None:
        entry = self.load().get(device)
        return NodeCalibration(**entry) if entry else None

    def put(self, calibration: NodeCalibration) -> None:
        data = self.load()
        data[calibration.device] = asdict(calibration)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)


def calibrated(profile: DeviceProfile, manager: CgroupManager, cache: CalibrationCache | None = None,
               recalibrate: bool = False, refine: bool = True, runs: int = 5) -> NodeCalibration:
    """This machine's calibration for the device: fitted afresh when there is none (or on request),
    else refined from the cached gain (a couple of steps when the cache still holds). A calibration
    that runs out of cores with fewer threads than the device may use is fitted again with them all, and
    a refusal is measured once more after REFUSAL_PAUSE_S before it stands."""
    cache = cache or CalibrationCache()
    found = None if recalibrate else cache.get(profile.key)
    if found is None or found.warning:
        found = calibrate(profile, manager)
    elif refine:
        found = calibrate(profile, manager, runs=runs, start=found)
        if found.warning:  # the cached gain or period met a moment it cannot hold: fit afresh once
            found = calibrate(profile, manager)
    if found.warning and found.threads < most_threads(profile):
        found = calibrate(profile, manager, threads=most_threads(profile))
    if found.warning:  # once more after a pause: a device is refused for this machine, not for a slow moment
        time.sleep(REFUSAL_PAUSE_S)
        found = calibrate(profile, manager, threads=most_threads(profile))
    cache.put(found)
    return found


def server_threads() -> int:
    """Threads of the server node's model: every core but one, so that the edges, their governors and
    the delay stages running beside it do not stall its parallel sections (on 2 cores, one thread ran
    the server's stages faster and steadier within a run than two)."""
    return max(1, (os.cpu_count() or 1) - 1)


def node_settings(profile: DeviceProfile, manager: CgroupManager) -> dict:
    """What an edge node of this device runs with (refined calibration; `governor.limit_cpu` applies
    it): starting quota, period, threads and the governor's gain; an unconstrained profile gets every
    core. A device faster than this machine is an error."""
    if not profile.constrained:
        return {"device": profile.key, "quota_cores": None, "period_us": None, "threads": os.cpu_count()}
    cal = calibrated(profile, manager, CalibrationCache())
    if cal.warning:
        raise UserError(cal.warning, fix="choose a slower device profile on this machine")
    return {**cal.settings(), "calibration": asdict(cal)}
