"""Plans as the edge runs them: fixed, or re-planned per request from a bandwidth estimate.

The bandwidth estimator (what AGLOP and the Neurosurgeon baseline see; the oracle reads the trace):
- a sample is one transfer (a request or a probe) of at least MIN_SAMPLE_BYTES, or of any size that
  spent at least MIN_SAMPLE_MS on the link: its wire bits over that time, uplink_ms minus the uplink's
  delay. The second rule lets the small DISC messages of a slow link count: once the link collapses
  they take 100 ms and more, and they are the only traffic AGLOP still sends;
- the path's delays: downward, the smallest recent downlink time (replies are a few hundred bytes, so
  their time is nearly all delay); upward, TCP's own smallest round trip on the connection (the
  kernel's tcpi_min_rtt) less that; the uplink's delay is what a sample's time on the link excludes.
  The two directions may differ (an LTE uplink, a WAN hop); before TCP has a round trip, they are
  taken as equal;
- the estimate is the total bits over the total time of the last WINDOW samples that are at most
  MAX_SAMPLE_AGE_S older than the newest: a byte-weighted harmonic mean, as rate-based video
  adaptation uses. Only transfer time enters, never the wall clock between requests, so idle gaps do
  not dilute it; the age limit counts from the newest sample (not from now), so after an idle
  stretch the estimate is the last one's, while samples a second apart (probes while the edge sends
  nothing) do not hold a dip for five seconds (benchmarks/estimator_window.py chose the limit on
  traces the AGLOP grid does not use);
- a transfer larger than its send window (a connection idle past its RTO restarts at 10 segments)
  waits a round trip for ACKs midway; that wait is not the link's rate, so such a transfer is no
  sample unless it spent STALLED_SAMPLE_MS on the link (a collapsing link still counts). Probes are
  sized to fit the window;
- a request that fails (timeout, reset) is a sample of zero bits over the time waited: an outage
  pulls the estimate down at once;
- small, quick requests (DISC messages are often a few KB) say little about the rate (a few frames'
  time is mostly per-message overhead and delay jitter), and edge-only requests send nothing: when no sample is younger than
  probe_interval_s, the edge sends a PROBE_BYTES probe between requests (outside any request's
  latency). Probes are the cost of knowing the link; they are counted in the manifest.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from splitbed.aglop.energy import EdgeEnergy, EnergyModel, Objective
from splitbed.aglop.planner import (
    COMPUTE_STAGES,
    MSS,
    REQUEST_OVERHEAD,
    STAGES,
    Planner,
    ProfileDrift,
    profiled_ms,
    segments,
    transfer_ms,
    wire_bits,
)
from splitbed.aglop.profile import DEFAULT_BUDGET_PTS, DEFAULT_CRITERION, Option, load_options
from splitbed.models.partition import EDGE_ONLY
from splitbed.network.traces import Trace
from splitbed.registry import Registry

WINDOW = 5
MAX_SAMPLE_AGE_S = 2.0  # samples older than this before the newest one leave the estimate
MIN_SAMPLE_BYTES = 8192
MIN_SAMPLE_MS = 20.0  # on-link time that makes a transfer of any size a sample
PROBE_BYTES = 16384
STALLED_SAMPLE_MS = 100.0  # on-link time that makes a transfer over its window a sample all the same
DELAY_WINDOW = 20
# The plan is kept while within this of the best by the model: it may sit that far above the best
# option by design, so it stays under the 5% a planner is judged by (benchmarks/aglop_grid.py)
HYSTERESIS_PCT = 4.0
# An energy plan's default probe interval: a probe from idle costs an LTE radio its promotion and its
# 11.6 s tail (12.6 J, 50 Pi Zero 2 W edge-only requests); once a minute that is 0.2 W on average,
# where a probe a second holds the radio connected at 1.06 W (its energy model counts either)
ENERGY_PROBE_INTERVAL_S = 60.0
DECISIONS_KEPT = 4096  # decision times kept for the run's median


def probe_bytes(window: float | None, header_bytes: int) -> int:
    """A probe's payload: PROBE_BYTES, or less so that the whole message fits the send window (a probe
    that waits for ACKs midway measures the wait). Never under a sample's MIN_SAMPLE_BYTES."""
    if not window:
        return PROBE_BYTES
    fits = int(window) * MSS - REQUEST_OVERHEAD - header_bytes
    return max(MIN_SAMPLE_BYTES, min(PROBE_BYTES, fits))


