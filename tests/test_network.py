import re
import statistics
import subprocess

import pytest

from splitbed.errors import UserError
from splitbed.network.links import LinkSpec, netem_leaf
from splitbed.network.topology import EmulatedNetwork, NetworkSpec


def rtt_ms(net, src: str, dst: str) -> float:
    """Median of 10 pings: one reply held up by this noisy host must not move the answer (the mean did)."""
    out = net.host(src).cmd(f"ping -U -n -c 10 -i 0.05 {dst}")
    return statistics.median(float(t) for t in re.findall(r"time=([\d.]+)", out))


def bridges() -> str:
    return subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout


def test_delay_on_a_backend_without_delay_fails_before_anything_starts():
    spec = NetworkSpec("single", 1, LinkSpec(10e6, delay_ms=20))
    with pytest.raises(UserError, match="cannot emulate"):
        EmulatedNetwork(spec, backend=None)
    EmulatedNetwork(NetworkSpec("single", 1, LinkSpec(10e6)), backend=None)  # rate alone is fine


def test_bad_topology_parameters():
    with pytest.raises(UserError, match="exactly 1"):
        NetworkSpec("single", 3).check("htb+nfqueue")
    with pytest.raises(UserError, match="unknown topology"):
        NetworkSpec("ring").check("htb+nfqueue")
    with pytest.raises(UserError, match=r"links\.uplink"):
        NetworkSpec("single", 1, LinkSpec(loss_pct=120)).check("htb+nfqueue")


def test_netem_leaf_carries_every_parameter():
    assert netem_leaf(LinkSpec(1e6, 20, 5, 1.5, queue_packets=50)) == \
        ["netem", "limit", "50", "delay", "20ms", "5ms", "loss", "1.5%"]


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.parametrize("kind,edges,expected_rtt", [("single", 1, 20.0), ("star", 3, 20.0), ("edge-cloud", 1, 30.0)])
def test_topologies_delay_as_configured_and_leave_nothing(kind, edges, expected_rtt):
    before = bridges()
    spec = NetworkSpec(kind, edges, LinkSpec(10e6, 10), LinkSpec(10e6, 10), LinkSpec(50e6, 5), LinkSpec(50e6, 5))
    net = EmulatedNetwork(spec, "htb+nfqueue").start()
    pids = [h.pid for h in net.net.hosts]
    try:
        hops = 2 if kind == "edge-cloud" else 1  # each NFQUEUE pass costs ~0.45 ms
        for edge in net.edge_names:
            assert abs(rtt_ms(net, edge, net.server_ip()) - expected_rtt) <= hops * (1 + 0.02 * expected_rtt)
    finally:
        net.stop()
    assert bridges() == before
    assert not any(subprocess.run(["kill", "-0", str(p)], capture_output=True).returncode == 0 for p in pids)


@pytest.mark.root
@pytest.mark.mininet
def test_slow_start_after_idle_is_turned_off_in_the_hosts_only():
    """tcp.slow_start_after_idle: false writes the sysctl in each host's own namespace, never this
    machine's."""
    path = "/proc/sys/net/ipv4/tcp_slow_start_after_idle"
    before = open(path).read()
    net = EmulatedNetwork(NetworkSpec("single", 1, slow_start_after_idle=False), "htb+nfqueue").start()
    try:
        assert [h.cmd(f"cat {path}").strip() for h in net.net.hosts] == ["0", "0"]
        assert open(path).read() == before
    finally:
        net.stop()
    assert open(path).read() == before
