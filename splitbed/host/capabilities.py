"""Probe what this machine can emulate, by trying it in throw-away network namespaces.

Each probe really performs the operation (add a netem qdisc, a bridge, an NFQUEUE rule) inside
`unshare -n`, so nothing on the host changes and the answer is the kernel's, not a guess from
module lists. The result decides the link and CPU backends a run uses.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from splitbed.host.containers import daemon_version

PROBE_TIMEOUT_S = 10


def in_throwaway_netns(script: str) -> bool | None:
    """Run a shell snippet in a fresh network namespace; True when it exits 0, None if not root."""
    if os.geteuid() != 0:
        return None
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && " + script],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def qdisc_available(kind_and_args: str) -> bool | None:
    return in_throwaway_netns(f"tc qdisc add dev lo root {kind_and_args}")


def raw_sockets_available() -> bool:
    """AF_PACKET raw sockets: what the userspace delay relay forwards frames with."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    except (OSError, AttributeError):
        return False
    sock.close()
    return True


@dataclass
class CgroupInfo:
    version: int | None  # 1, 2 or None (no usable cpu controller)
    cpu_controller: bool
    memory_controller: bool
    v1_mounts: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v2_mount: str | None = None


def probe_cgroups(mounts_file: str = "/proc/self/mounts") -> CgroupInfo:
    """Find cgroup v1 controller mounts and the v2 mount, and pick the version that has `cpu`.

    v1 wins where it has the cpu controller (this machine: v2 is mounted but has no controllers);
    Ubuntu 22.04+ is v2-only, where the root's cgroup.controllers lists cpu and memory.
    """
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in Path(mounts_file).read_text().splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mount_point, fstype, options = parts[1], parts[2], parts[3].split(",")
        if fstype == "cgroup":
            for controller in ("cpu", "cpuacct", "cpuset", "memory"):
                if controller in options:
                    v1.setdefault(controller, mount_point)
        elif fstype == "cgroup2" and v2 is None:
            v2 = mount_point
    v2_controllers: set[str] = set()
    if v2:
        try:
            v2_controllers = set(Path(v2, "cgroup.controllers").read_text().split())
        except OSError:
            v2_controllers = set()
    if "cpu" in v1:
        return CgroupInfo(1, True, "memory" in v1, v1, v2)
    if "cpu" in v2_controllers:
        return CgroupInfo(2, True, "memory" in v2_controllers, v1, v2)
    return CgroupInfo(None, False, "memory" in v1 or "memory" in v2_controllers, v1, v2)


def torch_info() -> tuple[str | None, int | None]:
    try:
        import torch
    except ImportError:
        return None, None
    return torch.__version__, torch.get_num_threads()


def mininet_importable() -> bool:
    try:
        import mininet.net  # noqa: F401
    except Exception:  # a broken install (e.g. distutils missing on 3.12) is "not importable" too
        return False
    return True


