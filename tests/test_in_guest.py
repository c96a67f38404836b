"""The paths a current Debian/Ubuntu kernel takes (netem, pure cgroup v2), run inside the guest kernel
of scripts/guest.py (`make guest-test`): behaviour only, never timing (TCG's clock)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from splitbed.host.systemd import systemd_is_init
from tests.conftest import REPO, run_scenario_text

pytestmark = [pytest.mark.root, pytest.mark.skipif(not os.environ.get("SPLITBED_GUEST"),
                                                   reason="runs inside the guest kernel: make guest-test")]


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True).stdout.strip()


def tc(prefix: list[str], *args: str) -> str:
    return subprocess.run([*prefix, "tc", *args], capture_output=True, text=True, check=True).stdout


def class_rate(shown: str) -> float:
    """The HTB class rate tc prints (e.g. 'rate 1980Kbit'), in bit/s."""
    import re

    value, unit = re.search(r"rate (\d+(?:\.\d+)?)([KMG]?)bit", shown).groups()
    return float(value) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[unit]


def test_the_probe_picks_netem_and_cgroup_v2():
    done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), "--check", "--json"],
                          capture_output=True, text=True)
    caps = json.loads(done.stdout)
    assert caps["netem"] and caps["link_backend"] == "netem"
    assert caps["cgroup_version"] == 2 and caps["cpu_backend"] == "cgroup-v2"


def test_netem_links_build_what_they_claim_follow_a_trace_and_leave_nothing():
    from splitbed.network.links import Endpoint, LinkDirection, LinkSpec
    from splitbed.network.shaping import TcBatch, TraceReplayer
    from splitbed.network.traces import Trace
    from splitbed.testing.netns import NetnsSet

    nets = NetnsSet()
    a, b = nets.add(f"sbGa-{os.getpid()}"), nets.add(f"sbGb-{os.getpid()}")
    try:
        nets.veth(a, "g0", "10.253.0.1", b, "g1", "10.253.0.2")
        pa, pb = ["ip", "netns", "exec", a], ["ip", "netns", "exec", b]
        spec = LinkSpec(5e6, delay_ms=20, jitter_ms=2, loss_pct=1, queue_packets=50, outages=True)
        link = LinkDirection(spec, Endpoint("g0", pa, a), Endpoint("g1", pb, b), "netem")
        link.setup()
        qdiscs = tc(pa, "qdisc", "show", "dev", "g0")
        assert "qdisc htb 1:" in qdiscs
        assert "qdisc netem" in qdiscs and "limit 50" in qdiscs and "delay 20ms  2ms" in qdiscs and "loss 1%" in qdiscs
        assert class_rate(tc(pa, "class", "show", "dev", "g0")) == 5e6
        assert link.stage is not None and not link.stage.serialise  # outages only: netem paces the frames
        trace = Trace(np.array([0.0, 0.3]), np.array([2e6, 0.0]), 3600.0, loop=False)
        replayer = TraceReplayer([link.shaper], [trace], TcBatch(pa), stages=[link.stage])
        replayer.start()
        time.sleep(1.0)
        replayer.stop()
        replayer.close()
        rates = [rate for _, _, rate in replayer.applied]
        assert rates[0] == 2e6 and rates[-1] == 0.0  # the trace's rate, then its outage
        assert class_rate(tc(pa, "class", "show", "dev", "g0")) == pytest.approx(rates[-2], rel=0.01)  # kept
        link.remove()
        assert "netem" not in tc(pa, "qdisc", "show", "dev", "g0")
        assert "NFQUEUE" not in subprocess.run([*pb, "iptables", "-t", "raw", "-S"], capture_output=True,
                                               text=True).stdout
    finally:
        nets.remove()
    assert not Path("/run/netns", a).exists() and not Path("/run/netns", b).exists()


def test_cgroup_v2_writes_what_the_kernel_expects_and_removes_exactly_its_groups():
    from splitbed.devices.cgroups import CgroupManager

    before = sorted(p.name for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir())
    manager = CgroupManager(f"splitbed-guest-{os.getpid()}")
    group = manager.create("edge")
    if systemd_is_init():  # systemd owns the tree: the group sits in a scope it delegated to us
        unit = f"splitbed-guest-{os.getpid()}.scope"
        assert group.dirs["cpu"].parent.name == unit
        assert systemctl("show", "-p", "Delegate", "--value", unit) == "yes"
    group.set_cpu(0.5, period_us=10_000)
    group.set_cpuset("0")
    group.set_memory(256 << 20)
    sleeper = group.popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        directory = group.dirs["cpu"]
        assert (directory / "cpu.max").read_text().split() == ["5000", "10000"]
        assert (directory / "cpuset.cpus").read_text().strip() == "0"
        assert int((directory / "memory.max").read_text()) == 256 << 20
        assert sleeper.pid in [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    finally:
        sleeper.kill()
        sleeper.wait()
        manager.remove_all()
    assert sorted(p.name for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()) == before
    assert not directory.exists()
    if systemd_is_init():
        for _ in range(100):  # systemd stops the emptied scope a moment later
            if systemctl("show", "-p", "LoadState", "--value", unit) == "not-found":
                break
            time.sleep(0.05)
        assert systemctl("show", "-p", "LoadState", "--value", unit) == "not-found"
        assert not directory.parent.exists()


def test_runs_under_systemd_from_a_login_session():
    """make guest-test boots systemd as PID 1 and runs pytest from a root login session, as users do."""
    assert Path("/proc/1/comm").read_text().strip() == "systemd"
    assert "/user.slice/" in Path("/proc/self/cgroup").read_text() and ".scope" in Path("/proc/self/cgroup").read_text()


def test_a_tiny_scenario_runs_end_to_end_on_the_netem_path(tmp_path):
    text = f"""name: guest
topology: {{kind: single, edges: 1}}
nodes: {{edge: {{device: server}}, server: {{device: server}}}}
links:
  uplink: {{rate_mbit: 10, delay_ms: 10, jitter_ms: 1, loss_pct: 0.5}}
  downlink: {{rate_mbit: 10, delay_ms: 10}}
model: fmnist_cnn
dataset: fashion-mnist-test
workload: {{requests: 4, warmup: 1, deadline_s: 60}}
plan: {{name: raw-conv1, type: fixed, split: conv1, codec: raw}}
output: {tmp_path / 'results'}
"""
    run_dir, manifest = run_scenario_text(tmp_path, text, "guest", timeout=900)
    assert manifest["link_backend"] == "netem" and manifest["cpu_backend"] == "cgroup-v2"
    assert manifest["status"] == "complete"
    rows = (run_dir / "requests.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and all(line.endswith(",ok") for line in rows[1:])
    assert (run_dir / "summary.csv").exists()
