"""One direction of an emulated link: what it should do (LinkSpec) and the kernel objects doing it.

Rate is HTB on the sending interface's egress. Delay, jitter and loss come from netem as the HTB
leaf where the kernel has netem, else from the receiver-side NFQUEUE stage (delay.py) plus the
iptables statistic match for loss; that stage also adds each frame's serialisation time, which HTB
alone leaves out (a link without delay, jitter or loss has no stage and goes without it). A
parameter the chosen backend cannot honour is a UserError before anything is created, never a
warning.
"""

from __future__ import annotations

from dataclasses import dataclass

from splitbed.errors import UserError
from splitbed.host.state import RunState
from splitbed.network.delay import DelayStage
from splitbed.network.shaping import HtbShaper, TcBatch, TraceReplayer
from splitbed.network.traces import Trace

BACKENDS = ("netem", "htb+nfqueue")


@dataclass(frozen=True)
class LinkSpec:
    rate_bps: float | None = None  # None: unshaped
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    queue_packets: int | None = 100
    queue_bytes: int | None = None
    outages: bool = False  # a replayed trace with zero-rate periods: needs the delay stage to hold frames

    def check(self, backend: str | None, where: str = "link") -> None:
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise UserError(f"rate must be positive, got {self.rate_bps} bit/s", where=where)
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise UserError("delay and jitter must be >= 0 ms", where=where)
        if not 0 <= self.loss_pct < 100:
            raise UserError(f"loss must be in [0, 100) %, got {self.loss_pct}", where=where)
        if self.queue_packets is not None and self.queue_packets < 1:
            raise UserError("queue size must be at least one packet", where=where)
        needs_delay = self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0 or self.outages
        if needs_delay and backend not in BACKENDS:
            raise UserError(f"delay/jitter/loss or a trace with outages asked for, but link backend {backend!r} "
                            "cannot emulate them",
                            where=where, fix="run 'sudo python run_scenario.py --check' to see why; "
                                             "the kernel needs netem, or NFQUEUE with NetfilterQueue")

    @property
    def shaped(self) -> bool:
        return self.rate_bps is not None or self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0


def netem_leaf(spec: LinkSpec) -> list[str]:
    """netem as the HTB leaf: delay, jitter, loss and the queue limit in one qdisc."""
    args = ["netem", "limit", str(spec.queue_packets or 1000)]
    if spec.delay_ms or spec.jitter_ms:
        args += ["delay", f"{spec.delay_ms}ms"] + ([f"{spec.jitter_ms}ms"] if spec.jitter_ms else [])
    if spec.loss_pct:
        args += ["loss", f"{spec.loss_pct}%"]
    return args


@dataclass
class Endpoint:
    """An interface and how to run commands in its namespace."""

    dev: str
    prefix: list[str]  # [] for the root namespace
    netns: str | None = None  # name for state records (None: the root namespace, or a Mininet host's)


@dataclass
class LinkDirection:
    """Sender -> receiver: HTB at the sender, delay/loss where the backend puts it."""

    spec: LinkSpec
    sender: Endpoint
    receiver: Endpoint
    backend: str
    queue_num: int = 1  # NFQUEUE number, unique per receiving namespace
    state: RunState | None = None
    shaper: HtbShaper | None = None
    stage: DelayStage | None = None

    def setup(self) -> None:
        self.spec.check(self.backend)
        if not self.spec.shaped:
            return
        if self.spec.rate_bps is not None or self.backend == "netem":
            rate = self.spec.rate_bps if self.spec.rate_bps is not None else 10e9
            leaf = netem_leaf(self.spec) if self.backend == "netem" else None
            self.shaper = HtbShaper(self.sender.prefix, self.sender.dev, rate, self.spec.queue_packets,
                                    self.spec.queue_bytes, self.state, self.sender.netns, leaf=leaf)
            self.shaper.setup()
        nfqueue = self.backend == "htb+nfqueue"
        if (nfqueue and (self.spec.delay_ms or self.spec.jitter_ms or self.spec.loss_pct)) or self.spec.outages:
            # the stage also holds each frame for its serialisation at this direction's rate (delay.py),
            # and every frame during a trace's outages; with netem, netem does the rest
            self.stage = DelayStage(self.receiver.prefix, self.receiver.dev, self.queue_num,
                                    self.spec.delay_ms if nfqueue else 0.0, self.spec.jitter_ms if nfqueue else 0.0,
                                    self.spec.loss_pct if nfqueue else 0.0, rate_bps=self.spec.rate_bps,
                                    outages=self.spec.outages, serialise=nfqueue,
                                    outage_limit=self.spec.queue_packets or 1000, state=self.state,
                                    netns=self.receiver.netns)
            self.stage.setup()

    def remove(self) -> None:
        if self.stage:
            self.stage.remove()
        if self.shaper:
            self.shaper.remove()


def replay(links: list[LinkDirection], traces: list[Trace], step_s: float = 0.1) -> TraceReplayer:
    """A replayer (not started) of each link's trace from its start, all on one clock: the rate is set
    on the link's HTB class in its sender's namespace, and its delay stage (if any) is told each new
    rate, so it serialises at it and holds frames through outages."""
    return TraceReplayer([link.shaper for link in links], traces, [TcBatch(link.sender.prefix) for link in links],
                         step_s, stages=[link.stage for link in links])
