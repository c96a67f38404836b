"""What a run created, written down as it is created, so that exactly that can be removed: on normal
exit, on Ctrl-C or an exception, or later by `run_scenario.py --cleanup` after a `kill -9`.

One JSON-lines file per run under STATE_DIR: a header naming the run's PID (with its start time, so a
reused PID is not mistaken for it), then one record per created thing. Removal goes in reverse order,
each by its own id: processes by PID (checked against their start time), iptables rules by their exact
spec, qdiscs, links, namespaces and containers by name, cgroups by path. Nothing is ever removed by pattern.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

STATE_DIR = Path(os.environ.get("SPLITBED_STATE_DIR", "/run/splitbed"))


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, start_time: int | None) -> bool:
    return start_time is not None and process_start_time(pid) == start_time


class RunState:
    """Append-only record of one run's creations; `cleanup()` undoes them newest first."""

    def __init__(self, run_id: str, directory: Path = STATE_DIR):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{run_id}.jsonl"
        pid = os.getpid()
        self._write({"kind": "run", "run_id": run_id, "pid": pid, "start_time": process_start_time(pid),
                     "created_at": time.time()})

    def _write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def netns(self, name: str) -> None:
        self._write({"kind": "netns", "name": name})

    def link(self, name: str, netns: str | None = None) -> None:
        self._write({"kind": "link", "name": name, "netns": netns})

    def qdisc(self, dev: str, netns: str | None = None) -> None:
        self._write({"kind": "qdisc", "dev": dev, "netns": netns})

    def iptables(self, rule: list[str], table: str = "raw", netns: str | None = None) -> None:
        self._write({"kind": "iptables", "table": table, "rule": rule, "netns": netns})

    def cgroup(self, path: Path) -> None:
        self._write({"kind": "cgroup", "path": str(path)})

    def container(self, name: str) -> None:
        self._write({"kind": "container", "name": name})

    def process(self, pid: int) -> None:
        self._write({"kind": "process", "pid": pid, "start_time": process_start_time(pid)})

    def cleanup(self) -> list[str]:
        return cleanup_file(self.path)


def read_records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: everything before it still counts
    return records


def remove_cgroup_dir(path: Path, timeout_s: float = 2.5) -> bool:
    """rmdir a cgroup once its last task has left (the kernel frees it a moment after the task exits):
    True if removed here, False if it was already gone; the OSError once `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return False
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def quiet(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True).returncode == 0


def remove_record(record: dict) -> str | None:
    """Undo one record; returns a description of what was removed, or None if it was already gone."""
    kind = record["kind"]
    prefix = ["ip", "netns", "exec", record["netns"]] if record.get("netns") else []
    if record.get("netns") and not netns_exists(record["netns"]):
        return None  # everything inside a namespace went with it
    if kind == "process":
        if alive(record["pid"], record["start_time"]):
            os.kill(record["pid"], signal.SIGKILL)
            return f"process {record['pid']}"
    elif kind == "iptables":
        if quiet([*prefix, "iptables", "-t", record["table"], "-D", *record["rule"]]):
            return f"iptables rule {' '.join(record['rule'])}"
    elif kind == "qdisc":
        if quiet([*prefix, "tc", "qdisc", "del", "dev", record["dev"], "root"]):
            return f"qdisc on {record['dev']}"
    elif kind == "link":
        if quiet([*prefix, "ip", "link", "del", record["name"]]):
            return f"link {record['name']}"
    elif kind == "netns":
        if netns_exists(record["name"]) and quiet(["ip", "netns", "del", record["name"]]):
            return f"netns {record['name']}"
    elif kind == "container":
        if shutil.which("docker") and quiet(["docker", "rm", "-f", record["name"]]):
            return f"container {record['name']}"
    elif kind == "cgroup":
        path = Path(record["path"])
        try:
            return f"cgroup {path}" if remove_cgroup_dir(path) else None
        except OSError:
            return None
    return None


def cleanup_file(path: Path) -> list[str]:
    """Remove everything a state file records, newest first, then the file."""
    removed = []
    records = read_records(path)
    for record in reversed(records[1:]):
        done = remove_record(record)
        if done:
            removed.append(done)
    path.unlink(missing_ok=True)
    return removed


def cleanup_dead_runs(directory: Path = STATE_DIR) -> list[str]:
    """What `--cleanup` does: undo every run whose process is gone. Live runs are left alone."""
    removed = []
    for path in sorted(directory.glob("*.jsonl")) if directory.exists() else []:
        records = read_records(path)
        header = records[0] if records and records[0].get("kind") == "run" else None
        if header and alive(header["pid"], header["start_time"]):
            continue
        removed += cleanup_file(path)
    return removed


class EmulationLock:
    """One emulation per machine: held for a run's whole life, released by the kernel when its process
    ends (even by kill -9). A second run waits for it (a retried run after a lost worker waits for the
    lost one's cleanup), then gives up with a clear error after `timeout_s`."""

    def __init__(self, directory: Path = STATE_DIR, timeout_s: float = 900.0):
        self.path, self.timeout_s, self.handle = directory / "emulation.lock", timeout_s, None

    def __enter__(self) -> EmulationLock:
        import fcntl
        import sys

        from splitbed.errors import UserError

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a+")
        deadline, said = time.monotonic() + self.timeout_s, False
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.handle.close()
                    raise UserError(f"another emulation has run on this machine for {self.timeout_s:.0f} s",
                                    where=str(self.path), fix="one scenario at a time: wait for it, or stop it") \
                        from None
                if not said:
                    print("waiting for another emulation on this machine to end", file=sys.stderr, flush=True)
                    said = True
                time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        self.handle.close()
