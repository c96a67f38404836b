"""A small cgroup layer for v1 and v2: CPU quota and period, cpuset, memory limit, process placement,
CPU accounting. No cgroup-tools; the kernel's files are written directly.

On v1, groups are created below the cgroup this process already lives in (per controller), so a run
nests inside whatever limits its caller has. On v2 they go below the root: v2 forbids enabling
controllers for children of a group that holds processes, which the caller's group usually does;
where systemd is PID 1 (it owns the v2 tree) they go in a scope it delegates to us instead
(host/systemd.py).
Only what we made is removed. A process joins by writing its PID to cgroup.procs (both versions
move every thread).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from splitbed.errors import UserError
from splitbed.host.capabilities import CgroupInfo, probe_cgroups
from splitbed.host.state import RunState, remove_cgroup_dir
from splitbed.host.systemd import DelegatedScope, systemd_is_init

MIN_QUOTA_US = 1000  # the kernel refuses a CFS quota under 1 ms (EINVAL)


def min_cores(period_us: int) -> float:
    """The fewest cores a quota can give at this period."""
    return MIN_QUOTA_US / period_us

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")


def own_cgroup_paths(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """controller (v1) or '' (v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    for line in Path(proc_cgroup).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


@dataclass
class NodeGroup:
    """The cgroups of one emulated node: one directory per v1 controller, or one v2 directory."""

    name: str
    version: int
    dirs: dict[str, Path]  # controller -> directory (v2: every controller -> the same directory)

    # --- limits -----------------------------------------------------------------------------
    def set_cpu(self, cores: float | None, period_us: int = 20_000) -> None:
        """Limit to `cores` CPUs' worth of time per period (None: unlimited). The kernel takes no quota
        under MIN_QUOTA_US: less is raised to it (min_cores says how few cores a period can give)."""
        if cores is not None and cores <= 0:
            raise UserError(f"cpu quota must be positive, got {cores} cores")
        quota = None if cores is None else max(MIN_QUOTA_US, int(round(cores * period_us)))
        if self.version == 1:
            write(self.dirs["cpu"] / "cpu.cfs_period_us", period_us)
            write(self.dirs["cpu"] / "cpu.cfs_quota_us", -1 if quota is None else quota)
        else:
            write(self.dirs["cpu"] / "cpu.max", f"{'max' if quota is None else quota} {period_us}")

    def set_cpuset(self, cpus: str, mems: str = "0") -> None:
        directory = self.dirs["cpuset"]
        if self.version == 1:  # v1 needs mems before a task may join
            write(directory / "cpuset.mems", mems)
        write(directory / "cpuset.cpus", cpus)

    def set_memory(self, limit_bytes: int | None) -> None:
        directory = self.dirs["memory"]
        if self.version == 1:
            value = -1 if limit_bytes is None else limit_bytes
            write(directory / "memory.limit_in_bytes", value)
            swap = directory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swapping around the limit either
                write(swap, value)
        else:
            write(directory / "memory.max", "max" if limit_bytes is None else limit_bytes)
            swap = directory / "memory.swap.max"
            if swap.exists():
                write(swap, 0 if limit_bytes is not None else "max")

    # --- processes ------------------------------------------------------------------------------
    def add(self, pid: int) -> None:
        """Move a process (all its threads) into every group of this node."""
        for directory in dict.fromkeys(self.dirs.values()):
            write(directory / "cgroup.procs", pid)

    def join(self) -> None:
        """Move the calling process in: use as preexec_fn so a child starts inside."""
        self.add(os.getpid())

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a program inside the node: it joins every group before exec, so all it allocates
        and every thread it starts count against the node (unlike Mininet's host.popen, which
        escapes the memory group)."""
        return subprocess.Popen(argv, preexec_fn=self.join, **kwargs)

    def pids(self) -> list[int]:
        directory = next(iter(self.dirs.values()))
        text = (directory / "cgroup.procs").read_text() if (directory / "cgroup.procs").exists() else ""
        return [int(p) for p in text.split()]

    # --- accounting -------------------------------------------------------------------------------
    def cpu_usage_s(self) -> float:
        """CPU time used by the node's processes since the group was made."""
        if self.version == 1:
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
        for line in (self.dirs["cpu"] / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
        raise OSError("cpu.stat has no usage_usec")

    def memory_peak_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        path = self.dirs["memory"] / name
        return int(path.read_text()) if path.exists() else None

    def oom_kills(self) -> int | None:
        """Processes of the group the kernel's OOM killer ended at its memory limit (None: not reported)."""
        path = self.dirs["memory"] / ("memory.oom_control" if self.version == 1 else "memory.events")
        if not path.exists():
            return None
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return None

    # --- removal ----------------------------------------------------------------------------------
    def remove(self, timeout_s: float = 5.0) -> None:
        """Remove this node's directories once its processes are gone."""
        for directory in dict.fromkeys(self.dirs.values()):
            remove_cgroup_dir(directory, timeout_s)


def write(path: Path, value) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError as err:
        raise OSError(f"cannot write {value!r} to {path}: {err.strerror}") from err


class CgroupManager:
    """Makes NodeGroups under `<own cgroup>/<prefix>` for the machine's cgroup version."""

    def __init__(self, prefix: str, info: CgroupInfo | None = None, proc_cgroup: str = "/proc/self/cgroup",
                 state: RunState | None = None):
        self.info = info or probe_cgroups()
        if self.info.version is None:
            raise UserError("no usable cgroup cpu controller (v1 or v2): device CPU quotas are impossible")
        self.prefix = prefix
        self.state = state
        self.own = own_cgroup_paths(proc_cgroup)
        self.groups: list[NodeGroup] = []
        self.bases: list[Path] = []  # the per-run parents we made
        self.scope: DelegatedScope | None = None  # v2 under systemd: the per-run parent systemd made
        self.delegate = info is None and systemd_is_init()  # only on the live tree, never a given one

    def base(self, controller: str) -> Path:
        if self.info.version == 1:
            mount = self.info.v1_mounts[controller]
            return Path(mount) / self.own.get(controller, "/").lstrip("/") / self.prefix
        if not self.delegate:
            return Path(self.info.v2_mount) / self.prefix
        if self.scope is None:
            self.scope = DelegatedScope(self.prefix, self.info.v2_mount, self.state)
        return self.scope.directory

    def create(self, node: str) -> NodeGroup:
        group = NodeGroup(node, self.info.version, {})
        self.groups.append(group)
        if self.info.version == 1:
            for controller in V1_CONTROLLERS:
                if controller in self.info.v1_mounts:
                    group.dirs[controller] = self.make_dir(self.base(controller), node, controller == "cpuset")
        else:
            directory = self.make_dir(self.base("cpu"), node, cpuset=False)
            for controller in ("cpu", "cpuset", "memory"):
                group.dirs[controller] = directory
        return group

    def make_dir(self, base: Path, node: str, cpuset: bool) -> Path:
        for directory in (base, base / node):
            if directory.exists():
                continue
            if self.info.version == 2:  # children may only use what their parent delegates
                enable_v2_controllers(directory.parent)
            if self.state:
                self.state.cgroup(directory)
            directory.mkdir()
            if directory == base:
                self.bases.append(base)
            if cpuset and self.info.version == 1:  # a v1 cpuset group starts empty: inherit the parent's
                for name in ("cpuset.cpus", "cpuset.mems"):
                    write(directory / name, (directory.parent / name).read_text().strip())
        return base / node

    def discard(self, group: NodeGroup, timeout_s: float = 5.0) -> None:
        """Remove one node's groups before the run ends (e.g. a calibration node)."""
        group.remove(timeout_s)
        self.groups.remove(group)

    def remove_all(self, timeout_s: float = 5.0) -> None:
        """Remove every node group, then the per-run parents: exactly what this manager made."""
        for group in self.groups:
            group.remove(timeout_s)
        self.groups.clear()
        for base in self.bases:
            remove_cgroup_dir(base, timeout_s)
        self.bases.clear()
        if self.scope:
            self.scope.close(timeout_s)
            self.scope = None


def enable_v2_controllers(directory: Path) -> None:
    """Let children of `directory` use cpu, cpuset and memory (its cgroup.subtree_control).

    What `directory` may delegate is its cgroup.controllers, which the kernel fills from its
    parent's subtree_control; read that when the file is not there (a group made a moment ago).
    """
    own = directory / "cgroup.controllers"
    source = own if own.exists() else directory.parent / "cgroup.subtree_control"
    available = {name.lstrip("+") for name in source.read_text().split()}
    wanted = [c for c in ("cpu", "cpuset", "memory") if c in available]
    if wanted:
        write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
