"""Delay, jitter and loss on kernels without netem: an NFQUEUE stage on the RECEIVING side.

Packets arriving on an interface jump from the raw table's PREROUTING to an NFQUEUE; this program,
running in the receiver's namespace, holds each one until its release time (arrival + delay + jitter,
never earlier than the packet before it, so the order is kept) and then accepts it. Holding packets
on the sender's side instead throttled TCP to 2 Mbit/s here: delay must sit after the bottleneck.
Loss is in-kernel, before the queue: `-m statistic --mode random --probability P -j DROP`.

    python -m splitbed.topologies.delay QUEUE_NUM DELAY_MS [JITTER_MS] [SEED]
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
from splitbed.topologies.state import RunState

QUEUE_MAXLEN = 8192


def serve(queue_num: int, delay_ms: float, jitter_ms: float = 0.0, seed: int = 0) -> None:
    """Single-threaded: read queued packets and release due ones from one select() loop."""
    from netfilterqueue import NetfilterQueue

    rng = random.Random(seed)
    held: collections.deque = collections.deque()
    last_release = 0.0

    def on_packet(packet) -> None:
        nonlocal last_release
        extra = rng.gauss(0.0, jitter_ms) if jitter_ms else 0.0
        release = max(time.monotonic() + max(0.0, delay_ms + extra) / 1000, last_release)
        last_release = release
        held.append((release, packet))  # verdict later: the kernel keeps the packet meanwhile

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
    try:
        while running:
            now = time.monotonic()
            while held and held[0][0] <= now:
                held.popleft()[1].accept()
            timeout = max(0.0, held[0][0] - now) if held else 0.5
            readable, _, _ = select.select([fd], [], [], timeout)
            if readable:
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
        if self.delay_ms > 0 or self.jitter_ms > 0:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "splitbed.topologies.delay", str(self.queue_num),
                 str(self.delay_ms), str(self.jitter_ms), str(self.seed)],
                stdout=subprocess.PIPE, text=True, env=env)
            if self.state:
                self.state.process(self.process.pid)
            if self.process.stdout.readline().strip() != "ready":
                self.remove()
                raise OSError("the NFQUEUE delay program did not start (is NetfilterQueue installed?)")
            self.add_rule(["-j", "NFQUEUE", "--queue-num", str(self.queue_num)])

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
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


if __name__ == "__main__":
    args = sys.argv[1:]
    if not 2 <= len(args) <= 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    serve(int(args[0]), float(args[1]), float(args[2]) if len(args) > 2 else 0.0,
          int(args[3]) if len(args) > 3 else 0)
