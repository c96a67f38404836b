"""The energy model: each option's predicted edge energy per request, beside its predicted latency.

An option is charged as if it ran request after request (the plan a planner settles into), with
the stage times the latency model predicts for it:
- board (devices.yaml's power): busy through head and encode, idle through the rest of the request
  and the gap until the next one (workload.interval_s), as runs measure it (app/edge.py);
- radio (network.radio): an offloading option's requests come `gap` ms apart, so each finds the
  radio still in its tail unless the gap outlasts it (LTE's tail is 11.6 s: promoted once, then
  connected), and pays its transfer and the connected time around it (RadioTimeline, as measured);
- an edge-only option sends no request, but a planner that estimates the link probes it every
  probe_interval_s (AGLOP, Neurosurgeon): its radio's mean power is that of one probe per interval,
  and a probe every second holds an LTE radio in its 1.06 W tail. A planner told the link (the
  oracle) does not probe: its edge-only radio idles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitbed.devices.catalog import BoardPower
from splitbed.network.radio import RadioModel, RadioTimeline, on_air_bits

REPLY_BYTES = 200  # the server's JSON answer with its timestamps: its downlink bits are a rounding error
OBJECTIVES = ("latency", "energy")


@dataclass(frozen=True)
class EdgeEnergy:
    """The facts an edge's energy follows from: its board's power, its uplink's radio (None: not
    modelled) and the workload's spacing between requests."""
    board: BoardPower | None
    radio: RadioModel | None
    interval_ms: float = 0.0


@dataclass(frozen=True)
class Objective:
    """What a planner minimises, latency or the edge's energy per request, and the bound it keeps on
    the other, request by request: an option counts as within it when its request with a large
    message (the option's 90th-percentile size) is predicted within it, since a bound met only on the
    mean is broken by every larger image (a JPEG's size varies 3x between photos). Options over it
    are not chosen while one is within; when none is, the option that comes closest is."""
    minimise: str = "latency"
    energy_budget_mj: float | None = None  # with minimise = latency
    deadline_ms: float | None = None  # with minimise = energy

    def __post_init__(self):
        if self.minimise not in OBJECTIVES:
            raise ValueError(f"objective {self.minimise!r}: one of {', '.join(OBJECTIVES)}")
        if (self.minimise == "latency" and self.deadline_ms is not None) or \
                (self.minimise == "energy" and self.energy_budget_mj is not None):
            raise ValueError("the bound is on the quantity not minimised: an energy budget with latency, "
                             "a deadline with energy")

    @property
    def needs_energy(self) -> bool:
        return self.minimise == "energy" or self.energy_budget_mj is not None

    @property
    def bounded(self) -> bool:
        return self.energy_budget_mj is not None or self.deadline_ms is not None

    def within(self, large_latency_ms: np.ndarray, large_energy_mj: np.ndarray | None) -> np.ndarray:
        """Where the bound holds for a request with a large message (everywhere, without a bound)."""
        if self.energy_budget_mj is not None:
            return large_energy_mj <= self.energy_budget_mj
        if self.deadline_ms is not None:
            return large_latency_ms <= self.deadline_ms
        return np.ones(len(large_latency_ms), dtype=bool)

    def scores(self, latency_ms: np.ndarray, energy_mj: np.ndarray | None,
               large: tuple[np.ndarray, np.ndarray | None] | None = None) -> np.ndarray:
        """Lower is better; inf for an option over the bound while another is within it. large: the
        latency and energy of each option's large-message request (default: the means)."""
        if not self.needs_energy:
            return latency_ms
        large_latency, large_energy = large or (latency_ms, energy_mj)
        goal, bounded = (energy_mj, large_latency) if self.minimise == "energy" else (latency_ms, large_energy)
        within = self.within(large_latency, large_energy)
        return np.where(within, goal, np.inf) if within.any() else bounded


LATENCY = Objective()  # the default: least latency, no energy bound


class EnergyModel:
    """Predicted mJ per request of every option at once (see the module's docstring)."""

    def __init__(self, edge: EdgeEnergy, probe_interval_s: float | None = None, probe_bytes: int = 0):
        if edge.board is None:
            raise ValueError("the edge device's power is not published (devices.yaml power:): no energy to plan on")
        self.board, self.radio, self.interval_ms = edge.board, edge.radio, edge.interval_ms
        self.probe_interval_ms = probe_interval_s * 1e3 if probe_interval_s else None
        self.probe_bits = on_air_bits(probe_bytes)

    def idle_radio_mw(self, uplink_bps: float | None) -> float:
        """The radio's mean power while the plan sends no request: probes only, or idle."""
        radio, every = self.radio, self.probe_interval_ms
        if radio is None:
            return 0.0
        if not every or not uplink_bps:
            return radio.idle_mw
        cycle = RadioTimeline(radio, since_last_ms=every)  # the last probe was one interval ago
        probe_ms = min(self.probe_bits / uplink_bps * 1e3, every)
        return (cycle.probe_mj(self.probe_bits, probe_ms, 0.0, 0.0) + radio.quiet_mj(0.0, every - probe_ms)) / every * 1e3

    def predict(self, stages: dict[str, np.ndarray], message_bytes: np.ndarray,
                uplink_bps: float | None = None) -> np.ndarray:
        """stages: the latency model's predicted ms per stage per option; message_bytes: each option's
        message (0: edge-only); uplink_bps: the rate a probe would meet (None: no probes)."""
        busy = stages["head"] + stages["encode"]
        e2e = sum(stages.values())
        gap = np.maximum(self.interval_ms - e2e, 0.0)
        energy = self.board.request_mj(busy, e2e - busy + gap)
        if self.radio is None:
            return energy
        idle_mw = self.idle_radio_mw(uplink_bps)
        radio = np.empty(len(e2e))
        for i, size in enumerate(message_bytes):
            if size <= 0:
                radio[i] = idle_mw * (e2e[i] + gap[i]) / 1e3
                continue
            steady = RadioTimeline(self.radio, self.interval_ms, since_last_ms=float(gap[i]))
            radio[i] = steady.request_mj(float(stages["head"][i]), float(stages["encode"][i]),
                                         float(stages["transfer"][i]), float(stages["decode"][i] + stages["tail"][i]),
                                         0.0, on_air_bits(int(size)), on_air_bits(REPLY_BYTES))
        return energy + radio
