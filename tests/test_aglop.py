import csv
import itertools
import json
import random
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from splitbed.aglop.online import (
    MAX_SAMPLE_AGE_S,
    MIN_SAMPLE_BYTES,
    MIN_SAMPLE_MS,
    PROBE_BYTES,
    STALLED_SAMPLE_MS,
    BandwidthEstimator,
    EstimatingPolicy,
    KnownPath,
    ModelJudge,
    OraclePolicy,
    make_policy,
    probe_bytes,
)
from splitbed.aglop.planner import (
    EXPLORE_LOOKS,
    LOOK_SPACING,
    MSS,
    LatencyModel,
    Planner,
    ProfileDrift,
    segments,
    transfer_ms,
    wire_bits,
)
from splitbed.aglop.profile import Option
from splitbed.errors import UserError
from splitbed.network.tcp_window import (
    HOST_DEFAULT,
    check_congestion_control,
    congestion_control,
    min_rtt_ms,
    restart_window,
    send_window,
    use_congestion_control,
)
from splitbed.network.traces import Trace
from splitbed.scenarios.schema import load_scenario
from tests.conftest import REPO


def synthetic_options(seed: int, count: int = 40) -> list[Option]:
    rng = random.Random(seed)
    options = [Option("edge-only", "", {}, head_ms=rng.uniform(20, 200))]
    for i in range(count):
        options.append(Option(f"s{i % 8}", rng.choice(["raw", "disc"]), {"step": i}, bytes_mean=rng.uniform(200, 2e6),
                              drop_pts=rng.choice([0.0, 0.5, 0.9, 1.0, 3.0]), head_ms=rng.uniform(0, 150),
                              encode_ms=rng.uniform(0, 5), decode_ms=rng.uniform(0, 3), tail_ms=rng.uniform(1, 30)))
    return options