class BandwidthEstimator:
    def __init__(self, window: int = WINDOW, max_age_s: float | None = MAX_SAMPLE_AGE_S):
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=window)  # (taken at, bits, seconds on the link)
        self.max_age_s = max_age_s
        self.delays: deque[float] = deque(maxlen=DELAY_WINDOW)  # downlink times of answered transfers
        self.round_trips: deque[float] = deque(maxlen=DELAY_WINDOW)  # TCP's smallest round trip, as read
        self.last_sample_s: float | None = None

    def down_ms(self) -> float:
        return min(self.delays) if self.delays else 0.0

    def up_ms(self) -> float:
        if not self.round_trips:
            return self.down_ms()
        return max(min(self.round_trips) - self.down_ms(), 0.0)

    def rtt_ms(self) -> float:
        return self.up_ms() + self.down_ms()

    def rate_bps(self) -> float | None:
        if not self.samples:
            return None
        newest = self.samples[-1][0]
        recent = [(b, s) for taken, b, s in self.samples if self.max_age_s is None or newest - taken <= self.max_age_s]
        bits = sum(b for b, _ in recent)
        seconds = sum(s for _, s in recent)
        return bits / max(seconds, 1e-4)

    def observe(self, message_bytes: int, uplink_ms: float, downlink_ms: float, now_s: float,
                window: float | None = None, tcp_rtt_ms: float | None = None) -> None:
        """`window`: the segments the connection could send at once when this transfer started;
        `tcp_rtt_ms`: the connection's smallest round trip as TCP measured it (None: unknown)."""
        self.delays.append(downlink_ms)
        if tcp_rtt_ms:
            self.round_trips.append(tcp_rtt_ms)
        on_link_ms = uplink_ms - self.up_ms()
        if window and segments(message_bytes) > window and on_link_ms < STALLED_SAMPLE_MS:
            return
        if message_bytes >= MIN_SAMPLE_BYTES or on_link_ms >= MIN_SAMPLE_MS:
            self.samples.append((now_s, float(wire_bits(message_bytes)), max(on_link_ms, 0.5) / 1e3))
            self.last_sample_s = now_s

    def observe_failure(self, message_bytes: int, waited_ms: float, now_s: float) -> None:
        self.samples.append((now_s, float(wire_bits(message_bytes)), max(waited_ms, 1.0) / 1e3))
        self.last_sample_s = now_s


@dataclass
class Choice:
    option: Option
    predicted_ms: float | None = None
    estimate_bps: float | None = None
    predicted_mj: float | None = None


class FixedPolicy:
    """The same option for every request (fixed plans and the fixed baselines). It follows the compute
    drift and sizes too, though it plans nothing: the latency model's judge (ModelJudge) predicts with it."""

    probe_interval_s: float | None = None  # seconds between probes of the link; None: never probes

    def __init__(self, option: Option):
        self.option = option
        self.drift = ProfileDrift()

    def choose(self, now_s: float, window: float | None = None) -> Choice:
        return Choice(self.option)

    def observe(self, message_bytes: int, uplink_ms: float, downlink_ms: float, now_s: float,
                window: float | None = None, tcp_rtt_ms: float | None = None) -> None:
        pass

    def observe_failure(self, message_bytes: int, waited_ms: float, now_s: float) -> None:
        pass

    def observe_answer(self, option: Option, measured: dict[str, float], wire_bytes: int) -> None:
        """What the answered request's compute stages took (head, encode on the edge; decode, tail on
        the server) and its size on the wire."""
        self.drift.observe(option, measured, wire_bytes)

    def probe_due(self, now_s: float) -> bool:
        return False

    @property
    def last_sample_s(self) -> float | None:
        """When the link was last measured (a probe or a request large enough to be a sample)."""
        return None


class PlannedPolicy(FixedPolicy):
    """A policy that asks a Planner per request; the planner learns the compute drift."""

    planner: Planner

    @property
    def drift(self) -> ProfileDrift:
        return self.planner.drift

    def observe_answer(self, option: Option, measured: dict[str, float], wire_bytes: int) -> None:
        self.planner.observe(option, measured, wire_bytes)  # the planner knows which runs were looks