@dataclass
class Capabilities:
    root: bool
    mininet: bool
    mnexec: bool
    netem: bool | None  # None: unknown, probing needs root
    htb: bool | None  # None: unknown, probing needs root
    tbf: bool | None  # None: unknown, probing needs root
    ovs_kernel_datapath: bool | None  # None: unknown, probing needs root
    linux_bridge: bool | None  # None: unknown, probing needs root
    ifb: bool | None  # None: unknown, probing needs root
    nfqueue: bool | None  # None: unknown, probing needs root
    netfilterqueue: bool  # the Python binding the delay stage uses
    iptables_statistic: bool | None  # None: unknown, probing needs root
    raw_sockets: bool
    cgroup_version: int | None
    cpu_controller: bool
    memory_controller: bool
    torch: str | None
    torch_threads: int | None
    kernel: str
    link_backend: str | None
    cpu_backend: str | None
    docker: str | None  # the daemon's version: only nodes that name an image need one
    problems: list[str]

    def can_run(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return asdict(self)


def netfilterqueue_importable() -> bool:
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return False
    return True


def choose_link_backend(netem: bool | None, htb: bool | None, nfqueue: bool | None) -> str | None:
    """netem where the kernel has it; else HTB for rate plus the receiver-side NFQUEUE delay stage
    (iptables statistic for loss)."""
    if netem:
        return "netem"
    if htb and nfqueue:
        return "htb+nfqueue"
    return None


def probe() -> Capabilities:
    root = os.geteuid() == 0
    cg = probe_cgroups()
    netem = qdisc_available("netem delay 1ms")
    htb = qdisc_available("htb default 1")
    raw = raw_sockets_available()
    nfqueue = in_throwaway_netns("iptables -t raw -A PREROUTING -j NFQUEUE --queue-num 7")
    binding = netfilterqueue_importable()
    version, threads = torch_info()
    caps = Capabilities(
        root=root,
        mininet=mininet_importable(),
        mnexec=shutil.which("mnexec") is not None,
        netem=netem,
        htb=htb,
        tbf=qdisc_available("tbf rate 1mbit burst 10kb latency 50ms"),
        ovs_kernel_datapath=in_throwaway_netns("ip link add ovsprobe type openvswitch"),
        linux_bridge=in_throwaway_netns("ip link add brprobe type bridge"),
        ifb=in_throwaway_netns("ip link add ifbprobe type ifb"),
        nfqueue=nfqueue,
        netfilterqueue=binding,
        iptables_statistic=in_throwaway_netns(
            "iptables -t raw -A PREROUTING -m statistic --mode random --probability 0.5 -j DROP"
        ),
        raw_sockets=raw,
        cgroup_version=cg.version,
        cpu_controller=cg.cpu_controller,
        memory_controller=cg.memory_controller,
        torch=version,
        torch_threads=threads,
        kernel=platform.release(),
        link_backend=choose_link_backend(netem, htb, nfqueue and binding),
        cpu_backend=f"cgroup-v{cg.version}" if cg.version else None,
        docker=daemon_version(),
        problems=[],
    )
    caps.problems = find_problems(caps)
    return caps


def find_problems(caps: Capabilities) -> list[str]:
    """Why a scenario cannot run here, each with the fix."""
    problems = []
    if not caps.root:
        return ["needs root for namespaces, qdiscs and cgroups: run it with sudo"]
    if not caps.mininet:
        problems.append("Mininet is not importable: run 'sudo make setup'")
    if not caps.mnexec:
        problems.append("mnexec is missing: run 'sudo make setup' (Debian package mininet)")
    if caps.link_backend is None:
        problems.append("no link backend: the kernel has neither netem nor HTB with NFQUEUE "
                        "(and NetfilterQueue: 'sudo make setup')")
    if caps.cpu_backend is None:
        problems.append("no cgroup cpu controller (v1 or v2): device CPU quotas are impossible")
    if caps.torch is None:
        problems.append("torch is not importable: run 'sudo make setup'")
    return problems


def format_table(caps: Capabilities) -> str:
    rows = [
        ("root", caps.root),
        ("Mininet importable", caps.mininet),
        ("mnexec present", caps.mnexec),
        ("netem qdisc", caps.netem),
        ("HTB qdisc", caps.htb),
        ("TBF qdisc", caps.tbf),
        ("OVS kernel datapath", caps.ovs_kernel_datapath),
        ("Linux bridge", caps.linux_bridge),
        ("IFB devices", caps.ifb),
        ("iptables NFQUEUE", caps.nfqueue),
        ("NetfilterQueue (Python)", caps.netfilterqueue),
        ("iptables statistic (loss)", caps.iptables_statistic),
        ("AF_PACKET raw sockets", caps.raw_sockets),
        ("cgroup version", caps.cgroup_version or "none usable"),
        ("cgroup cpu controller", caps.cpu_controller),
        ("cgroup memory controller", caps.memory_controller),
        ("torch", f"{caps.torch} ({caps.torch_threads} threads)" if caps.torch else "not importable"),
        ("kernel", caps.kernel),
        ("-> link backend", caps.link_backend or "NONE"),
        ("-> CPU backend", caps.cpu_backend or "NONE"),
        ("Docker daemon", caps.docker or "not answering (needed only by nodes that name an image)"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, value in rows:
        if isinstance(value, bool) or value is None:  # 1 == True: never look ints up in this dict
            value = {True: "yes", False: "no", None: "unknown (probing needs root)"}[value]
        lines.append(f"{name:<{width}}  {value}")
    if caps.problems:
        lines.append("")
        lines.extend(f"cannot run: {p}" for p in caps.problems)
    else:
        lines.extend(["", "a scenario can run on this machine"])
    return "\n".join(lines)
