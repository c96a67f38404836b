"""The energy a device's radio spends on a request, from published power models.

A radio model (a link's `radio:`) is linear in throughput while data moves and has the cellular
state machine around it (Huang et al., MobiSys 2012): power = alpha_up x uplink Mbit/s + alpha_down x
downlink Mbit/s + base while sending or receiving, so a transfer costs alpha x Mbit + base x its time;
after the last packet the radio stays connected for `tail_ms` at `tail_mw` (a request that comes
within it finds the radio connected and pays no promotion); later it is idle (`idle_mw`), and the
next transfer first pays `promotion_ms` at `promotion_mw` (energy only: the emulated link has no
promotion delay). Units: mW x s = mJ, so alpha [mW per Mbit/s] x Mbit = mJ and power [mW] x ms / 1000 = mJ.

Each plan is charged as if it ran alone, its requests back to back (`interval_s` apart when the
workload says so): plans that take turns on one node would otherwise share one radio, and each would
pay for the others' tails (RadioTimeline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from splitbed.registry import Registry

MSS, SEGMENT_HEADERS = 1448, 52  # TCP payload per segment and its IP + TCP headers (with timestamps)


def on_air_bits(payload_bytes: int) -> float:
    """A TCP message's bits on the link, its segments' headers included."""
    return 8.0 * (payload_bytes + SEGMENT_HEADERS * math.ceil(payload_bytes / MSS))


@dataclass(frozen=True)
class RadioModel:
    name: str
    alpha_up: float  # mW per Mbit/s of uplink throughput
    alpha_down: float  # mW per Mbit/s of downlink throughput
    base_mw: float  # while sending or receiving, above the throughput terms
    tail_ms: float  # connected after the last packet
    tail_mw: float
    promotion_ms: float  # idle -> connected
    promotion_mw: float
    idle_mw: float
    source: str

    def transfer_mj(self, bits: float, ms: float, up: bool) -> float:
        """A transfer of `bits` taking `ms` on the link."""
        return (self.alpha_up if up else self.alpha_down) * bits / 1e6 + self.base_mw * ms / 1e3

    def quiet_mj(self, since_last_ms: float, ms: float) -> float:
        """`ms` without data, starting `since_last_ms` after the last packet: tail, then idle."""
        tail = min(ms, max(0.0, self.tail_ms - since_last_ms))
        return (self.tail_mw * tail + self.idle_mw * (ms - tail)) / 1e3

    def promotion_mj(self) -> float:
        return self.promotion_mw * self.promotion_ms / 1e3


HUANG_2012 = ("J. Huang et al., A Close Examination of Performance and Power Characteristics of 4G LTE "
              "Networks, MobiSys 2012, Tables 3 and 4")

# Radio models by name (a link's `radio:`). Their idle power is the RRC_IDLE paging average: 594.3 mW
# for 43.2 ms every 1.28 s (LTE); WiFi's is 0 (its idle draw is in its base).
RADIOS: Registry[RadioModel] = Registry("radio", {
    "lte": RadioModel("lte", alpha_up=438.39, alpha_down=51.97, base_mw=1288.04, tail_ms=11576.0, tail_mw=1060.0,
                      promotion_ms=260.1, promotion_mw=1210.7, idle_mw=594.3 * 43.2 / 1280.0, source=HUANG_2012),
    "wifi": RadioModel("wifi", alpha_up=283.17, alpha_down=137.01, base_mw=132.86, tail_ms=238.1, tail_mw=119.3,
                       promotion_ms=79.1, promotion_mw=124.4, idle_mw=0.0, source=HUANG_2012),
})


@dataclass
class RadioTimeline:
    """One plan's radio over its requests, as if the plan ran alone: each request starts when the
    previous one ended (or `interval_ms` after the previous one started)."""

    model: RadioModel
    interval_ms: float = 0.0
    since_last_ms: float = float("inf")  # since the last packet, at the start of the next request

    def request_mj(self, head_ms: float, encode_ms: float, up_ms: float, server_ms: float, down_ms: float,
                   up_bits: float, down_bits: float) -> float:
        """The radio's energy over one request and the quiet gap after it (until the next request)."""
        before_send = head_ms + encode_ms
        e2e = before_send + up_ms + server_ms + down_ms
        gap = max(0.0, self.interval_ms - e2e)
        if up_bits <= 0:  # edge-only: no packet; the radio idles on from its last one
            energy = self.model.quiet_mj(self.since_last_ms, e2e + gap)
            self.since_last_ms += e2e + gap
            return energy
        energy = self.model.quiet_mj(self.since_last_ms, before_send)
        if self.since_last_ms + before_send >= self.model.tail_ms:
            energy += self.model.promotion_mj()
        energy += self.model.transfer_mj(up_bits, up_ms, up=True)
        energy += self.model.quiet_mj(0.0, server_ms)  # connected, waiting for the answer
        energy += self.model.transfer_mj(down_bits, down_ms, up=False)
        energy += self.model.quiet_mj(0.0, gap)
        self.since_last_ms = gap
        return energy

    def probe_mj(self, up_bits: float, up_ms: float, down_bits: float, down_ms: float) -> float:
        """A transfer between requests (a planner's probe of the link): promotion if the radio was idle,
        both transfers; the next request starts right after it."""
        energy = self.model.promotion_mj() if self.since_last_ms >= self.model.tail_ms else 0.0
        energy += self.model.transfer_mj(up_bits, up_ms, up=True) + self.model.transfer_mj(down_bits, down_ms, up=False)
        self.since_last_ms = 0.0
        return energy
