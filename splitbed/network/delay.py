"""Delay, jitter, loss and serialisation on kernels without netem: an NFQUEUE stage on the RECEIVING side.

Packets arriving on an interface jump from the raw table's PREROUTING to an NFQUEUE; this program,
running in the receiver's namespace, holds each one until its release time and then accepts it: the
later of (arrival + delay + jitter) and the packet before it's release (so the order is kept), plus its
own serialisation time at the link's rate (so frames leave one frame-time apart, as a link sends them,
even when HTB let several out together after an idle gap). Holding packets on the sender's side
instead throttled TCP to 2 Mbit/s here: delay must sit after the bottleneck. Loss is in-kernel, before the queue:
`-m statistic --mode random --probability P -j DROP`.

Serialisation: HTB at the sender lets a frame go when the link would START sending it (its credit is
not negative), so every frame arrives one frame-time early; at 0.3 Mbit/s a full frame is 40 ms.
Given the link's rate, the stage adds each frame's own time; the rate follows a replayed trace
through lines written to the program's stdin (one rate in bit/s per line).

    python -m splitbed.network.delay QUEUE_NUM DELAY_MS [JITTER_MS] [SEED] [RATE_BPS] [SERIALISE] [OUTAGE_LIMIT]
"""

from __future__ import annotations

import collections
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from splitbed.errors import UserError
from splitbed.host.state import RunState

QUEUE_MAXLEN = 8192
ETHERNET_HEADER_BYTES = 14  # NFQUEUE hands over the IP packet; the link also sent the frame header


def serve(queue_num: int, delay_ms: float, jitter_ms: float = 0.0, seed: int = 0, rate_bps: float = 0.0,
          serialise: bool = True, outage_limit: int = 1000) -> None:
    """Single-threaded: read queued packets and rate updates, release due packets, from one select() loop.

    Rate updates arrive on stdin, one number a line. Rate 0 is an outage: frames are held (at most
    outage_limit; later ones are dropped, as a full queue would) and released at the next non-zero
    rate, one after another at that rate, as a link that carried nothing meanwhile."""
    from netfilterqueue import NetfilterQueue

    rng = random.Random(seed)
    held: collections.deque = collections.deque()  # [release time or None while in an outage, packet]
    last_release = 0.0
    rate = rate_bps  # 0 at the start: no rate known, so no serialisation (an outage only comes as an update)
    outage = False

    def serialisation_s(packet) -> float:
        return (packet.get_payload_len() + ETHERNET_HEADER_BYTES) * 8 / rate if serialise and rate > 0 else 0.0

    def on_packet(packet) -> None:
        nonlocal last_release
        if outage:  # no release time until the link carries again
            if sum(1 for entry in held if entry[0] is None) >= outage_limit:
                packet.drop()
            else:
                held.append([None, packet])
            return
        extra = rng.gauss(0.0, jitter_ms) if jitter_ms else 0.0
        release = max(time.monotonic() + max(0.0, delay_ms + extra) / 1000, last_release) + serialisation_s(packet)
        last_release = release
        held.append([release, packet])  # verdict later: the kernel keeps the packet meanwhile

    def outage_ends() -> None:
        nonlocal last_release
        start = max(time.monotonic() + delay_ms / 1000, last_release)
        for entry in held:
            if entry[0] is None:
                start += serialisation_s(entry[1])
                entry[0] = last_release = start

    queue = NetfilterQueue()
    queue.bind(queue_num, on_packet, max_len=QUEUE_MAXLEN)
    fd = queue.get_fd()
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    updates = sys.stdin.fileno()
    inputs, pending = [fd, updates], b""
    try:
        while running:
            now = time.monotonic()
            while held and held[0][0] is not None and held[0][0] <= now:
                held.popleft()[1].accept()
            timeout = max(0.0, held[0][0] - now) if held and held[0][0] is not None else 0.5
            readable, _, _ = select.select(inputs, [], [], timeout)
            if updates in readable:
                chunk = os.read(updates, 4096)
                if not chunk:
                    inputs = [fd]  # the runner closed our input: keep the last rate
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    try:
                        new_rate = float(line)
                    except ValueError:
                        continue  # only the runner writes here; a bad line changes nothing
                    if not new_rate >= 0:  # NaN
                        continue
                    if new_rate == 0:
                        outage = True
                    else:
                        rate = new_rate
                        if outage:
                            outage = False
                            outage_ends()
            if fd in readable:
                queue.run(block=False)
    finally:
        for _, packet in held:
            packet.accept()
        queue.unbind()