def brute_force(options, rate_bps, rtt_ms, budget):
    def e2e(o):
        if not o.offloads:
            return o.head_ms
        payload = o.bytes_mean + 80
        bits = 8 * (payload + 66 * -(-payload // 1448))
        return o.head_ms + o.encode_ms + bits / rate_bps * 1e3 + rtt_ms + o.decode_ms + o.tail_ms
    allowed = [o for o in options if o.drop_pts < budget]
    return min(allowed, key=e2e), min(map(e2e, allowed))


@pytest.mark.parametrize("seed", range(5))
def test_search_is_exact_and_respects_the_accuracy_budget(seed):
    options = synthetic_options(seed)
    for rate, rtt, budget in itertools.product((2e5, 1e6, 5e6, 1e8), (0, 40, 160), (0.5, 1.0, 5.0)):
        decision = Planner(options, budget).choose(rate, rtt)
        best, best_ms = brute_force(options, rate, rtt, budget)
        assert decision.predicted_ms == pytest.approx(best_ms)
        assert decision.option.drop_pts < budget
        assert decision.option is best


def test_wire_bits_count_the_headers_of_every_segment():
    # 1368 B of message + 80 B protocol = one full 1448 B segment; one byte more needs a second one
    assert wire_bits(1368) == 8 * (1448 + 66)
    assert wire_bits(1369) == 8 * (1449 + 2 * 66)


def test_slow_links_make_the_planner_stay_on_the_device_and_fast_links_offload():
    options = [Option("edge-only", "", head_ms=100),
               Option("block5", "disc", {"step": 0.3}, bytes_mean=1500, head_ms=30, encode_ms=2, decode_ms=1, tail_ms=8)]
    model = LatencyModel(options)
    fast, slow = model.predict(10e6, 20), model.predict(0.1e6, 20)
    assert fast[1] < fast[0] and slow[0] < slow[1]
    planner = Planner(options)
    assert planner.choose(10e6, 20).option.split == "block5"
    assert planner.choose(0.1e6, 20).option.split == "edge-only"


def test_hysteresis_keeps_the_plan_through_estimate_noise_and_follows_a_real_change():
    options = [Option("edge-only", "", head_ms=73.5),
               Option("block5", "disc", bytes_mean=3000, head_ms=25, encode_ms=2, decode_ms=1, tail_ms=8)]
    # break-even near 1.5 Mbit/s with 10 ms each way: noise of +-10% around it must not flap the plan
    rng = np.random.default_rng(0)
    calm, jumpy = Planner(options, hysteresis_pct=10), Planner(options, hysteresis_pct=0)
    calm_choices, jumpy_choices = [], []
    for rate in 1.5e6 * (1 + 0.1 * rng.standard_normal(200)):
        calm_choices.append(calm.choose(rate, 20).option.split)
        jumpy_choices.append(jumpy.choose(rate, 20).option.split)
    def switches(choices):
        return sum(a != b for a, b in itertools.pairwise(choices))
    assert switches(calm_choices) < switches(jumpy_choices) / 4
    assert calm.choose(20e6, 20).option.split == "block5" and calm.choose(0.2e6, 20).option.split == "edge-only"


def test_estimator_ignores_idle_time_and_small_messages_and_drops_on_a_failure():
    est = BandwidthEstimator()
    assert est.rate_bps() is None
    # 20 KB that spent 20 ms + 10 ms delay on the link at 8 Mbit/s, ... then a minute of silence
    for now in (0.0, 0.1, 60.0):
        est.observe(20000, 10 + wire_bits(20000) / 8e6 * 1e3, 10.0, now)
    assert est.up_ms() == est.down_ms() == 10.0 and est.rtt_ms() == 20.0  # no TCP round trip yet: equal
    assert est.rate_bps() == pytest.approx(8e6, rel=1e-6)
    est.observe(MIN_SAMPLE_BYTES - 1, 10.01, 10.0, 61.0)  # too small and quick to say anything about the rate
    assert est.rate_bps() == pytest.approx(8e6, rel=1e-6)
    est.observe_failure(0, 10_000, 71.0)  # an outage: 10 s and nothing through
    assert est.rate_bps() < 8e6 * 0.1


def test_an_asymmetric_path_is_measured_each_way_and_the_rate_from_the_uplinks_own_delay():
    """40 ms up, 10 ms down (an LTE uplink): the reply's time gives the way down, TCP's smallest round
    trip the sum; a transfer's time on the link is its uplink time less 40 ms, not less 10."""
    est = BandwidthEstimator()
    for now in (0.0, 0.5, 1.0):
        est.observe(20000, 40 + wire_bits(20000) / 8e6 * 1e3, 10.0, now, tcp_rtt_ms=50.0)
    assert est.down_ms() == 10.0 and est.up_ms() == 40.0 and est.rtt_ms() == 50.0
    assert est.rate_bps() == pytest.approx(8e6, rel=1e-6)
    link = Trace(np.zeros(1), np.array([8e6]), 1.0)
    assert KnownPath(link, 40, 10).rtt_ms == 50 and KnownPath(link, 40, 10, wan_up_bps=2e6).carry_seconds(
        0.0, 8e6) == pytest.approx(4.0)  # a slower WAN hop sets the pace


def test_a_dip_leaves_the_estimate_once_its_sample_is_older_than_the_age_limit():
    """Probes a second apart while the edge computes alone: a 1 Mbit/s dip among 8 Mbit/s samples
    counts until the newest sample is MAX_SAMPLE_AGE_S past it, not for the whole 5-sample window."""
    est = BandwidthEstimator()

    def probe(rate_bps, now):
        est.observe(PROBE_BYTES, 10 + wire_bits(PROBE_BYTES) / rate_bps * 1e3, 10.0, now)

    for now in range(4):
        probe(8e6, float(now))
    probe(1e6, 4.0)
    probe(8e6, 4.0 + MAX_SAMPLE_AGE_S)
    assert est.rate_bps() < 8e6 * 0.5  # still in
    probe(8e6, 4.1 + MAX_SAMPLE_AGE_S)
    assert est.rate_bps() == pytest.approx(8e6, rel=1e-6) and len(est.samples) == 5  # out, though in the window


def test_a_small_message_that_took_long_on_the_link_is_a_sample():
    """After a collapse AGLOP sends only small DISC messages; at 0.3 Mbit/s a 4 KB one spends ~110 ms
    on the link, which measures the rate well enough to count."""
    est = BandwidthEstimator()
    est.observe(20000, 10 + wire_bits(20000) / 20e6 * 1e3, 10.0, 0.0)  # 20 Mbit/s before
    for now in range(1, 6):
        est.observe(4000, 10 + wire_bits(4000) / 0.3e6 * 1e3, 10.0, float(now))
    assert est.rate_bps() < 0.4e6 and est.last_sample_s == 5.0
    assert MIN_SAMPLE_MS <= wire_bits(4000) / 0.3e6 * 1e3


def test_a_transfer_over_its_send_window_is_no_sample_and_probes_fit_the_window():
    """30 KB (21 segments) sent with a restarted window of 10 waits a 40 ms round trip for ACKs: read as
    link time it would halve a 20 Mbit/s estimate. Unless it spent STALLED_SAMPLE_MS on the link."""
    est = BandwidthEstimator()
    on_link_ms = wire_bits(20000) / 20e6 * 1e3
    est.observe(20000, 20 + on_link_ms, 20.0, 0.0, window=40)
    stalled = wire_bits(30000) / 20e6 * 1e3 + 40 - 10 * MSS * 8 / 20e6 * 1e3
    est.observe(30000, 20 + stalled, 20.0, 1.0, window=10)
    assert est.rate_bps() == pytest.approx(20e6, rel=1e-6) and est.last_sample_s == 0.0
    est.observe(30000, 20 + STALLED_SAMPLE_MS, 20.0, 2.0, window=10)  # a collapsing link still counts
    assert est.rate_bps() < 10e6 and est.last_sample_s == 2.0
    assert probe_bytes(None, 30) == PROBE_BYTES
    assert probe_bytes(40, 30) == PROBE_BYTES
    assert segments(probe_bytes(10, 30) + 30) == 10  # the whole message within a restarted window
    assert probe_bytes(3, 30) == MIN_SAMPLE_BYTES  # never too small to be a sample


def test_estimating_policy_probes_when_its_estimate_is_old():
    policy = EstimatingPolicy(Planner([Option("edge-only", "", head_ms=10)]), probe_interval_s=1.0)
    assert policy.probe_due(0.0)  # nothing measured yet
    policy.observe(20000, 30, 10, 5.0)
    assert not policy.probe_due(5.5) and policy.probe_due(6.1)


def test_edge_only_is_looked_at_again_and_its_looks_replace_the_profile():
    """A Pi 3 B+ profile put edge-only 20-25% slower than runs measured; weighed a half against the
    profile, one look left the error at 10%, over an offloading choice. Looks count in full, and a look
    that meets the host's jitter is followed by another, LOOK_SPACING requests later."""
    local = Option("edge-only", "", head_ms=118)
    block11 = Option("block11", "disc", {"step": 0.4}, bytes_mean=2300, head_ms=75, encode_ms=0.2, decode_ms=0.2,
                     tail_ms=5)
    planner = Planner([local, block11], explore_pct=15)
    rate, rtt = 1e6, 4.0  # block11 about 104.5 ms predicted
    assert planner.choose(rate, rtt).option is block11
    planner.observe(block11, {"head": 75.0, "tail": 5.0}, 2380)
    look = planner.choose(rate, rtt)
    assert look.option is local and look.explored
    planner.observe(local, {"head": 112.0})  # jitter: it runs at 94 most of the time
    assert float(planner.model.predict(rate, rtt, planner.drift)[0]) == pytest.approx(112.0, rel=1e-6)  # the look, not the profile
    for _ in range(LOOK_SPACING):
        assert planner.choose(rate, rtt).option is block11
        planner.observe(block11, {"head": 75.0, "tail": 5.0}, 2380)
    second = planner.choose(rate, rtt)
    assert second.option is local and second.explored
    planner.observe(local, {"head": 94.0})
    assert float(planner.model.predict(rate, rtt, planner.drift)[0]) == pytest.approx(103.0, rel=1e-6)  # the looks' mean
    chosen = planner.choose(rate, rtt)
    assert chosen.option is local and not chosen.explored  # now chosen on its own
    # never more than EXPLORE_LOOKS looks, however close edge-only stays
    close = Planner([Option("edge-only", "", head_ms=110), block11], explore_pct=15)
    close.choose(rate, rtt)
    looks = 0
    for _ in range(10 * LOOK_SPACING):
        decision = close.choose(rate, rtt)
        looks += decision.explored
        close.observe(decision.option, {"head": 110.0} if not decision.option.offloads else {"head": 75.0, "tail": 5.0},
                      0 if not decision.option.offloads else 2380)
    assert looks == EXPLORE_LOOKS


def test_oracle_and_neurosurgeon_plans():
    profile = {"options": [vars(o) for o in (
        Option("edge-only", "", head_ms=100),
        Option("server-only", "raw", bytes_mean=600_000, tail_ms=20),
        Option("block5", "raw", bytes_mean=80_000, head_ms=30, tail_ms=8),
        Option("block5", "disc", {"step": 0.3}, bytes_mean=1500, drop_pts=0.4, head_ms=30, encode_ms=2, tail_ms=8))]}
    link = Trace(np.array([0.0, 10.0]), np.array([50e6, 0.1e6]), 20.0, loop=False)
    oracle = make_policy({"type": "oracle"}, profile, KnownPath(link, up_ms=5, down_ms=5))
    assert isinstance(oracle, OraclePolicy)
    assert oracle.choose(1.0).option.codec == "disc" and oracle.choose(11.0).option.split == "edge-only"
    neurosurgeon = make_policy({"type": "neurosurgeon"}, profile)
    assert all(o.codec in ("raw", "") for o in neurosurgeon.planner.allowed)
    strict = make_policy({"type": "aglop", "budget_pts": 0.1}, profile)
    assert all(o.drop_pts < 0.1 for o in strict.planner.allowed)


def test_a_plan_budgets_the_criterion_it_names():
    disc = Option("block5", "disc", {"step": 1.0}, bytes_mean=900, head_ms=30, encode_ms=2, tail_ms=8,
                  drops={"calibrated": 0.6, "expected": 0.4, "accuracy": 2.0, "agreement": 6.0})
    profile = {"options": [vars(o) for o in (Option("edge-only", "", head_ms=100), disc)]}
    assert make_policy({"type": "aglop"}, profile).planner.allowed[-1].codec == "disc"  # default: calibrated
    assert make_policy({"type": "aglop", "budget_pts": 0.5}, profile).planner.allowed[-1].codec == ""
    assert make_policy({"type": "aglop", "budget_pts": 0.5, "criterion": "expected"}, profile).planner.allowed[-1].codec == "disc"
    for criterion in ("accuracy", "agreement"):
        allowed = make_policy({"type": "aglop", "criterion": criterion}, profile).planner.allowed
        assert [o.split for o in allowed] == ["edge-only"]
    assert make_policy({"type": "aglop", "criterion": "agreement", "budget_pts": 7}, profile).planner.allowed[-1].codec == "disc"


def test_scenario_plan_types(tmp_path):
    base = "model: efficientnet_lite0\nplan: {plan}\n"
    ok = tmp_path / "ok.yaml"
    ok.write_text(base.format(plan="{type: aglop, budget_pts: 0.5, hysteresis_pct: 5}")
                  + "baselines: [{type: oracle}, {type: neurosurgeon}, {type: fixed, split: edge-only}]\n")
    scenario = load_scenario(ok)
    assert scenario["plan"]["type"] == "aglop" and len(scenario["baselines"]) == 3
    for plan, message in [("{type: aglpo}", "did you mean 'aglop'"), ("{type: aglop, split: block5}", "chooses 'split'"),
                          ("{type: aglop, budget_pts: 0}", "budget_pts: 0 is out of range"),
                          ("{type: fixed, split: block5}", "needs 'codec'"),
                          ("{type: aglop, criterion: top5}", "unknown accuracy criterion 'top5'")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(base.format(plan=plan))
        with pytest.raises(UserError) as err:
            load_scenario(bad)
        assert message in err.value.render() and "bad.yaml:2" in err.value.render()


AGLOP_SCENARIO = """name: replan
topology: {{kind: single, edges: 1}}
nodes: {{edge: {{device: pi_zero_2w}}, server: {{device: server}}}}
links:
  uplink: {{trace: {trace}, delay_ms: 5, queue_packets: 100}}
  downlink: {{rate_mbit: 10, delay_ms: 5}}
model: efficientnet_lite0
dataset: imagenet-samples
workload: {{requests: 10000, warmup: 0, deadline_s: 10, duration_s: 14}}
plan: {{name: aglop, type: aglop}}
baselines: [{{name: oracle, type: oracle}}]
output: {output}
"""


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_aglop_offloads_on_a_fast_link_and_stays_on_the_device_when_it_collapses(tmp_path):
    # Pensieve format: 20 Mbit/s for 6 s, then 0.1 Mbit/s: far enough below the break-even that a slow
    # moment of the host cannot make offloading tie with edge-only (at 0.3 Mbit/s it once did, while
    # the shaper still let a message's first two frames out at once).
    trace = tmp_path / "drop.trace"
    trace.write_text("".join(f"{t} {20 if t < 6 else 0.1}\n" for t in range(30)))
    scenario = tmp_path / "replan.yaml"
    scenario.write_text(AGLOP_SCENARIO.format(trace=trace, output=tmp_path / "results"))
    done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), str(scenario), "--quiet"],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    run_dir = next((tmp_path / "results").glob("replan-*"))
    with (run_dir / "requests.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    profile = json.loads((run_dir / "aglop-profile.json").read_text())
    drops = {(o["split"], o["codec"], json.dumps(o["params"], sort_keys=True)): o["drop_pts"] for o in profile["options"]}
    for method in ("aglop", "oracle"):
        mine = [r for r in rows if r["method"] == method]
        early = [r for r in mine if float(r["start_s"]) < 5]
        late = [r for r in mine if float(r["start_s"]) > 9]
        assert early and late, method
        # a Pi Zero 2 W (145 ms for Lite0) gains by offloading at 20 Mbit/s and 5 ms; at 0.1 Mbit/s it cannot
        assert sum(r["split"] != "edge-only" for r in early) >= 0.8 * len(early), method
        assert sum(r["split"] == "edge-only" for r in late) >= 0.8 * len(late), method
        assert all(r["predicted_ms"] and r["estimate_mbps"] for r in mine)
        # the budget (1 point of calibrated drop, the default, on the profile's photos) holds for every option run ...
        assert all(drops[(r["split"], r["codec"], r["codec_params"])] < 1.0 for r in mine), method
        # ... and on this run's 20 images top-1 agreement stays near it (a JPEG of the input agrees a few
        # points less here than on the profile's photos)
        assert sum(int(r["agrees_with_reference"]) for r in mine) >= 0.9 * len(mine)
    aglop = [r for r in rows if r["method"] == "aglop"]
    assert all(float(r["estimate_mbps"]) > 5 for r in aglop if 2 < float(r["start_s"]) < 5)
    assert all(float(r["estimate_mbps"]) < 1 for r in aglop if float(r["start_s"]) > 9)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [p["plan"] for p in manifest["edge_plans"]] == ["aglop", "oracle"]
    # the manifest says what the planners budgeted, the defaults written out
    assert [(p["criterion"], p["budget_pts"]) for p in manifest["plans"]] == [("calibrated", 1.0)] * 2
    # the scenario's congestion control (default cubic), whatever this machine's sysctl says
    assert {p["tcp_congestion_control"] for p in manifest["edge_plans"]} == {"cubic"}
    assert (run_dir / "aglop-profile.json").exists()


def test_the_planner_follows_compute_drift_seen_in_answered_requests():
    local = Option("edge-only", "", head_ms=100)
    offload = Option("block5", "disc", bytes_mean=1500, head_ms=30, encode_ms=2, decode_ms=1, tail_ms=8)
    planner = Planner([local, offload])
    assert planner.choose(1e6, 80).option is local  # 100 ms here vs 30 + 2 + 13 + 80 + 9 = 134 ms there
    for _ in range(20):  # the edge turns out twice as slow as profiled (the host's speed drifted)
        planner.observe(local, {"head": 200.0})
    assert planner.drift.of("head", local) == pytest.approx(2.0, rel=0.02)
    assert planner.drift.of("head", offload) == pytest.approx(2.0, rel=0.02)  # the host's scale, carried over
    decision = planner.choose(1e6, 80)
    assert decision.option is offload and decision.predicted_ms == pytest.approx(2 * 30 + 2 + 13.5 + 80 + 9, abs=1)
    planner.observe(Option("stem", "raw", head_ms=0.1), {"head": 50.0})  # too short to say anything
    assert planner.drift.scale["head"] == pytest.approx(2.0, rel=0.02)


def test_one_hiccup_moves_the_prediction_by_a_bounded_step_and_a_lasting_change_is_followed():
    """On a Pi 4 edge running alone (about 58 ms) one request took 200 ms (the shared host): counted in
    full it raised edge-only's prediction past an offloading option's 87 ms, which the planner then ran
    for 15 s at 92 ms while edge-only would have taken 55. A request counts as at most MAX_STEP times
    what was predicted for it; a lasting slowdown still comes through in a few requests."""
    local = Option("edge-only", "", head_ms=58)
    offload = Option("server-only", "jpeg", bytes_mean=15000, head_ms=0.0, encode_ms=2, decode_ms=2, tail_ms=39)
    planner = Planner([local, offload], hysteresis_pct=4)
    rate, rtt = 20e6, 40.0
    for _ in range(10):
        assert planner.choose(rate, rtt).option is local
        planner.observe(local, {"head": 58.0})
    planner.observe(local, {"head": 200.0})
    predicted = float(planner.model.predict(rate, rtt, planner.drift)[0])
    assert predicted == pytest.approx(58 * (1 - ProfileDrift.SMOOTHING + ProfileDrift.SMOOTHING * ProfileDrift.MAX_STEP),
                                      rel=1e-6)
    assert planner.choose(rate, rtt).option is local
    for _ in range(8):  # the host now runs the edge at 3x for good
        planner.observe(local, {"head": 174.0})
    assert planner.drift.of("head", local) > 2 and planner.choose(rate, rtt).option is offload


def test_drift_of_one_option_stays_with_it_once_another_is_seen():
    """Two heads that drift apart (one split meets the CPU quota's throttling, the other does not) keep
    their own factors: running one does not move the other's prediction by its whole ratio."""
    short, long = Option("block1", "disc", head_ms=30, tail_ms=20), Option("edge-only", "", head_ms=150)
    drift = ProfileDrift()
    for _ in range(40):
        drift.observe(short, {"head": 30.0, "tail": 20.0})
        drift.observe(long, {"head": 225.0})  # 1.5x its profile; block1 as profiled
    assert drift.of("head", long) * 150 == pytest.approx(225, rel=0.05)
    assert drift.of("head", short) * 30 == pytest.approx(30, rel=0.05)
    assert drift.of("tail", short) == pytest.approx(1.0, rel=0.01)


def test_sizes_follow_the_runs_inputs_per_codec_setting_else_per_codec():
    """The profile's JPEG sizes come from its photos; a run's inputs can code 1.4x larger."""
    jpeg85 = Option("server-only", "jpeg", {"quality": 85}, bytes_mean=10_000, tail_ms=20)
    jpeg95 = Option("server-only", "jpeg", {"quality": 95}, bytes_mean=17_000, tail_ms=20)
    disc = Option("block5", "disc", {"step": 0.4}, bytes_mean=3_500, head_ms=60, tail_ms=12)
    raw = Option("block5", "raw", bytes_mean=62_737, head_ms=60, tail_ms=12)
    planner = Planner([jpeg85, jpeg95, disc, raw])
    for _ in range(30):
        planner.observe(jpeg85, {"tail": 20.0}, 14_000 + 80)
        planner.observe(raw, {"head": 60.0, "tail": 12.0}, 70_000)  # raw tensors have one size
    assert planner.drift.size_of(jpeg85) == pytest.approx(1.4, rel=0.01)
    assert planner.drift.size_of(jpeg95) == pytest.approx(1.4, rel=0.01)  # never run: the codec's
    assert planner.drift.size_of(disc) == planner.drift.size_of(raw) == 1.0
    fast = planner.model.stages(8e6, 10, planner.drift)["transfer"]
    assert fast[0] == pytest.approx(float(wire_bits(14_000)) / 8e6 * 1e3 + 10, rel=1e-6)


def test_slow_start_after_idle_adds_round_trips_only_when_the_window_runs_out():
    rtt_ms, rate = 40.0, 20e6

    def time_ms(message_bytes, window=None):
        bits, count = np.array([float(wire_bits(message_bytes))]), np.array([float(segments(message_bytes))])
        return float(transfer_ms(bits, count, rate, rtt_ms, window)[0])

    def segment_ms(message_bytes):
        return float(wire_bits(message_bytes) / segments(message_bytes)) / rate * 1e3

    assert time_ms(30_000) == pytest.approx(float(wire_bits(30_000)) / rate * 1e3 + rtt_ms)
    assert time_ms(3_000, 10) == pytest.approx(time_ms(3_000))  # 3 segments fit the initial window
    # 30 KB = 21 segments: 10 go, then the sender waits for their ACKs (one RTT less their own time)
    assert time_ms(30_000, 10) == pytest.approx(time_ms(30_000) + rtt_ms - 10 * segment_ms(30_000))
    # 600 KB: windows of 10, 20, 40 segments each leave before an RTT at 20 Mbit/s; 80 fill the pipe
    assert time_ms(600_000, 10) - time_ms(600_000) == pytest.approx(
        sum(rtt_ms - w * segment_ms(600_000) for w in (10, 20, 40)))
    assert time_ms(600_000, 100) == pytest.approx(time_ms(600_000))  # a warm connection: no stall


def test_linux_restarts_the_window_after_an_idle_rto():
    assert restart_window(80, rto_ms=204, idle_ms=150) == 80  # not idle long enough
    assert restart_window(80, rto_ms=204, idle_ms=300) == 40  # one RTO: halved
    assert restart_window(80, rto_ms=204, idle_ms=5000) == 10  # never under the initial window
    assert restart_window(80, rto_ms=204, idle_ms=5000, restarts=False) == 80  # sysctl off
    assert restart_window(6, rto_ms=204, idle_ms=5000) == 10


def test_tcps_smallest_round_trip_is_read_from_the_kernel():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        client.sendall(bytes(20_000))
        peer.recv(20_000)
        rtt = min_rtt_ms(client)
        assert rtt is not None and 0 < rtt < 50  # loopback: well under a millisecond, a loaded host aside
        assert send_window(client) >= 10
    finally:
        for s in (client, peer, server):
            s.close()


def test_the_congestion_control_read_is_the_connections_own():
    """A socket's TCP_CONGESTION follows the namespace's default until set; the manifest records it."""
    default = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    assert congestion_control() == default
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as client:
            assert congestion_control(client) == default
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")  # always built in
            assert congestion_control(client) == "reno"


def test_a_scenario_pins_its_connections_congestion_control():
    """Set on the listener before it listens, an accepted connection has it too; 'default' leaves
    the namespace's; a name the kernel has not loaded stops the run before anything starts."""
    default = congestion_control()
    with socket.socket() as listener:
        use_congestion_control(listener, "reno")
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.socket() as client:
            use_congestion_control(client, HOST_DEFAULT)
            client.connect(listener.getsockname())
            accepted, _ = listener.accept()
            with accepted:
                assert congestion_control(accepted) == "reno"
                assert congestion_control(client) == default
    check_congestion_control("reno", "s.yaml: tcp.congestion_control")
    with pytest.raises(UserError, match="not loaded") as err:
        check_congestion_control("nosuchcc", "s.yaml: tcp.congestion_control")
    assert "modprobe tcp_nosuchcc" in err.value.fix


def test_edge_only_never_run_is_tried_once_when_close_and_its_measured_time_taken():
    """The profile puts edge-only 25% slower than it runs (as on a Pi 4): without trying it the planner
    would never learn that; tried once, it switches. Tried at most once, only when close, and only
    from an offloading choice."""
    local = Option("edge-only", "", head_ms=71)
    block11 = Option("block11", "disc", {"step": 0.4}, bytes_mean=2300, head_ms=40, encode_ms=0.2, decode_ms=0.2, tail_ms=5)
    planner = Planner([local, block11], explore_pct=15)
    rate, rtt = 1.4e6, 4.0  # block11 ~64 ms predicted, edge-only 71 (within 15%)
    first = planner.choose(rate, rtt)
    assert first.option is block11 and not first.explored
    planner.observe(block11, {"head": 40.0, "tail": 5.0}, 2300 + 80)
    second = planner.choose(rate, rtt)
    assert second.option is local and second.explored
    planner.observe(local, {"head": 55.0})  # it runs at 55 ms, not 71
    assert all(planner.choose(rate, rtt).option is local for _ in range(5))
    far = Planner([local, block11], explore_pct=15)
    far.choose(100e6, 4.0)
    far.observe(block11, {"head": 40.0, "tail": 5.0}, 2300 + 80)
    assert not far.choose(100e6, 4.0).explored  # edge-only is not within 15% of 47 ms
    assert not Planner([local, block11]).choose(rate, rtt).explored  # off unless asked
    # one way only: from edge-only, an offloading option predicted close is not tried
    slow_local = Option("edge-only", "", head_ms=60)
    from_local = Planner([slow_local, block11], explore_pct=15)
    assert [from_local.choose(rate, rtt) for _ in range(2)][-1].option is slow_local  # 60 ms vs block11's 64
    from_local.observe(slow_local, {"head": 60.0})
    assert not any(from_local.choose(rate, rtt).explored for _ in range(5))


def outage_profile() -> dict:
    """Every kind of option a planner can choose: edge-only, a raw input, a raw and a coded activation."""
    return {"options": [vars(o) for o in (
        Option("edge-only", "", head_ms=100),
        Option("server-only", "raw", bytes_mean=600_000, tail_ms=20),
        Option("block5", "raw", bytes_mean=80_000, head_ms=30, tail_ms=8),
        Option("block5", "disc", {"step": 0.3}, bytes_mean=18_000, drop_pts=0.4, head_ms=30, encode_ms=2,
               tail_ms=8))]}


def test_through_an_outage_the_judge_and_the_oracle_wait_for_the_link_and_stay_small():
    """An outage delays a predicted transfer until the link carries it again: finite, meaningful, and
    computed over the trace's bins (the judge once built an array per millisecond of the predicted
    time, 1 bit/s in an outage: 147 million floats for one 18 KB message)."""
    link = Trace(np.array([0.0, 0.5, 1.5, 3.0, 4.0]), np.array([5e6, 0.0, 5e6, 0.0, 5e6]), 5.0)
    judge = ModelJudge(outage_profile(), KnownPath(link, 5, 5), deadline_s=30)
    disc = Option("block5", "disc", {"step": 0.3})
    tracemalloc.start()
    judged = judge.stages(disc, 0.6, ProfileDrift(), None, 18_080)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    # 0.9 s of outage left, then 18 KB and its headers at 5 Mbit/s (~30 ms), then the delay both ways
    assert 900 + 29 < judged["transfer"] < 900 + 35 + 10 + 1
    in_outage = make_policy({"type": "oracle"}, outage_profile(), KnownPath(link, 5, 5))
    assert in_outage.choose(0.6).option.split == "edge-only"  # nothing crosses for 0.9 s
    assert in_outage.choose(1.6).option.codec == "disc"
    never = Trace(np.array([0.0, 1.0]), np.array([5e6, 0.0]), 2.0, loop=False)  # ends in an outage
    assert ModelJudge(outage_profile(), KnownPath(never, 5, 5), 30).stages(disc, 1.5, ProfileDrift(), None, 18_080)[
        "transfer"] == pytest.approx(30_000 + 10, rel=0.01)  # the deadline, not infinity
    assert make_policy({"type": "oracle"}, outage_profile(), KnownPath(never, 5, 5)).choose(1.5).option.split == \
        "edge-only"


def test_the_codec_table_carried_split_to_split_matches_each_option_measured_on_its_own(tmp_path, monkeypatch):
    """The table runs the network once, carrying activations from split to split in a channels-last copy;
    each DISC option measured from the input on its own, in the model's own layout, gives the same."""
    import torch

    from splitbed.aglop.profile import (
        PLAN_CRITERIA,
        candidate_options,
        codec_table,
        criterion_drops,
        profile_views,
    )
    from splitbed.codecs import CalibrationStore, get_codec
    from splitbed.codecs.criteria import ViewLosses, fit_temperature, softmax
    from splitbed.codecs.evaluation import measure
    from splitbed.models import get_model

    monkeypatch.setenv("SPLITBED_CACHE", str(tmp_path))
    model = get_model("fmnist_cnn")  # its activations are larger than its input: DISC options given here
    options = candidate_options(model) + [Option(split, "disc", {"step": step, "alpha": 1.0})
                                          for split in ("conv2", "conv3") for step in (0.2, 0.8)]
    store = CalibrationStore(tmp_path / "calibration")
    table = codec_table(model, options, store, say=lambda _: None, progress=False)
    assert set(table) == {o.key for o in options}
    edge_only = next(o for o in options if o.split == "edge-only")
    assert table[edge_only.key]["bytes_mean"] == 0 and set(table[edge_only.key]["drops"].values()) == {0.0}
    inputs, labels = profile_views(model)
    checked = []
    with torch.no_grad():
        logits = model.full()(inputs).numpy().astype("float64")
        reference, calibrated = softmax(logits), softmax(logits, fit_temperature(logits, labels))
        for option in (o for o in options if o.codec == "disc"):
            acts = model.head(option.split)(inputs).numpy()
            codec = get_codec("disc", **option.params, calibration=store.get(model.name, option.split))
            rebuilt, row = measure(codec, acts, store, timing_items=1)
            top1 = model.tail(option.split)(torch.from_numpy(rebuilt)).argmax(1).numpy()
            drops = criterion_drops(ViewLosses.of(reference, top1, labels, calibrated))
            entry = table[option.key]
            checked.append(option.key)
            assert abs(entry["bytes_mean"] - row["wire_bytes"]) <= 0.001 * row["wire_bytes"], option.key
            for criterion in PLAN_CRITERIA:
                assert abs(entry["drops"][criterion] - drops[criterion]) <= 0.2, (option.key, criterion)
    assert len(checked) == 4
