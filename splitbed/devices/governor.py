"""Hold an emulated node at its device's speed while this machine's own speed moves.

A fixed CPU quota makes a node a fixed share of a core, but these hosts' cores change speed by up to
1.5x within seconds, each core on its own (other tenants of the physical machine, we guess: steal time
does not move), so a fixed share is not a fixed speed. The governor senses the speed of the node's own
cores with a short canary (Lite0's stem, ~1 ms, real-time priority so the node cannot delay it, timed
on its second pass so that the node's evictions do not count) every 50 ms and sets the node's quota
to `gain` x (recent median canary ms) ** SENSITIVITY: a slower core gets a larger share. Calibration
fits `gain`, which, unlike a quota, carries over between moments.

    python -m splitbed.devices.governor --cpu-dir DIR --cgroup-version {1,2} --cpus 1 --max-cores 1

stdin: "gain X" sets the gain (0: sense only, leave the quota), "stats" prints one JSON
line about the samples since the last "stats"; end of input (our parent gone) ends it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import signal
import statistics
import sys
import time
from pathlib import Path

from splitbed.devices.cgroups import NodeGroup, min_cores
from splitbed.devices.child import PipedChild

INTERVAL_S = 0.05
WINDOW = 7  # canary samples in the median: ~0.3 s, faster than the host's speed levels change
MIN_CORES = 0.01
# Under a node's load, Lite0 slowed 1.55-1.58x as much as the stem canary (log-log slope over 20
# blocks of 5 s at quotas 0.28 and 0.6, this machine): the stem alone under-reacts.
SENSITIVITY = 1.5


class Governor(PipedChild):
    """The governor process of one node; a context manager that always ends it."""

    def __init__(self, group: NodeGroup, cpus: str, max_cores: float, period_us: int, gain: float = 0.0):
        super().__init__("splitbed.devices.governor", [
            "--cpu-dir", str(group.dirs["cpu"]), "--cgroup-version", str(group.version), "--cpus", cpus,
            "--max-cores", str(max_cores), "--period-us", str(period_us), "--gain", str(gain)], 1, "the CPU governor")

    def set_gain(self, gain: float) -> None:
        self.tell(f"gain {gain!r}")

    def stats(self) -> dict:
        """Canary times and quotas since the last call."""
        return self.ask("stats")


def node_cpus(threads: int, index: int = 0) -> str:
    """The cores of a node: one core per single-threaded node (the governor senses exactly the core
    the node runs on), counted down from the last so that several nodes spread; else all cores."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads > 1:
        return ",".join(map(str, allowed))
    return str(allowed[-1 - index % len(allowed)])


def limit_cpu(group: NodeGroup, device: dict, index: int = 0) -> Governor | None:
    """Give a node its device's calibrated CPU (from `calibration.node_settings`): its cores, a
    starting quota, and the governor that holds its speed. None for an unconstrained device."""
    if not device.get("quota_cores"):
        return None
    cpus = node_cpus(device["threads"], index)
    group.set_cpuset(cpus)
    group.set_cpu(device["quota_cores"], device["period_us"])
    return Governor(group, cpus, device["threads"], device["period_us"], device["gain"])


def constrain_node(group: NodeGroup, device: dict, memory_mb: int | None, index: int = 0) -> Governor | None:
    """Everything a node gets of its device, in one place: its cores, quota and governor (limit_cpu)
    and its memory limit (None: unlimited). Its program's thread count travels in its own config."""
    governor = limit_cpu(group, device, index)
    if memory_mb:
        group.set_memory(memory_mb << 20)
    return governor


def cpu_list(text: str) -> list[int]:
    """'0-2,5' -> [0, 1, 2, 5]"""
    cpus = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus += range(int(low), int(high or low) + 1)
    return cpus


class Samples:
    """What the governor saw and did since the last report."""

    def __init__(self):
        self.canary_ms, self.quotas, self.laws, self.capped, self.floored = [], [], [], 0, 0

    def report(self, realtime: bool) -> dict:
        canary, quotas = self.canary_ms or [0.0], self.quotas or [0.0]
        result = {"samples": len(self.canary_ms), "canary_ms_median": statistics.median(canary),
                  # the quotas' mean over the gain: calibration's estimate of the gain divides by this,
                  # not by the step's median canary ** SENSITIVITY, which the canary's skew puts lower
                  "law_mean": statistics.mean(self.laws or [0.0]),
                  "canary_ms_min": min(canary), "canary_ms_max": max(canary),
                  "quota_cores_mean": statistics.mean(quotas), "quota_cores_min": min(quotas),
                  "quota_cores_max": max(quotas), "capped_fraction": self.capped / max(1, len(self.quotas)),
                  "floored_fraction": self.floored / max(1, len(self.quotas)),
                  "realtime": realtime}
        self.__init__()
        return result


def realtime_priority() -> bool:
    """SCHED_FIFO so that the node's own work never sits in front of the canary; else the
    highest normal priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return True
    except (OSError, AttributeError):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -20)
        except OSError:  # unprivileged: the canary then also measures the node's contention
            pass
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpu-dir", required=True)
    parser.add_argument("--cgroup-version", type=int, choices=(1, 2), required=True)
    parser.add_argument("--cpus", required=True)
    parser.add_argument("--max-cores", type=float, required=True)
    parser.add_argument("--period-us", type=int, required=True)
    parser.add_argument("--gain", type=float, default=0.0)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the runner, which then closes our input
    import torch

    from splitbed.models import get_model

    torch.set_num_threads(1)
    canary, x = get_model("efficientnet_lite0").head("stem").eval(), torch.zeros(1, 3, 224, 224)
    group = NodeGroup("governed", args.cgroup_version, {"cpu": Path(args.cpu_dir)})
    cpus, gain = cpu_list(args.cpus), args.gain
    floor = max(MIN_CORES, min_cores(args.period_us))
    recent, samples = collections.deque(maxlen=WINDOW), Samples()
    realtime = realtime_priority()
    with torch.no_grad():
        for cpu in cpus:  # first touch of each core's caches and the allocator
            os.sched_setaffinity(0, {cpu})
            canary(x)
        print("ready", flush=True)
        turn, pending = 0, b""
        while True:
            readable, _, _ = select.select([sys.stdin], [], [], INTERVAL_S)
            if readable:  # raw reads: a buffered readline would hide a second queued command from select
                chunk = os.read(sys.stdin.fileno(), 4096)
                if not chunk:
                    return 0
                *lines, pending = (pending + chunk).split(b"\n")
                for command in (line.split() for line in lines):
                    if command[:1] == [b"gain"]:
                        gain = float(command[1])
                    elif command[:1] == [b"stats"]:
                        print(json.dumps(samples.report(realtime)), flush=True)
                continue
            os.sched_setaffinity(0, {cpus[turn % len(cpus)]})  # each core of the node in turn
            turn += 1
            canary(x)  # untimed: refills the caches the node's own work evicted since the last sample
            started = time.perf_counter_ns()
            canary(x)
            recent.append((time.perf_counter_ns() - started) / 1e6)
            samples.canary_ms.append(recent[-1])
            samples.laws.append(statistics.median(recent) ** SENSITIVITY)
            if gain > 0:
                wanted = gain * samples.laws[-1]
                cores = min(max(wanted, floor), args.max_cores)
                samples.capped += wanted > args.max_cores
                samples.floored += wanted < floor  # the kernel's smallest quota: the node runs faster
                samples.quotas.append(cores)
                group.set_cpu(cores, args.period_us)


if __name__ == "__main__":
    sys.exit(main())