class EstimatingPolicy(PlannedPolicy):
    """AGLOP (all options within the budget, with hysteresis) or Neurosurgeon (raw fp32 only):
    re-planned before every request from the estimator."""

    def __init__(self, planner: Planner, probe_interval_s: float):
        self.planner, self.probe_interval_s = planner, probe_interval_s
        self.estimator = BandwidthEstimator()
        self.decision_ms: deque[float] = deque(maxlen=DECISIONS_KEPT)  # the last ones: memory stays flat
        self.decision_ms_max = 0.0

    def choose(self, now_s: float, window: float | None = None) -> Choice:
        started = time.perf_counter_ns()
        rate = self.estimator.rate_bps() or 1e6  # only before the first probe has answered
        decision = self.planner.choose(rate, self.estimator.rtt_ms(), window)
        self.decision_ms.append((time.perf_counter_ns() - started) / 1e6)
        self.decision_ms_max = max(self.decision_ms_max, self.decision_ms[-1])
        return Choice(decision.option, decision.predicted_ms, rate, decision.predicted_mj)

    def observe(self, message_bytes: int, uplink_ms: float, downlink_ms: float, now_s: float,
                window: float | None = None, tcp_rtt_ms: float | None = None) -> None:
        self.estimator.observe(message_bytes, uplink_ms, downlink_ms, now_s, window, tcp_rtt_ms)

    def observe_failure(self, message_bytes: int, waited_ms: float, now_s: float) -> None:
        self.estimator.observe_failure(message_bytes, waited_ms, now_s)

    def probe_due(self, now_s: float) -> bool:
        last = self.estimator.last_sample_s
        return last is None or now_s - last >= self.probe_interval_s

    @property
    def last_sample_s(self) -> float | None:
        return self.estimator.last_sample_s


@dataclass(frozen=True)
class KnownPath:
    """The path as the scenario built it: what the oracle plans on and the model's judge predicts with.
    The uplink's trace (a constant one for a fixed rate), each direction's delay with its WAN hop's,
    and the WAN uplink's rate where there is one (a message crosses the slower of the two)."""

    uplink: Trace
    up_ms: float = 0.0
    down_ms: float = 0.0
    wan_up_bps: float | None = None

    @property
    def rtt_ms(self) -> float:
        return self.up_ms + self.down_ms

    def carry_seconds(self, t, bits):
        """Seconds from t (one time, or one per message) until the path has carried `bits`."""
        seconds = self.uplink.carry_seconds(t, bits)
        return np.maximum(seconds, np.asarray(bits, dtype=float) / self.wan_up_bps) if self.wan_up_bps else seconds


class OraclePolicy(PlannedPolicy):
    """Knows the path: the same planner, each option's transfer taken at the rate the uplink's trace
    will give it from now on (an outage delays a transfer until the link carries it again) and the
    path's true delays. A planner told the truth about the link, not a method a device could run."""

    def __init__(self, planner: Planner, path: KnownPath):
        self.planner, self.path = planner, path

    def choose(self, now_s: float, window: float | None = None) -> Choice:
        decision = self.planner.choose(None, self.path.rtt_ms, window,
                                       carry_s=lambda bits, lead_s: self.path.carry_seconds(now_s + lead_s, bits))
        return Choice(decision.option, decision.predicted_ms, float(self.path.uplink.rate_at(now_s)),
                      decision.predicted_mj)


class ModelJudge:
    """What the latency model predicts, stage by stage, for the option a request actually ran, told
    the truth it cannot know when planning: when the trace carries the message's actual size from the
    request's start (waiting out outages, up to the deadline), the path's delays, with the compute drift
    its plan has seen. Recorded for every method's requests, so the model's terms are judged on every
    option (not only on those a planner chose), apart from the rate estimate and from the spread of
    sizes between images. Its cost never follows the predicted time: the trace is integrated bin by bin."""

    def __init__(self, profile: dict | None, path: KnownPath, deadline_s: float):
        self.options = {o.key: o for o in load_options(profile)} if profile else {}
        self.path, self.deadline_s = path, deadline_s

    def stages(self, option: Option, now_s: float, drift: ProfileDrift, window: float | None,
               wire_bytes: int) -> dict | None:
        """now_s: when the message left (the transfer meets the link from then on)."""
        profiled = self.options.get(option.key)
        if profiled is None:
            return None
        out = {stage: profiled_ms(profiled, stage) * drift.of(stage, profiled) for stage in COMPUTE_STAGES}
        out["transfer"] = 0.0
        if option.offloads:
            message = max(wire_bytes - REQUEST_OVERHEAD, 0)
            bits, count = np.array([float(wire_bits(message))]), np.array([float(segments(message))])
            seconds = min(float(self.path.carry_seconds(now_s, bits[0])), self.deadline_s)
            rate = float(bits[0]) / max(seconds, 1e-9)  # the mean rate the transfer meets
            out["transfer"] = float(transfer_ms(bits, count, rate, self.path.rtt_ms, window)[0])
        return {stage: out[stage] for stage in STAGES}


