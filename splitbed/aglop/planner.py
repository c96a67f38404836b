"""The latency model and the exact search over options.

Predicted end-to-end latency of an option, for an uplink rate estimate R and a one-way delay d:

    edge-only:  head
    offloaded:  head + encode + wire_bits(bytes) / R + 2 d + decode + tail

wire_bits counts what the shaped link carries: the protocol header, and 66 bytes of Ethernet, IP and
TCP header per 1448-byte segment. The reply is a few hundred bytes on its own link: only its delay d
counts. Server queueing is taken as zero (one client per server in the scenarios planned for).

The search is exact: every allowed option is predicted at once (a numpy expression over arrays built
once), and the smallest wins; tens of options take microseconds, far under the 1 ms per decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitbed.aglop.profile import Option

MSS = 1448
SEGMENT_OVERHEAD = 66  # Ethernet 14 + IPv4 20 + TCP with timestamps 32
REQUEST_OVERHEAD = 80  # frame header (8) + length (2) + the JSON request header


def wire_bits(message_bytes: np.ndarray | float) -> np.ndarray:
    payload = np.asarray(message_bytes, dtype=float) + REQUEST_OVERHEAD
    return 8 * (payload + SEGMENT_OVERHEAD * np.ceil(payload / MSS))


class LatencyModel:
    """Predicted e2e ms of every option at once. edge_scale and server_scale stretch the profiled
    compute times to what the nodes show now (this host's speed drifts)."""

    def __init__(self, options: list[Option]):
        self.options = options
        self.edge_ms = np.array([o.head_ms + o.encode_ms for o in options])
        self.server_ms = np.array([o.decode_ms + o.tail_ms for o in options])
        self.offloads = np.array([o.offloads for o in options])
        self.bits = np.where(self.offloads, wire_bits([o.bytes_mean for o in options]), 0.0)

    def predict(self, uplink_bps: float, one_way_ms: float, edge_scale: float = 1.0,
                server_scale: float = 1.0) -> np.ndarray:
        network_ms = self.bits / max(uplink_bps, 1.0) * 1e3 + 2 * one_way_ms
        return self.edge_ms * edge_scale + np.where(self.offloads, network_ms + self.server_ms * server_scale, 0.0)


@dataclass
class Decision:
    option: Option
    predicted_ms: float
    switched: bool


class Planner:
    """Exact argmin of the latency model over the options within the accuracy budget.

    Hysteresis: the current option is kept while its prediction is within `hysteresis_pct` of the
    best one, so noise in the bandwidth estimate does not make plans flap.
    Compute drift: each answered request's measured edge and server times, against the profile's for
    its option, update two scales (exponential average), as online profilers do; options whose
    profiled time is under MIN_SCALED_MS say too little to count.
    """

    SMOOTHING = 0.2
    MIN_SCALED_MS = 5.0

    def __init__(self, options: list[Option], budget_pts: float = 1.0, hysteresis_pct: float = 0.0):
        self.allowed = [o for o in options if o.drop_pts < budget_pts]
        if not self.allowed:
            raise ValueError(f"no option stays under the accuracy budget of {budget_pts} points")
        self.model = LatencyModel(self.allowed)
        self.hysteresis = hysteresis_pct / 100
        self.current: int | None = None
        self.edge_scale = self.server_scale = 1.0

    def observe_compute(self, option: Option, edge_ms: float, server_ms: float) -> None:
        def updated(scale: float, measured: float, profiled: float) -> float:
            if profiled < self.MIN_SCALED_MS:
                return scale
            return (1 - self.SMOOTHING) * scale + self.SMOOTHING * measured / profiled

        self.edge_scale = updated(self.edge_scale, edge_ms, option.head_ms + option.encode_ms)
        if option.offloads:
            self.server_scale = updated(self.server_scale, server_ms, option.decode_ms + option.tail_ms)

    def choose(self, uplink_bps: float, one_way_ms: float) -> Decision:
        predicted = self.model.predict(uplink_bps, one_way_ms, self.edge_scale, self.server_scale)
        best = int(np.argmin(predicted))
        keep = self.current is not None and predicted[self.current] <= predicted[best] * (1 + self.hysteresis)
        chosen = self.current if keep else best
        switched = chosen != self.current
        self.current = chosen
        return Decision(self.allowed[chosen], float(predicted[chosen]), switched)
