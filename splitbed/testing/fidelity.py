"""Measure a shaped link against what it was configured to do (used by benchmarks/fidelity.py and tests).

Two throw-away namespaces joined by a veth, each direction built by the run's own LinkDirection on
the chosen backend (HTB + the NFQUEUE stage, or HTB + netem: Mininet's TCLink layout), a bulk TCP
flow across, and the received bytes binned per second next to the configured rate (times the TCP/IP
header efficiency).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from splitbed.host.containers import Container, ImageInfo
from splitbed.network.links import Endpoint, LinkDirection, LinkSpec, replay
from splitbed.network.traces import Trace
from splitbed.testing.netns import NetnsSet, in_netns

_bench_ids = itertools.count()

# What TCP payload a shaped Ethernet frame carries: MSS 1448 (with timestamps) in a 1514-byte frame.
MSS_BYTES, FRAME_BYTES = 1448, 1514
GOODPUT_EFFICIENCY = MSS_BYTES / FRAME_BYTES
PING_FRAME_BYTES = 98  # ping's 56-byte payload + ICMP, IP and Ethernet headers
UDP_EFFICIENCY = 1472 / 1514  # UDP payload in a full frame
REPO = Path(__file__).resolve().parents[2]
PORT = 5201


@dataclass
class Bench:
    """Sender namespace `a` (shaped egress), receiver namespace `b` (a container's, when `receiver`
    names an image: the link ends in it and the receiving program runs in it); links on `backend`."""

    nets: NetnsSet
    a: str
    b: str
    backend: str = "htb+nfqueue"
    links: list[LinkDirection] = field(default_factory=list)
    container: Container | None = None

    @classmethod
    def create(cls, backend: str = "htb+nfqueue", receiver: ImageInfo | None = None) -> Bench:
        """Fresh namespaces, named by PID and a counter so benches can run side by side."""
        tag = f"{os.getpid()}-{next(_bench_ids)}"
        nets, container = NetnsSet(), None
        try:
            a = nets.add(f"sbA-{tag}")
            if receiver is not None:
                container = Container(f"splitbed-bench-{tag}", receiver).start(None)
                b = nets.attach(f"sbB-{tag}", container.pid)
            else:
                b = nets.add(f"sbB-{tag}")
            nets.veth(a, "sba0", "10.251.0.1", b, "sbb0", "10.251.0.2")
        except BaseException:
            nets.remove()
            if container is not None:
                container.remove()
            raise
        return cls(nets, a, b, backend, container=container)

    def shape(self, spec: LinkSpec, backward: bool = False) -> LinkDirection:
        """Build one direction (a->b, or b->a when `backward`) as a run builds its links."""
        ends = [Endpoint("sba0", ["ip", "netns", "exec", self.a], self.a),
                Endpoint("sbb0", ["ip", "netns", "exec", self.b], self.b)]
        sender, receiver = ends[::-1] if backward else ends
        link = LinkDirection(spec, sender, receiver, self.backend)
        self.links.append(link)
        link.setup()
        return link

    def python(self, ns: str, *args: str) -> list[str]:
        if ns == self.b and self.container is not None:
            return [*self.container.prefix(), self.container.image.python, "-m", "splitbed.testing.bulk", *args]
        return in_netns(ns, ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "splitbed.testing.bulk", *args])

    def transfer(self, seconds: float, on_start=None, udp_rate_bps: float | None = None
                 ) -> tuple[list[list[int]], float]:
        """Run a bulk flow a->b for `seconds` (TCP, or UDP paced at udp_rate_bps); returns receiver
        bins and the monotonic start time."""
        recv, send = ("udprecv", "udpsend") if udp_rate_bps else ("recv", "send")
        receiver = subprocess.Popen(self.python(self.b, recv, str(PORT), str(seconds)),
                                    stdout=subprocess.PIPE, text=True)
        processes = [receiver]
        try:
            if receiver.stdout.readline().strip() != "listening":
                raise OSError("bulk receiver did not start")
            started = on_start() if on_start else time.monotonic()
            extra = [str(udp_rate_bps)] if udp_rate_bps else []
            processes.append(subprocess.Popen(self.python(self.a, send, "10.251.0.2", str(PORT), str(seconds + 1),
                                                          *extra)))
            bins = json.loads(receiver.stdout.readline())
            for process in processes:
                process.wait(timeout=15)
        finally:
            for process in processes:  # both end with their namespaces anyway; do not leave them to that
                if process.poll() is None:
                    process.kill()
                    process.wait()
        return bins, started

    def remove(self) -> None:
        for link in self.links:
            link.remove()
        self.nets.remove()
        if self.container is not None:
            self.container.remove()


def per_second(bins: list[list[int]], origin_s: float, seconds: int) -> np.ndarray:
    """Received bit/s in each whole second after origin."""
    out = np.zeros(seconds)
    for t_ns, count in bins:
        k = int(t_ns / 1e9 - origin_s)
        if 0 <= k < seconds:
            out[k] += count * 8
    return out


def follow_trace(trace: Trace, seconds: int, step_s: float = 0.1, queue_packets: int = 100,
                 backend: str = "htb+nfqueue") -> dict:
    """Replay `trace` on a fresh link for `seconds` and compare per-second goodput with it."""
    bench = Bench.create(backend)
    try:
        link = bench.shape(LinkSpec(trace.rate_at(0), queue_packets=queue_packets))
        replayer = replay([link], [trace], step_s)
        try:
            bins, origin = bench.transfer(seconds, on_start=replayer.start)
        finally:
            replayer.stop()
            tc_errors = replayer.close()
        achieved = per_second(bins, origin, seconds)
        expected = np.array([trace.mean_rate_over(k, k + 1) for k in range(seconds)]) * GOODPUT_EFFICIENCY
        # the first second holds TCP's slow start: compare from the second one on
        errors = np.abs(achieved[1:] - expected[1:]) / expected[1:] * 100
        return {"trace": Path(trace.source).name, "seconds": seconds, "step_s": step_s,
                "median_error_pct": float(np.median(errors)), "p90_error_pct": float(np.percentile(errors, 90)),
                "achieved_bps": achieved.tolist(), "expected_bps": expected.tolist(),
                "rate_changes": len(replayer.applied), "tc_errors": tc_errors.strip()}
    finally:
        bench.remove()


def ping(ns: str, address: str, count: int, interval_s: float) -> tuple[float | None, float]:
    """(mean RTT in ms, loss in %) as the application sees it: ping -U times user to user, because
    ping's default kernel receive timestamps are taken before a receiver-side delay stage holds the
    packet."""
    done = subprocess.run(in_netns(ns, ["ping", "-U", "-q", "-n", "-c", str(count), "-i", str(interval_s),
                                        "-W", "2", address]), capture_output=True, text=True)
    loss = re.search(r"([\d.]+)% packet loss", done.stdout)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", done.stdout)
    if loss is None:
        raise OSError(f"ping failed: {done.stdout} {done.stderr}")
    return (float(rtt.group(1)) if rtt else None), float(loss.group(1))


def measure_link(rate_bps: float, delay_ms: float, loss_pct: float, seconds: int = 5,
                 probes: int = 2000, backend: str = "htb+nfqueue") -> dict:
    """A link of `rate_bps` and `delay_ms` each way, `loss_pct` on the forward direction: measured
    RTT (40 probes), forward loss (`probes` pings) and bulk TCP goodput against the configuration."""
    bench = Bench.create(backend)
    try:
        bench.shape(LinkSpec(rate_bps, delay_ms, loss_pct=loss_pct))
        bench.shape(LinkSpec(rate_bps, delay_ms), backward=True)
        rtt_ms, _ = ping(bench.a, "10.251.0.2", 40, 0.05)
        measured_loss = ping(bench.a, "10.251.0.2", probes, 0.002)[1] if probes else 0.0
        bins, origin = bench.transfer(seconds)
        goodput = float(np.mean(per_second(bins, origin, seconds)[2:]))  # past slow start
        expected = rate_bps * GOODPUT_EFFICIENCY
        expected_rtt = 2 * delay_ms + 2 * PING_FRAME_BYTES * 8 / rate_bps * 1000  # delay + serialisation
        return {"backend": backend, "rate_bps": rate_bps, "delay_ms": delay_ms, "loss_pct": loss_pct,
                "rtt_ms": rtt_ms, "expected_rtt_ms": expected_rtt, "rtt_error_ms": abs(rtt_ms - expected_rtt),
                "measured_loss_pct": measured_loss, "loss_error_pts": abs(measured_loss - loss_pct),
                "goodput_bps": goodput, "rate_error_pct": abs(goodput - expected) / expected * 100}
    finally:
        bench.remove()


def fixed_rate_goodput(rate_bps: float, seconds: int = 4, udp: bool = False, backend: str = "htb+nfqueue",
                       receiver: ImageInfo | None = None) -> dict:
    """Goodput through HTB at a fixed rate: bulk TCP, or UDP offered at 1.2x the rate; the receiver in a
    container of image `receiver` when given."""
    bench = Bench.create(backend, receiver)
    try:
        bench.shape(LinkSpec(rate_bps))
        bins, origin = bench.transfer(seconds, udp_rate_bps=1.2 * rate_bps if udp else None)
        achieved = per_second(bins, origin, seconds)[1:]  # skip TCP's slow start (and UDP's first bin)
        goodput = float(np.mean(achieved))
        expected = rate_bps * (UDP_EFFICIENCY if udp else GOODPUT_EFFICIENCY)
        return {"protocol": "udp" if udp else "tcp", "rate_bps": rate_bps, "goodput_bps": goodput,
                "expected_goodput_bps": expected, "rate_error_pct": abs(goodput - expected) / expected * 100}
    finally:
        bench.remove()


def outage_delivery(rate_bps: float, on_s: float = 2.0, off_s: float = 2.0, cycles: int = 3,
                    grace_s: float = 0.02, backend: str = "htb+nfqueue") -> dict:
    """A bulk TCP flow over a replayed trace that alternates on_s at rate_bps with off_s of outage:
    bytes received during each outage (from grace_s after its start: the replay's own step timing)
    and how long after each outage's end delivery resumed (first 10 ms bin with bytes)."""
    period = on_s + off_s
    trace = Trace(np.array([0.0, on_s]), np.array([rate_bps, 0.0]), period, "on-off")
    seconds = period * cycles + on_s
    bench = Bench.create(backend)
    try:
        link = bench.shape(LinkSpec(rate_bps, outages=True))
        replayer = replay([link], [trace])
        try:
            bins, origin = bench.transfer(int(np.ceil(seconds)), on_start=replayer.start)
        finally:
            replayer.stop()
            replayer.close()
        times = np.array([b[0] / 1e9 - origin for b in bins])
        counts = np.array([b[1] for b in bins])
        during, resume_ms = [], []
        for k in range(cycles):
            start, end = k * period + on_s, (k + 1) * period
            during.append(int(counts[(times >= start + grace_s) & (times < end)].sum()))
            after = times[(times >= end) & (counts > 0)]
            resume_ms.append(float((after.min() - end) * 1000) if len(after) else float("inf"))
        return {"trace": f"{on_s:g} s at {rate_bps / 1e6:g} Mbit/s, {off_s:g} s outage, x{cycles}",
                "outage_s": off_s, "bytes_during_outage": int(sum(during)), "bytes_per_outage": during,
                "resume_ms": resume_ms, "resume_ms_max": max(resume_ms),
                "bytes_total": int(counts.sum())}
    finally:
        bench.remove()


def message_delivery(rate_bps: float, size: int, gap_s: float, count: int = 10, delay_ms: float = 0.0,
                     built_at_bps: float | None = None, backend: str = "htb+nfqueue", reverse_delay_ms: float = 0.0,
                     congestion: str = "cubic") -> dict:
    """Messages of `size` bytes after idle gaps, as requests travel: per message, the time from
    sending to its last byte arriving, against what a real link takes (`link_ms`: serialising its
    frames, plus the delay). A shaper that kept a bucket of credit through the gap would deliver them
    early. HTB alone (delay_ms 0: no stage) sends a frame when its serialisation would start: expect
    link_ms - last_frame_ms; with the receiver's stage (delay_ms > 0), which adds each frame's own
    time, expect link_ms. With `built_at_bps`, the link is built at that rate and a TraceReplayer
    moves shaper and stage to rate_bps first, as a replayed trace does. `reverse_delay_ms` delays the
    acknowledgements too (a scenario's round trip); `congestion` is the sender's congestion control."""
    bench = Bench.create(backend)
    replayer = None
    try:
        link = bench.shape(LinkSpec(built_at_bps or rate_bps, delay_ms))
        if reverse_delay_ms:
            bench.shape(LinkSpec(None, reverse_delay_ms), backward=True)
        if built_at_bps:
            constant = Trace(np.array([0.0]), np.array([rate_bps]), 3600.0, loop=False)
            replayer = replay([link], [constant])
            replayer.start()
            time.sleep(0.2)
        receiver = subprocess.Popen(bench.python(bench.b, "msgrecv", str(PORT), str(count), str(size)),
                                    stdout=subprocess.PIPE, text=True)
        try:
            if receiver.stdout.readline().strip() != "listening":
                raise OSError("message receiver did not start")
            subprocess.run(bench.python(bench.a, "msgsend", "10.251.0.2", str(PORT), str(count), str(size), str(gap_s),
                                        congestion),
                           check=True, timeout=count * (gap_s + 5) + 10)
            delivery = json.loads(receiver.stdout.readline())
        finally:
            if receiver.poll() is None:
                receiver.kill()
            receiver.wait()
        frames = -(-size // MSS_BYTES)
        overhead = FRAME_BYTES - MSS_BYTES
        last_frame = size - (frames - 1) * MSS_BYTES + overhead
        return {"backend": backend, "rate_bps": rate_bps, "size": size, "gap_s": gap_s, "delay_ms": delay_ms,
                "reverse_delay_ms": reverse_delay_ms, "congestion": congestion, "delivery_ms": delivery,
                "delivery_ms_median": float(np.median(delivery)),
                "link_ms": (size + frames * overhead) * 8 / rate_bps * 1000 + delay_ms,
                "last_frame_ms": last_frame * 8 / rate_bps * 1000}
    finally:
        if replayer:
            replayer.stop()
            replayer.close()
        bench.remove()