def plan_options(plan: dict, profile: dict) -> list[Option]:
    """The profile's options with their loss under the plan's accuracy criterion."""
    return load_options(profile, plan.get("criterion", DEFAULT_CRITERION))


def fixed_policy(plan: dict, profile: dict | None, path: KnownPath | None, edge: EdgeEnergy | None) -> FixedPolicy:
    """The plan's option, with its profiled sizes and times when the profile has it (so its compute
    drift is measured against them)."""
    option = Option(plan["split"], "" if plan["split"] == EDGE_ONLY else plan["codec"], plan.get("params", {}))
    profiled = {o.key: o for o in load_options(profile)} if profile else {}
    return FixedPolicy(profiled.get(option.key, option))


def objective(plan: dict) -> Objective:
    return Objective(plan.get("objective", "latency"), plan.get("energy_budget_mj"), plan.get("deadline_ms"))


def probe_interval_s(plan: dict) -> float:
    return plan.get("probe_interval_s", ENERGY_PROBE_INTERVAL_S if objective(plan).needs_energy else 1.0)


def planner(plan: dict, options: list[Option], edge: EdgeEnergy | None, probe_interval_s: float | None,
            hysteresis_pct: float = 0.0, explore_pct: float = 0.0) -> Planner:
    """A planner over `options` with the plan's objective; it predicts energy whenever the edge's board
    power is known (an objective that needs it and no power: ValueError, the schema's check)."""
    energy = None
    if edge is not None and edge.board is not None:
        energy = EnergyModel(edge, probe_interval_s, PROBE_BYTES if probe_interval_s else 0)
    return Planner(options, plan.get("budget_pts", DEFAULT_BUDGET_PTS), hysteresis_pct, explore_pct, objective(plan), energy)


def aglop_policy(plan: dict, profile: dict | None, path: KnownPath | None, edge: EdgeEnergy | None) -> EstimatingPolicy:
    probe_s = probe_interval_s(plan)
    return EstimatingPolicy(planner(plan, plan_options(plan, profile), edge, probe_s,
                                    plan.get("hysteresis_pct", HYSTERESIS_PCT), plan.get("explore_pct", 15.0)), probe_s)


def neurosurgeon_policy(plan: dict, profile: dict | None, path: KnownPath | None,
                        edge: EdgeEnergy | None) -> EstimatingPolicy:
    """Raw fp32 tensors only; its objective latency or energy (Kang et al., ASPLOS 2017, both modes)."""
    raw = [o for o in plan_options(plan, profile) if o.codec in ("raw", "")]
    probe_s = probe_interval_s(plan)
    return EstimatingPolicy(planner(plan, raw, edge, probe_s), probe_s)


def oracle_policy(plan: dict, profile: dict | None, path: KnownPath | None, edge: EdgeEnergy | None) -> OraclePolicy:
    return OraclePolicy(planner(plan, plan_options(plan, profile), edge, None), path)


# Plan types by name (a scenario's `type:`): each builds the policy from the plan, the AGLOP profile,
# for the oracle only the path's truth, and the edge's energy facts. Every type but `fixed` needs the profile.
POLICIES = Registry("plan type", {"fixed": fixed_policy, "aglop": aglop_policy, "neurosurgeon": neurosurgeon_policy,
                                  "oracle": oracle_policy})
METHODS = tuple(name for name in POLICIES if name != "fixed")


def make_policy(plan: dict, profile: dict | None, path: KnownPath | None = None, edge: EdgeEnergy | None = None):
    """The policy a plan dict (as validated by the scenario schema) asks for; `path` is the link's
    truth, for the oracle only; `edge` what the edge's energy follows from (None: not modelled)."""
    return POLICIES.lookup(plan.get("type", "fixed"))(plan, profile, path, edge)
