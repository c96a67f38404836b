"""Mininet topologies for a scenario: single, star and edge-cloud, shaped by our own link backends.

Hosts are Mininet hosts (private network namespaces), or for a node that names an image, a Mininet host
whose shell lives in that container's network namespace (ContainerHost), so links, shaping and the
delay stage are the same code for both kinds of node; the star's switch is a Linux bridge, so no
Open vSwitch kernel datapath or controller is needed. Mininet only builds plain links: rate, delay
and loss come from links.py, because Mininet's TCLink silently drops what the kernel lacks. Every
host shell and bridge is written to the run's state file, so a killed run can be cleaned by id.

    single      e1 ---------------- srv                 (uplink/downlink on the one link)
    star        e1..eN --- s1 ----- srv                 (the s1-srv link is the shared bottleneck)
    edge-cloud  e1 --access-- es --wan-- cloud          (es routes between the two subnets)
"""

from __future__ import annotations

import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from mininet.node import Host

from splitbed.errors import UserError
from splitbed.host.containers import Container
from splitbed.host.state import RunState
from splitbed.network.links import Endpoint, LinkDirection, LinkSpec, replay
from splitbed.network.shaping import TraceReplayer
from splitbed.network.traces import Trace
from splitbed.registry import Registry


@dataclass(frozen=True)
class Layout:
    """A topology kind: its server's name and address, whether it takes several edges, and the
    EmulatedNetwork methods that add its hosts (before Mininet builds) and its links (after)."""

    server_name: str
    server_ip: str
    build: Callable[[EmulatedNetwork], None]
    links: Callable[[EmulatedNetwork], None]
    many_edges: bool = False


PER_NAMESPACE_TCP_SYSCTLS = (4, 15)  # net.ipv4.tcp_* became per network namespace in Linux 4.15

# Topology kinds by name (a scenario's `topology.kind`); filled below EmulatedNetwork, whose methods they name
KINDS: Registry[Layout] = Registry("topology")


@dataclass
class NetworkSpec:
    kind: str = "single"
    edges: int = 1
    uplink: LinkSpec = field(default_factory=LinkSpec)  # edge -> server (access link in edge-cloud)
    downlink: LinkSpec = field(default_factory=LinkSpec)
    wan_up: LinkSpec = field(default_factory=LinkSpec)  # edge-cloud only: edge server -> cloud
    wan_down: LinkSpec = field(default_factory=LinkSpec)
    # False: no host restarts an idle connection's window (net.ipv4.tcp_slow_start_after_idle=0 in
    # each host's namespace); True leaves the kernel's default (on) untouched
    slow_start_after_idle: bool = True

    def check(self, backend: str | None) -> None:
        many = KINDS.lookup(self.kind, where="topology.kind").many_edges
        if self.edges < 1 or (not many and self.edges != 1):
            raise UserError(f"topology {self.kind} takes {'1 or more' if many else 'exactly 1'} "
                            f"edge node(s), got {self.edges}")
        for name in ("uplink", "downlink", "wan_up", "wan_down"):
            getattr(self, name).check(backend, where=f"links.{name}")
        if not self.slow_start_after_idle and kernel_version() < PER_NAMESPACE_TCP_SYSCTLS:
            raise UserError("tcp.slow_start_after_idle: false needs Linux 4.15 or later (before it the setting "
                            "is the whole machine's, not each host's)", where="tcp.slow_start_after_idle",
                            fix="remove it, or run on a newer kernel")


def kernel_version() -> tuple[int, int]:
    numbers = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)


class ContainerHost(Host):
    """A Mininet host in a running container's network namespace instead of a new one: Mininet moves
    the link ends into it and configures them from a shell that has this machine's tools."""

    def __init__(self, name: str, container: Container, **params):
        self.container = container
        super().__init__(name, **params)

    def _popen(self, cmd: list[str], **params):
        if self.shell is None and cmd[:1] == ["mnexec"]:  # the node's shell: enter, don't create, a namespace
            cmd = ["nsenter", "-t", str(self.container.pid), "-n", "mnexec", cmd[1].replace("n", ""), *cmd[2:]]
        return super()._popen(cmd, **params)


def host_endpoint(host, intf: str) -> Endpoint:
    return Endpoint(intf, ["mnexec", "-a", str(host.pid)])