@dataclass
class DelayStage:
    """Delay/jitter (NFQUEUE program) and loss (iptables statistic) on packets entering `dev`.

    Remembers the exact rules and the process it made; remove() deletes those, by spec and PID.
    """

    prefix: list[str]  # runs commands in the receiver's namespace
    dev: str
    queue_num: int
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    seed: int = 0
    rate_bps: float | None = None  # the link's rate: each packet is also held for its serialisation
    outages: bool = False  # the link's trace has outages: the stage holds frames while the rate is 0
    serialise: bool = True  # False where another qdisc (netem) already paces frames
    outage_limit: int = 1000  # frames held through an outage (the link's queue)
    state: RunState | None = None
    netns: str | None = None  # the namespace `prefix` enters, for the state record
    rules: list[list[str]] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def setup(self) -> None:
        if self.delay_ms < 0 or self.jitter_ms < 0 or not 0 <= self.loss_pct < 100:
            raise UserError(f"impossible link: delay {self.delay_ms} ms, jitter {self.jitter_ms} ms, "
                            f"loss {self.loss_pct}%")
        if self.loss_pct > 0:
            self.add_rule(["-m", "statistic", "--mode", "random", "--probability", f"{self.loss_pct / 100:.6f}",
                           "-j", "DROP"])
        if self.delay_ms > 0 or self.jitter_ms > 0 or self.rate_bps or self.outages:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "splitbed.network.delay", str(self.queue_num),
                 str(self.delay_ms), str(self.jitter_ms), str(self.seed), str(self.rate_bps or 0),
                 "1" if self.serialise else "0", str(self.outage_limit)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
            if self.state:
                self.state.process(self.process.pid)
            if self.process.stdout.readline().strip() != "ready":
                self.remove()
                raise OSError("the NFQUEUE delay program did not start (is NetfilterQueue installed?)")
            self.add_rule(["-j", "NFQUEUE", "--queue-num", str(self.queue_num)])

    def set_rate(self, rate_bps: float) -> None:
        """The link's new rate (a trace step): later packets are held for their time at it; 0 is an
        outage (held until the next non-zero rate)."""
        if (self.rate_bps or self.outages) and self.process is not None and self.process.poll() is None:
            try:
                self.process.stdin.write(f"{rate_bps}\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                pass  # the program ended; remove() reports nothing either
            self.rate_bps = rate_bps

    def add_rule(self, spec: list[str]) -> None:
        rule = ["PREROUTING", "-i", self.dev, *spec]
        if self.state:
            self.state.iptables(rule, "raw", self.netns)
        done = subprocess.run([*self.prefix, "iptables", "-t", "raw", "-A", *rule], capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"iptables -t raw -A {' '.join(rule)}: {done.stderr.strip()}")
        self.rules.append(rule)

    def remove(self) -> None:
        for rule in reversed(self.rules):
            subprocess.run([*self.prefix, "iptables", "-t", "raw", "-D", *rule], capture_output=True)
        self.rules.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


if __name__ == "__main__":
    args = sys.argv[1:]
    if not 2 <= len(args) <= 7:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    serve(int(args[0]), float(args[1]), float(args[2]) if len(args) > 2 else 0.0,
          int(args[3]) if len(args) > 3 else 0, float(args[4]) if len(args) > 4 else 0.0,
          args[5] != "0" if len(args) > 5 else True, int(args[6]) if len(args) > 6 else 1000)
