"""Network namespaces and veth pairs that we create, remembered by name so exactly they are removed.

A light harness for link tests and benchmarks (Mininet hosts are namespaces too, built elsewhere).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from splitbed.host.state import RunState


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


@dataclass
class NetnsSet:
    """Namespaces created through this object; remove() deletes those and nothing else."""

    state: RunState | None = None  # where creations are written down for --cleanup
    names: list[str] = field(default_factory=list)

    def add(self, name: str) -> str:
        if self.state:
            self.state.netns(name)  # before creating: a crash in between leaves nothing unrecorded
        run(["ip", "netns", "add", name])
        self.names.append(name)
        run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        return name

    def attach(self, name: str, pid: int) -> str:
        """A name for the network namespace process `pid` lives in (a container's): removing the name
        leaves the namespace to its owner."""
        if self.state:
            self.state.netns(name)
        run(["ip", "netns", "attach", name, str(pid)])
        self.names.append(name)
        return name

    def veth(self, ns_a: str, dev_a: str, addr_a: str, ns_b: str, dev_b: str, addr_b: str) -> None:
        """A veth pair from ns_a to ns_b with /24 addresses; deleted with its namespaces."""
        run(["ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b])
        for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
            run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/24", "dev", dev])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", dev, "up"])

    def remove(self) -> None:
        for name in reversed(self.names):
            run(["ip", "netns", "del", name], check=False)
        self.names.clear()


def in_netns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]