class EmulatedNetwork:
    """Build, shape, and tear down one topology. `directions` maps link names to LinkDirections."""

    def __init__(self, spec: NetworkSpec, backend: str | None, state: RunState | None = None,
                 containers: dict[str, Container] | None = None):
        spec.check(backend)  # everything is checked before anything is created
        self.spec, self.backend, self.state = spec, backend, state
        self.containers = containers or {}  # node name -> its started container
        self.forward_rules: list[list[str]] = []
        self.net = None
        self.directions: dict[str, LinkDirection] = {}
        self.queue_numbers: dict[str, int] = {}

    # --- names the runner uses ------------------------------------------------------------------
    @property
    def edge_names(self) -> list[str]:
        return [f"e{i + 1}" for i in range(self.spec.edges)]

    @property
    def server_name(self) -> str:
        return KINDS[self.spec.kind].server_name

    def server_ip(self) -> str:
        return KINDS[self.spec.kind].server_ip

    def host(self, name: str):
        return self.net.get(name)

    def add_host(self, name: str, ip: str) -> None:
        if name in self.containers:
            self.net.addHost(name, cls=ContainerHost, container=self.containers[name], ip=ip)
        else:
            self.net.addHost(name, ip=ip)

    def prefix(self, name: str) -> list[str]:
        """argv prefix that runs a command inside host `name`'s namespace."""
        return ["mnexec", "-a", str(self.host(name).pid)]

    # --- building -----------------------------------------------------------------------------------
    def start(self) -> EmulatedNetwork:
        from mininet.link import Link
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.nodelib import LinuxBridge

        setLogLevel("error")
        self.net = Mininet(topo=None, switch=LinuxBridge, controller=None, host=Host, link=Link,
                           autoSetMacs=True, waitConnected=False, build=False)
        try:
            KINDS[self.spec.kind].build(self)
            self.net.build()
            if self.state:
                for host in self.net.hosts:
                    self.state.process(host.pid)  # its end takes its namespace and veth ends along
                for switch in self.net.switches:
                    self.state.link(switch.name)
            for switch in self.net.switches:
                self.accept_bridged(switch.name)
            self.net.start()
            self.set_tcp()
            KINDS[self.spec.kind].links(self)
            for direction in self.directions.values():
                direction.setup()
        except BaseException:
            self.stop()
            raise
        return self

    def set_tcp(self) -> None:
        """The scenario's TCP settings, written in each host's own namespace (gone with it)."""
        if self.spec.slow_start_after_idle:
            return
        for host in self.net.hosts:
            answer = host.cmd("sysctl -qw net.ipv4.tcp_slow_start_after_idle=0 && "
                              "cat /proc/sys/net/ipv4/tcp_slow_start_after_idle").strip()
            if answer != "0":
                raise OSError(f"could not turn off slow start after idle in host {host.name}: {answer}")

    def accept_bridged(self, bridge: str) -> None:
        """Frames crossing a bridge pass iptables' FORWARD chain where br_netfilter is on, and a Docker
        daemon turns it on and sets FORWARD's policy to DROP: accept our bridge's own traffic first."""
        rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
        if self.state:
            self.state.iptables(rule, "filter")
        done = subprocess.run(["iptables", "-t", "filter", "-I", *rule], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"iptables -I {' '.join(rule)}: {done.stderr.strip()}")
        self.forward_rules.append(rule)

    def direction(self, name: str, spec: LinkSpec, sender: Endpoint, receiver: Endpoint) -> None:
        key = receiver.prefix[-1] if receiver.prefix else "root"
        self.queue_numbers[key] = self.queue_numbers.get(key, 0) + 1
        self.directions[name] = LinkDirection(spec, sender, receiver, self.backend or "",
                                              self.queue_numbers[key], self.state)

    def build_single(self) -> None:
        self.add_host("e1", "10.0.0.1/24")
        self.add_host("srv", "10.0.0.100/24")
        self.net.addLink("e1", "srv", intfName1="e1-eth0", intfName2="srv-eth0")

    def build_star(self) -> None:
        self.net.addSwitch("s1", stp=False)
        self.add_host("srv", "10.0.0.100/24")
        self.net.addLink("srv", "s1", intfName1="srv-eth0", intfName2="s1-srv")
        for i, name in enumerate(self.edge_names):
            self.add_host(name, f"10.0.0.{i + 1}/24")
            self.net.addLink(name, "s1", intfName1=f"{name}-eth0", intfName2=f"s1-{name}")

    def build_edge_cloud(self) -> None:
        self.add_host("e1", "10.0.1.1/24")
        self.add_host("es", "10.0.1.2/24")
        self.add_host("cloud", "10.0.2.2/24")
        self.net.addLink("e1", "es", intfName1="e1-eth0", intfName2="es-eth0")
        self.net.addLink("es", "cloud", intfName1="es-eth1", intfName2="cloud-eth0")

    def links_single(self) -> None:
        e1, srv = self.host("e1"), self.host("srv")
        self.direction("uplink", self.spec.uplink, host_endpoint(e1, "e1-eth0"), host_endpoint(srv, "srv-eth0"))
        self.direction("downlink", self.spec.downlink, host_endpoint(srv, "srv-eth0"), host_endpoint(e1, "e1-eth0"))

    def links_star(self) -> None:
        """The bridge port towards the server is the shared uplink bottleneck (root namespace); the
        server's egress is the shared downlink; downlink delay acts as each edge receives."""
        srv = self.host("srv")
        self.direction("uplink", self.spec.uplink, Endpoint("s1-srv", []), host_endpoint(srv, "srv-eth0"))
        down_delay = LinkSpec(None, self.spec.downlink.delay_ms, self.spec.downlink.jitter_ms,
                              self.spec.downlink.loss_pct)
        self.direction("downlink", LinkSpec(self.spec.downlink.rate_bps, queue_packets=self.spec.downlink.queue_packets,
                                            queue_bytes=self.spec.downlink.queue_bytes),
                       host_endpoint(srv, "srv-eth0"), host_endpoint(srv, "srv-eth0"))
        for name in self.edge_names:
            self.direction(f"downlink-{name}", down_delay, host_endpoint(srv, "srv-eth0"),
                           host_endpoint(self.host(name), f"{name}-eth0"))

    def links_edge_cloud(self) -> None:
        """Addresses and routes beyond Mininet's one address per host (es routes), then the links."""
        e1, es, cloud = self.host("e1"), self.host("es"), self.host("cloud")
        es.cmd("ip addr add 10.0.2.1/24 dev es-eth1 && sysctl -qw net.ipv4.ip_forward=1")
        e1.cmd("ip route add 10.0.2.0/24 via 10.0.1.2")
        cloud.cmd("ip route add 10.0.1.0/24 via 10.0.2.1")
        self.direction("uplink", self.spec.uplink, host_endpoint(e1, "e1-eth0"), host_endpoint(es, "es-eth0"))
        self.direction("downlink", self.spec.downlink, host_endpoint(es, "es-eth0"), host_endpoint(e1, "e1-eth0"))
        self.direction("wan_up", self.spec.wan_up, host_endpoint(es, "es-eth1"), host_endpoint(cloud, "cloud-eth0"))
        self.direction("wan_down", self.spec.wan_down, host_endpoint(cloud, "cloud-eth0"), host_endpoint(es, "es-eth1"))

    # --- teardown -----------------------------------------------------------------------------------
    def replay(self, traces: dict[str, Trace]) -> TraceReplayer | None:
        """A replayer (not started) of every named link's trace, on one clock; None when no link of
        this network replays one (a rate-less link has no shaper to drive)."""
        traced = {name: trace for name, trace in traces.items()
                  if name in self.directions and self.directions[name].shaper is not None}
        return replay([self.directions[name] for name in traced], list(traced.values())) if traced else None

    def stop(self) -> None:
        for direction in reversed(list(self.directions.values())):
            direction.remove()
        self.directions.clear()
        for rule in self.forward_rules:
            subprocess.run(["iptables", "-t", "filter", "-D", *rule], capture_output=True)
        self.forward_rules.clear()
        if self.net is not None:
            self.net.stop()  # this network's hosts, links and bridge only: never Mininet's cleanup()
            self.net = None


KINDS.add("single", Layout("srv", "10.0.0.100", EmulatedNetwork.build_single, EmulatedNetwork.links_single))
KINDS.add("star", Layout("srv", "10.0.0.100", EmulatedNetwork.build_star, EmulatedNetwork.links_star, many_edges=True))
KINDS.add("edge-cloud", Layout("cloud", "10.0.2.2", EmulatedNetwork.build_edge_cloud, EmulatedNetwork.links_edge_cloud))
