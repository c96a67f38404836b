"""The latency model and the exact search over options.

Predicted end-to-end latency of an option, for an uplink rate estimate R and the path's round-trip
delay D = d_up + d_down (each direction's propagation delay, WAN hops included), stage by stage (the
stages of requests.csv):

    edge-only:  head
    offloaded:  head + encode + transfer + decode + tail
    transfer:   wire_bits(bytes) / R + D, plus one round trip for every round in which TCP's send
                window runs out before the first acknowledgement is back (slow start, see below)

wire_bits counts what the shaped link carries: the protocol header, and 66 bytes of Ethernet, IP and
TCP header per 1448-byte segment. The reply is a few hundred bytes on its own link: only its delay
d_down counts. The two directions' delays need not be equal (an LTE uplink, a WAN hop). Server queueing is taken as zero (one client per server in the scenarios planned for).

Slow start after idle: Linux restarts a connection's congestion window after it sat idle for longer
than its retransmission timeout (net.ipv4.tcp_slow_start_after_idle, on by default), so a request sent
after a pause starts with 10 segments and doubles per round trip. The caller passes the window the
next send starts with (splitbed.network.tcp_window); None means unlimited.

Drift (ProfileDrift): the nodes' measured stage times against the profile's, per stage, as one scale
per stage (the host's speed now) times a factor per split or codec setting (what that option shows
beyond it), so one option's drift is not carried over to all; and the messages' measured sizes
against the profile's, per codec setting, else per codec (the run's inputs are not the profile's
photos: a JPEG of another set of images can be 1.4x the size).

The search is exact: every allowed option is predicted at once (numpy expressions over arrays built
once), and the smallest wins; tens of options take microseconds, far under the 1 ms per decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitbed.aglop.energy import LATENCY, EnergyModel, Objective
from splitbed.aglop.profile import Option

MSS = 1448
SEGMENT_OVERHEAD = 66  # Ethernet 14 + IPv4 20 + TCP with timestamps 32
REQUEST_OVERHEAD = 80  # frame header (8) + length (2) + the JSON request header
STAGES = ("head", "encode", "transfer", "decode", "tail")
COMPUTE_STAGES = ("head", "encode", "decode", "tail")


def segments(message_bytes: np.ndarray | float) -> np.ndarray:
    return np.ceil((np.asarray(message_bytes, dtype=float) + REQUEST_OVERHEAD) / MSS)


def wire_bits(message_bytes: np.ndarray | float) -> np.ndarray:
    payload = np.asarray(message_bytes, dtype=float) + REQUEST_OVERHEAD
    return 8 * (payload + SEGMENT_OVERHEAD * np.ceil(payload / MSS))


def transfer_ms(bits: np.ndarray, segment_count: np.ndarray, uplink_bps: float, rtt_ms: float,
                window: float | None = None) -> np.ndarray:
    """Send to reply: serialisation at R, the delay up and back (rtt_ms), and one round trip per
    slow-start round whose window (doubling from `window` segments) is sent before the first
    acknowledgement returns. R is one rate, or one per message (the rate each meets on a traced link)."""
    rate = np.maximum(uplink_bps, 1.0)
    base = bits / rate * 1e3 + rtt_ms
    if window is None:
        return base
    # round k sends w 2^k segments and stalls for the ACKs while segments remain after it (n > w (2^(k+1) - 1))
    # and its segments leave in less than a round trip (w 2^k p < rtt): the first K = min of both counts
    rtt = rtt_ms
    w = max(float(window), 1.0)
    per_segment_ms = np.divide(bits, np.maximum(segment_count, 1)) / rate * 1e3
    with np.errstate(divide="ignore"):
        pipe_rounds = np.ceil(np.log2(rtt / np.maximum(w * per_segment_ms, 1e-12))) if rtt > 0 else 0 * bits
        data_rounds = np.ceil(np.log2(segment_count / w + 1)) - 1
    rounds = np.maximum(np.minimum(pipe_rounds, data_rounds), 0)
    waited = rounds * rtt - w * per_segment_ms * (2 ** rounds - 1)
    return base + waited


class ProfileDrift:
    """What answered requests show against the profile. Compute: measured / profiled time per stage, a
    scale per stage that follows the host's speed (exponential average over every option with a long
    enough stage) times a factor per split (head, tail) or per codec setting (encode, decode) for what
    that option shows beyond the scale. Sizes: measured / profiled message bytes, per codec setting,
    else the codec's (raw tensors have one size: never scaled)."""

    SMOOTHING = 0.2
    MIN_SCALED_MS = 5.0  # profiled times under this say too little about the host's speed
    MIN_KEYED_MS = 0.5  # ... and under this, too little about the option
    # A request counts as at most this many times (or at least 1/this) what the drift predicted for it:
    # on this host 2.6% of edge requests took over 1.5x their option's median (a hiccup), 95% lay within
    # 0.76-1.38x (a 60 s grid at 6feda38, every method's requests). One 3x hiccup counted in full raised
    # an option's prediction 40% and kept it there while the planner ran another option.
    MAX_STEP = 1.5

    def __init__(self):
        self.scale = dict.fromkeys(COMPUTE_STAGES, 1.0)
        self.factor: dict[tuple[str, str], float] = {}
        self.count: dict[tuple[str, str], int] = {}  # requests seen per (stage, split or codec setting)
        self.scaled_keys: set[tuple[str, str]] = set()  # options whose factors are normalised (see normalise)
        self.size: dict[str, float] = {}  # option key or codec -> measured / profiled message bytes
        self.version = 0  # bumped on every change, so models can cache their arrays

    @staticmethod
    def key(stage: str, option: Option) -> str:
        return option.split if stage in ("head", "tail") else option.key

    def of(self, stage: str, option: Option) -> float:
        return self.of_key(stage, self.key(stage, option))

    def of_key(self, stage: str, key: str) -> float:
        return self.scale[stage] * self.factor.get((stage, key), 1.0)

    def size_of(self, option: Option) -> float:
        return self.size_of_key(option.key, option.codec)

    def size_of_key(self, key: str, codec: str) -> float:
        return self.size.get(key, self.size.get(codec, 1.0))

    def observe(self, option: Option, measured: dict[str, float], wire_bytes: int = 0,
                profile_weighs: bool = True) -> None:
        """measured: stage -> ms of one answered request of `option` (edge-only: the head only);
        wire_bytes: its request frame's size on the wire (0: nothing sent). profile_weighs: the profile
        counts as one observation (the first request weighs a half); False: the option's factor is the
        plain mean of what it measured (up to 1 / SMOOTHING requests)."""
        def average(old: float, new: float) -> float:
            return (1 - self.SMOOTHING) * old + self.SMOOTHING * new

        if wire_bytes and option.codec not in ("raw", "") and option.bytes_mean > 0:
            ratio = max(wire_bytes - REQUEST_OVERHEAD, 1) / option.bytes_mean
            for key in (option.key, option.codec):
                self.size[key] = average(self.size.get(key, ratio), ratio)

        for stage, ms in measured.items():
            profiled = profiled_ms(option, stage)
            if profiled < self.MIN_KEYED_MS:
                continue
            key = (stage, self.key(stage, option))
            # the profile counts as one observation: an option's first request weighs a half
            self.count[key] = self.count.get(key, 0) + 1
            weight = max(self.SMOOTHING, 1 / (self.count[key] + (1 if profile_weighs else 0)))
            believed = self.scale[stage] * self.factor.get(key, 1.0)
            ratio = min(max(ms / profiled, believed / self.MAX_STEP), believed * self.MAX_STEP)
            product = (1 - weight) * believed + weight * ratio
            self.factor[key] = product / self.scale[stage]
            if profiled >= self.MIN_SCALED_MS:
                self.normalise(stage, key)
        self.version += 1

    def normalise(self, stage: str, key: tuple[str, str]) -> None:
        """Scale x factor is what is learned; the split between them is a convention: the factors of
        the options long enough to speak for the host have geometric mean 1, so the scale is their
        common drift (with one option seen, all of its drift) and an option never run gets that."""
        self.scaled_keys.add(key)
        keys = [k for k in self.scaled_keys if k[0] == stage]
        mean = float(np.exp(np.mean([np.log(self.factor[k]) for k in keys])))
        self.scale[stage] *= mean
        for k in keys:
            self.factor[k] /= mean


