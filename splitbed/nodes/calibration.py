"""Fit a node's CPU quota so that our reference workload runs as long as on the real device.

Measure the workload unconstrained, start from quota = threads x free / reference, then run it inside
the quota'd cgroup and rescale the quota by measured / reference until within tolerance. The result
is cached per machine (CPU model and core count) and device; a device faster than this machine can
be made is reported with a warning, never silently capped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from splitbed.errors import UserError
from splitbed.nodes.cgroups import CgroupManager, NodeGroup
from splitbed.nodes.devices import DeviceProfile

TOLERANCE = 0.03
MAX_ITERATIONS = 8
PERIOD_US = 5_000  # short CFS periods throttle smoothly: a 60 ms pass spans a dozen of them
REPO = Path(__file__).resolve().parents[2]


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


class WorkloadWorker:
    """A workload process: loads unconstrained, then moved into `group`, then timed on request."""

    def __init__(self, workload: str, threads: int, group: NodeGroup | None):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "splitbed.nodes.workload", workload, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        if self.process.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError(f"workload {workload} did not start")
        if group is not None:
            group.add(self.process.pid)

    def run(self, count: int) -> list[float]:
        self.process.stdin.write(f"run {count}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def medians(self, runs: int, per_run: int) -> list[float]:
        self.run(2)  # settle into the quota
        return [statistics.median(self.run(per_run)) for _ in range(runs)]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class NodeCalibration:
    device: str
    workload: str
    reference_ms: float
    threads: int
    quota_cores: float
    period_us: int
    measured_ms: float
    ratio: float
    iterations: int
    machine: str
    cpu_model: str
    warning: str | None
    calibrated_at: float


def calibrate(profile: DeviceProfile, manager: CgroupManager, runs: int = 5, per_run: int = 7,
              start: NodeCalibration | None = None) -> NodeCalibration:
    """Fit the quota; `start` (an earlier calibration, e.g. the cached one) skips the free-speed
    measurement and begins from its quota and thread count, to follow a host whose speed drifts."""
    reference = profile.target
    cores = os.cpu_count() or 1
    if start is not None:
        threads, proposal = start.threads, start.quota_cores
    else:
        with WorkloadWorker(reference.workload, 1, None) as free_worker:
            free_one = statistics.median(free_worker.medians(runs, per_run))
        threads = 1 if free_one <= 0.95 * reference.ms else min(cores, profile.cores or cores)
        # one thread: scale the free time to the device's; more: start from all the cores allowed
        proposal = free_one / reference.ms if threads == 1 else float(threads)
    group = manager.create(f"calibrate-{profile.key}")
    warning = None
    try:
        with WorkloadWorker(reference.workload, threads, group) as worker:
            for iteration in range(1, MAX_ITERATIONS + 1):  # noqa: B007  (reported as iterations)
                quota = min(proposal, float(threads))
                group.set_cpu(quota, PERIOD_US)
                measured = statistics.median(worker.medians(runs, per_run))
                ratio = measured / reference.ms
                if abs(ratio - 1) <= TOLERANCE:
                    break
                if quota >= threads and ratio > 1:
                    warning = (f"{profile.name} is faster than this machine can emulate: "
                               f"{measured:.1f} ms at {threads} full cores vs {reference.ms} ms on the device")
                    break
                proposal = quota * ratio
    finally:
        manager.discard(group)
    return NodeCalibration(profile.key, reference.workload, reference.ms, threads, round(quota, 4), PERIOD_US,
                           measured, ratio, iteration, machine_key(), cpu_model(), warning, time.time())


class CalibrationCache:
    """One JSON file per machine: device -> NodeCalibration."""

    def __init__(self, root: str | Path | None = None):
        base = Path(os.environ.get("SPLITBED_CACHE", Path.home() / ".cache" / "splitbed"))
        self.path = Path(root or base / "devices") / f"{machine_key()}.json"

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
               recalibrate: bool = False, refine: bool = True) -> NodeCalibration:
    """This machine's calibration for the device: fitted afresh when there is none (or on request),
    else refined from the cached quota, because this host's speed drifts between runs."""
    cache = cache or CalibrationCache()
    found = None if recalibrate else cache.get(profile.key)
    if found is None or found.warning:
        found = calibrate(profile, manager)
    elif refine:
        found = calibrate(profile, manager, runs=3, start=found)
    cache.put(found)
    return found


def node_settings(profile: DeviceProfile, manager: CgroupManager) -> dict:
    """What an edge node of this device runs with: quota, period and threads (refined calibration);
    an unconstrained profile gets every core. A device faster than this machine is an error."""
    if not profile.constrained:
        return {"device": profile.key, "quota_cores": None, "period_us": None, "threads": os.cpu_count()}
    cal = calibrated(profile, manager, CalibrationCache())
    if cal.warning:
        raise UserError(cal.warning, fix="choose a slower device profile on this machine")
    return {"device": profile.key, "quota_cores": cal.quota_cores, "period_us": cal.period_us,
            "threads": cal.threads, "calibration": asdict(cal)}
