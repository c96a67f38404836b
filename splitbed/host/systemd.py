"""A cgroup v2 subtree that systemd delegates to us, for machines where systemd is PID 1.

systemd owns the v2 hierarchy: it sets the controllers of the root and of its slices as its units
need them, so groups made straight under the root can lose their `cpu.max` when systemd next
reconciles. The documented way to own a subtree is a unit with `Delegate=yes`. `systemd-run --scope`
makes a transient scope and runs a keeper in it (`cat`, reading a pipe only we hold); the keeper moves
to a leaf of its own (v2 allows controllers for children only of groups without processes), and the
run's node groups are made beside it. When the run ends, or dies (the pipe closes and `cat` exits),
the emptied scope is stopped and removed by systemd; `--collect` keeps no failed unit behind.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from splitbed.errors import UserError
from splitbed.host.state import RunState, remove_cgroup_dir

KEEPER = "keeper"


def systemd_is_init() -> bool:
    """True on a machine booted with systemd (its documented test: /run/systemd/system exists)."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


class DelegatedScope:
    """A transient scope `NAME.scope` with Delegate=yes; `directory` is ours to fill with groups."""

    def __init__(self, name: str, v2_mount: str, state: RunState | None = None, timeout_s: float = 10.0):
        self.unit = f"{name}.scope"
        self.keeper = subprocess.Popen(
            ["systemd-run", "--scope", "--quiet", "--collect", f"--unit={self.unit}", "-p", "Delegate=yes",
             "--description=splitbed emulated nodes", "--", "cat"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        path = self.wait_for_scope(timeout_s)
        self.directory = Path(v2_mount) / path.lstrip("/")
        leaf = self.directory / KEEPER
        if state:  # the keeper ends by itself when our pipe closes; these records are for --cleanup
            state.cgroup(leaf)
            state.process(self.keeper.pid)
        leaf.mkdir()
        (leaf / "cgroup.procs").write_text(f"{self.keeper.pid}\n")

    def wait_for_scope(self, timeout_s: float) -> str:
        """The keeper's cgroup path once systemd has placed it in the scope (systemd-run then execs cat)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.keeper.poll() is not None:
                error = self.keeper.stderr.read().decode(errors="replace").strip()
                raise UserError(f"systemd would not make the scope {self.unit}: {error or 'no reason given'}; "
                                f"check 'systemctl status {self.unit}'")
            try:
                path = Path(f"/proc/{self.keeper.pid}/cgroup").read_text().strip().split("::", 1)[-1]
            except OSError:
                path = ""
            if path.endswith("/" + self.unit):
                return path
            time.sleep(0.02)
        self.close()
        raise UserError(f"systemd did not start the scope {self.unit} within {timeout_s:.0f} s")

    def close(self, timeout_s: float = 5.0) -> None:
        """End the keeper (its pipe closes) and remove its leaf; systemd then removes the empty scope."""
        if self.keeper.stdin:
            self.keeper.stdin.close()
        try:
            self.keeper.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.keeper.kill()
            self.keeper.wait()
        if hasattr(self, "directory"):  # not when systemd never made the scope
            try:
                remove_cgroup_dir(self.directory / KEEPER, timeout_s)
            except OSError:
                pass  # systemd removes the whole scope once it is empty