def profiled_ms(option: Option, stage: str) -> float:
    return {"head": option.head_ms, "encode": option.encode_ms, "decode": option.decode_ms,
            "tail": option.tail_ms}[stage] if (stage == "head" or option.offloads) else 0.0


class LatencyModel:
    """Predicted ms of every option at once, per stage."""

    def __init__(self, options: list[Option]):
        self.options = options
        self.offloads = np.array([o.offloads for o in options])
        self.profiled = {stage: np.array([profiled_ms(o, stage) for o in options]) for stage in COMPUTE_STAGES}
        self.drift_keys = {stage: [ProfileDrift.key(stage, o) for o in options] for stage in COMPUTE_STAGES}
        self.sizes = np.array([o.bytes_mean for o in options])
        self.large_sizes = np.array([max(o.bytes_p90, o.bytes_mean) for o in options])  # a 90th-percentile message
        self.size_keys = [(o.key, o.codec) for o in options]
        self.drift_version, self.scales = None, {stage: np.ones(len(options)) for stage in COMPUTE_STAGES}
        self.sized(np.ones(len(options)))

    def sized(self, factors: np.ndarray) -> None:
        self.wire_bytes, self.bits, self.segments = self.messages(self.sizes * factors)
        self.large_wire_bytes, self.large_bits, self.large_segments = self.messages(self.large_sizes * factors)

    def messages(self, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the radio sends, the bits the shaped link carries and the segments, per option."""
        return (np.where(self.offloads, sizes + REQUEST_OVERHEAD, 0.0), np.where(self.offloads, wire_bits(sizes), 0.0),
                np.where(self.offloads, segments(sizes), 0.0))

    def scaled(self, drift: ProfileDrift | None) -> dict[str, np.ndarray]:
        if drift is not None and drift.version != self.drift_version:
            self.scales = {stage: np.array([drift.of_key(stage, k) for k in self.drift_keys[stage]])
                           for stage in COMPUTE_STAGES}
            self.sized(np.array([drift.size_of_key(key, codec) for key, codec in self.size_keys]))
            self.drift_version = drift.version
        return {stage: self.profiled[stage] * self.scales[stage] for stage in COMPUTE_STAGES}

    def stages(self, uplink_bps: float | None, rtt_ms: float, drift: ProfileDrift | None = None,
               window: float | None = None, carry_s=None, large: bool = False) -> dict[str, np.ndarray]:
        """carry_s(bits, lead_s) -> seconds, when given, is the link's truth: each option's message,
        sent lead_s from now (after its head and encode), meets the mean rate that carries it (an
        outage delays it) instead of the one rate uplink_bps. large: each option's 90th-percentile
        message instead of its mean one."""
        out = self.scaled(drift)
        bits, count = (self.large_bits, self.large_segments) if large else (self.bits, self.segments)
        if carry_s is not None:
            seconds = np.asarray(carry_s(bits, (out["head"] + out["encode"]) / 1e3), dtype=float)
            uplink_bps = np.divide(bits, seconds, out=np.full(len(bits), np.inf), where=seconds > 0)
        network = transfer_ms(bits, count, uplink_bps, rtt_ms, window)
        out["transfer"] = np.where(self.offloads, network, 0.0)
        return {stage: out[stage] for stage in STAGES}

    def predict(self, uplink_bps: float | None, rtt_ms: float, drift: ProfileDrift | None = None,
                window: float | None = None, carry_s=None) -> np.ndarray:
        return sum(self.stages(uplink_bps, rtt_ms, drift, window, carry_s).values())


@dataclass
class Decision:
    option: Option
    predicted_ms: float
    switched: bool
    explored: bool = False
    predicted_mj: float | None = None  # the edge's energy, when the planner has an energy model


EXPLORE_LOOKS = 3  # runs of an edge-only option never chosen, while it is predicted close
LOOK_SPACING = 10  # requests between two looks


class Planner:
    """Exact argmin of the latency model (or of the energy model, by `objective`) over the options
    within the accuracy budget.

    Hysteresis: the current option is kept while its prediction is within `hysteresis_pct` of the
    best one, so noise in the bandwidth estimate does not make plans flap. Drift: every answered
    request's stage times and message size update `drift`, as online profilers do. Exploration: drift
    corrects only what is run, and the profile can be wrong about edge-only when the plan offloads (on
    a Pi 4 it put edge-only 25% slower than runs measure, on a Pi 3 B+ 20%); so once an offloading
    choice has run, the best edge-only option, if predicted within `explore_pct` of the choice and never
    chosen, is run: up to EXPLORE_LOOKS times, LOOK_SPACING requests apart, while it stays that close.
    What those looks measure replaces the profile's time (their plain mean): a look is the option's
    own time on this host, and with the profile weighing a half, one look left a 20% error at 10%,
    enough to keep a slower offloading choice. More than one look: one can meet the host's jitter.
    One way only: an offloading option's prediction rests on a message size and a link the run may not
    have shown yet, and trying one from edge-only cost 1.3 to 2.5 times the edge-only request.
    """

    def __init__(self, options: list[Option], budget_pts: float = 1.0, hysteresis_pct: float = 0.0,
                 explore_pct: float = 0.0, objective: Objective = LATENCY, energy: EnergyModel | None = None):
        self.allowed = [o for o in options if o.drop_pts < budget_pts]
        if not self.allowed:
            raise ValueError(f"no option stays under the accuracy budget of {budget_pts} points")
        if objective.needs_energy and energy is None:
            raise ValueError(f"objective {objective}: the planner needs the edge's energy model")
        self.model = LatencyModel(self.allowed)
        self.objective, self.energy = objective, energy
        self.hysteresis, self.explore = hysteresis_pct / 100, explore_pct / 100
        self.ran_edge_only = False  # chosen (not only looked at): no more looks
        self.looks, self.since_look = 0, 0
        self.current: int | None = None
        self.drift = ProfileDrift()

    def observe(self, option: Option, measured: dict[str, float], wire_bytes: int = 0) -> None:
        looked = self.looks > 0 and not option.offloads and not self.ran_edge_only
        self.drift.observe(option, measured, wire_bytes, profile_weighs=not looked)

    def choose(self, uplink_bps: float | None, rtt_ms: float, window: float | None = None,
               carry_s=None) -> Decision:
        """uplink_bps: the rate estimate; or carry_s(bits, lead_s) -> seconds, the link's truth (see
        LatencyModel.stages)."""
        stages = self.model.stages(uplink_bps, rtt_ms, self.drift, window, carry_s)
        latency = sum(stages.values())
        energy = None  # every option's, when the objective weighs it; else the chosen one's only (decision)
        if self.objective.needs_energy:
            energy = self.energy.predict(stages, self.model.wire_bytes, uplink_bps)
        large = (latency, energy)  # the bound's request, with a 90th-percentile message
        if self.objective.bounded:
            big = self.model.stages(uplink_bps, rtt_ms, self.drift, window, carry_s, large=True)
            big_mj = None if self.objective.energy_budget_mj is None else \
                self.energy.predict(big, self.model.large_wire_bytes, uplink_bps)  # a deadline needs no energy
            large = (sum(big.values()), big_mj)
        predicted = self.objective.scores(latency, energy, large)
        best = int(np.argmin(predicted))
        keep = self.current is not None and predicted[self.current] <= predicted[best] * (1 + self.hysteresis)
        chosen = self.current if keep else best
        switched = chosen != self.current
        self.current = chosen
        local = np.flatnonzero(~self.model.offloads)
        self.since_look += 1
        may_look = self.looks < EXPLORE_LOOKS and (self.looks == 0 or self.since_look > LOOK_SPACING)
        if self.explore and may_look and not switched and not self.ran_edge_only and len(local) \
                and self.model.offloads[chosen]:
            trial = int(local[np.argmin(predicted[local])])
            # a look stays within the objective's bound: an option over the budget is never run to be measured
            if predicted[trial] <= predicted[chosen] * (1 + self.explore) and \
                    self.objective.within(large[0][[trial]], None if large[1] is None else large[1][[trial]])[0]:
                self.looks, self.since_look = self.looks + 1, 0
                return self.decision(trial, stages, latency, energy, uplink_bps, True, explored=True)
        self.ran_edge_only |= not self.model.offloads[chosen]
        return self.decision(chosen, stages, latency, energy, uplink_bps, switched)

    def decision(self, index: int, stages: dict[str, np.ndarray], latency: np.ndarray, energy: np.ndarray | None,
                 uplink_bps: float | None, switched: bool, explored: bool = False) -> Decision:
        """The chosen option with its predictions (its energy predicted now when the objective did not)."""
        mj = None
        if energy is not None:
            mj = float(energy[index])
        elif self.energy is not None:
            one = [index]
            mj = float(self.energy.predict({k: v[one] for k, v in stages.items()}, self.model.wire_bytes[one],
                                           uplink_bps)[0])
        return Decision(self.allowed[index], float(latency[index]), switched, explored, mj)
