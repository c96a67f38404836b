"""The study judgement of a planner: paired, cross-fitted margins over the lowest other method and
the best fixed option in hindsight, and the latency model's error per option and stage
(splitbed.analysis.judgement)."""

import numpy as np
import pytest

from splitbed.analysis.judgement import (
    block_resamples,
    estimate_ratio,
    fixed_over_budget,
    hindsight_coverage,
    jitter_floor_errors,
    judge_energy_point,
    judge_point,
    margin_ci95_pct,
    model_errors,
    same_option_spread_pct,
)
from splitbed.app.breakdown import NAMES

TYPES = {"aglop": "aglop", "oracle": "oracle", "neurosurgeon": "neurosurgeon", "edge-only": "fixed",
         "jpeg": "fixed", "disc": "fixed"}


def rows_of(method: str, e2e: list[float], split: str = "block5", status: str = "ok", **fields) -> list[dict]:
    rows = []
    for i, value in enumerate(e2e):
        row = dict.fromkeys(NAMES, "")
        row.update(request_id=i, method=method, e2e_ms=value, split=split, codec="disc", codec_params='{"step": 0.4}', status=status)
        row.update(fields)
        rows.append(row)
    return rows


def noisy(mean: float, n: int = 40, spread: float = 0.15, seed: int = 0) -> list[float]:
    return list(mean * (1 + spread * np.random.default_rng(seed).standard_normal(n)))


def test_a_planner_within_the_noise_of_the_lowest_passes_and_one_clearly_slower_fails():
    base = rows_of("oracle", noisy(50)) + rows_of("neurosurgeon", noisy(70, seed=1)) + rows_of("edge-only", noisy(90, seed=2))
    close = judge_point(base + rows_of("jpeg", noisy(60, seed=3)) + rows_of("aglop", noisy(61, seed=4)), TYPES)
    assert close["lowest_other"] == "jpeg" and close["lowest_or_within_ci"]
    low, high = close["over_lowest_other_ci95_pct"]
    assert low < 0 < high
    far = judge_point(base + rows_of("jpeg", noisy(60, seed=3)) + rows_of("aglop", noisy(80, seed=4)), TYPES)
    assert not far["lowest_or_within_ci"] and far["over_lowest_other_ci95_pct"][0] > 0


def test_best_fixed_in_hindsight_is_the_fixed_plan_with_the_lowest_mean_and_never_a_planner():
    rows = (rows_of("neurosurgeon", [40.0] * 10) + rows_of("oracle", [30.0] * 10) + rows_of("jpeg", [54.0] * 10)
            + rows_of("disc", [50.0] * 9)
            + [{**r, "request_id": 9} for r in rows_of("disc", [80.0], status="failed: reset")] + rows_of("aglop", [55.0] * 10))
    point = judge_point(rows, TYPES)
    # disc's failed request counts with the time it took: (9 x 50 + 80) / 10 = 53, under jpeg's 54
    assert point["methods"]["disc"]["mean_e2e_ms"] == pytest.approx(53.0) and point["methods"]["disc"]["failed"] == 1
    assert point["best_fixed"] == "disc" and point["lowest_other"] == "neurosurgeon"
    assert point["over_best_fixed_insample_pct"] == pytest.approx(100 * (55 / 53 - 1))
    assert point["oracle_over_planner_pct"] == pytest.approx(100 * (30 / 55 - 1))


def test_model_error_per_option_and_stage_counts_every_options_answered_requests():
    fields = dict(model_ms=100.0, model_head_ms=60.0, model_encode_ms=1.0, model_transfer_ms=20.0, model_decode_ms=1.0,
                  model_tail_ms=18.0, edge_compute_ms=50.0, encode_ms=1.0, uplink_ms=15.0, downlink_ms=5.0,
                  decode_ms=1.0, server_queue_ms=2.0, server_compute_ms=16.0)
    rows = (rows_of("disc", [90.0] * 5, **fields) + rows_of("disc", [500.0], status="failed: timeout", **fields)
            + rows_of("edge-only", [150.0] * 5, split="edge-only", codec="", model_ms=160.0, model_head_ms=160.0,
                      edge_compute_ms=150.0, **dict.fromkeys([f"model_{s}_ms" for s in ("encode", "transfer", "decode",
                                                                                       "tail")], 0.0),
                      **dict.fromkeys(["encode_ms", "uplink_ms", "downlink_ms", "decode_ms", "server_queue_ms",
                                       "server_compute_ms"], 0.0)))
    errors = model_errors(rows)
    assert errors["overall"]["n"] == 10  # the failed request left out; edge-only counted
    assert errors["overall"]["median_abs_error_pct"] == pytest.approx((100 * 10 / 90 + 100 * 10 / 150) / 2)
    assert errors["per_option"]["edge-only"]["median_abs_error_pct"] == pytest.approx(100 * 10 / 150)
    assert errors["per_option"]["edge-only"]["median_transfer_abs_error_pct"] is None
    option = errors["per_option"]['block5 disc {"step": 0.4}']
    assert option["median_stage_error_ms"] == pytest.approx({"head": 10.0, "encode": 0.0, "transfer": 0.0, "decode": 0.0,
                                                             "tail": 0.0})
    assert option["mean_error_pct"] == pytest.approx(100 * (100 / 90 - 1))


def test_the_cross_fitted_best_fixed_plan_is_chosen_on_one_half_and_judged_on_the_other():
    """Two fixed plans that each look 5% faster than the planner on one half of the rounds: the plan
    chosen on one half is judged on the other, where it is 5% slower."""
    def alternating(method, even, odd):
        return rows_of(method, [even, odd] * 10)

    rows = alternating("jpeg", 95.0, 105.0) + alternating("disc", 105.0, 95.0) + alternating("aglop", 100.0, 100.0)
    rows += alternating("oracle", 90.0, 90.0)
    point = judge_point(rows, TYPES)
    assert point["over_best_fixed_insample_pct"] == pytest.approx(0.0)  # both fixed plans average 100 overall
    # chosen on the even rounds: jpeg (95) -> judged on the odd: 105; the other way: disc -> 105
    assert point["over_best_fixed_pct"] == pytest.approx(100 * (100 / 105 - 1))


def test_over_best_fixed_carries_an_interval_that_tells_noise_from_a_real_loss():
    base = rows_of("oracle", noisy(50)) + rows_of("neurosurgeon", noisy(90, seed=1)) + rows_of("disc", noisy(60, seed=3))
    tie = judge_point(base + rows_of("aglop", noisy(60, seed=4)), TYPES)
    low, high = tie["over_best_fixed_ci95_pct"]
    assert low < tie["over_best_fixed_pct"] < high and low < 0 < high
    loss = judge_point(base + rows_of("aglop", noisy(72, seed=4)), TYPES)  # 20% slower, 15% spread, n=40
    assert loss["over_best_fixed_ci95_pct"][0] > 5


def test_the_jitter_floor_keeps_the_model_but_gives_it_each_options_median_head_and_tail():
    fields = dict(model_ms=100.0, model_head_ms=60.0, model_encode_ms=1.0, model_transfer_ms=20.0, model_decode_ms=1.0,
                  model_tail_ms=18.0, encode_ms=1.0, uplink_ms=15.0, downlink_ms=5.0, decode_ms=1.0, server_queue_ms=0.0)
    heads, tails = [40.0, 50.0, 60.0], [10.0, 20.0, 30.0]  # medians 50 and 20
    rows = []
    for i, (head, tail) in enumerate(zip(heads, tails, strict=True)):
        e2e = head + 1 + 20 + 1 + tail
        rows += [{**r, "request_id": i} for r in rows_of("disc", [e2e], edge_compute_ms=head, server_compute_ms=tail, **fields)]
    # floor model = 100 - 60 - 18 + 50 + 20 = 92 ms for every request; measured 72, 92, 112
    assert jitter_floor_errors(rows) == pytest.approx([100 * 20 / 72, 0.0, 100 * 20 / 112])


def test_the_estimate_ratio_is_the_median_over_the_planners_answered_requests_with_a_rate():
    rows = (rows_of("aglop", [50.0] * 3, estimate_mbps=1.0, trace_rate_mbps=2.0)
            + rows_of("aglop", [50.0], estimate_mbps=3.0, trace_rate_mbps=2.0)
            + rows_of("aglop", [50.0], estimate_mbps=9.0, trace_rate_mbps=0.0)  # an outage: no ratio
            + rows_of("aglop", [50.0], estimate_mbps="", trace_rate_mbps=2.0)  # before any estimate
            + rows_of("aglop", [900.0], status="failed: reset", estimate_mbps=8.0, trace_rate_mbps=2.0)
            + rows_of("neurosurgeon", [50.0] * 5, estimate_mbps=4.0, trace_rate_mbps=2.0))
    assert estimate_ratio(rows, "aglop") == 0.5
    assert estimate_ratio(rows, "neurosurgeon") == 2.0
    assert estimate_ratio(rows, "oracle") is None


def test_the_same_option_run_by_two_methods_shows_the_hosts_noise_between_methods():
    """block5 by the fixed plan (mean 100) and by AGLOP (mean 110): 10% apart on one replay. Options run
    by one method, or by a method fewer than 10 times, say nothing of it."""
    rows = (rows_of("disc", [100.0] * 12) + rows_of("aglop", [105.0, 115.0] * 6)
            + rows_of("oracle", [300.0] * 9)  # too few requests to count
            + rows_of("edge-only", [80.0] * 12, split="edge-only", codec=""))
    assert same_option_spread_pct(rows) == pytest.approx(10.0)
    assert same_option_spread_pct(rows_of("edge-only", [80.0] * 12, split="edge-only", codec="")) is None


def test_pairing_by_round_resolves_a_margin_the_hosts_drift_hides_from_unpaired_samples():
    """The host's speed swings by +-30% from round to round and all methods meet the same swing; AGLOP is
    4% faster than the fixed plan in every round. The paired interval sees it; resampling each method's
    requests on their own does not."""
    drift = 1 + 0.3 * np.sin(np.arange(60) / 3)
    disc = list(100 * drift)
    aglop = list(96 * drift * (1 + 0.01 * np.random.default_rng(5).standard_normal(60)))
    rows = rows_of("disc", disc) + rows_of("aglop", aglop) + rows_of("oracle", list(90 * drift))
    low, high = judge_point(rows, TYPES)["over_best_fixed_ci95_pct"]
    assert -5 < low < high < 0
    unpaired_low, unpaired_high = margin_ci95_pct(aglop, disc)
    assert unpaired_low < 0 < unpaired_high


def test_block_resamples_are_runs_of_consecutive_rounds():
    draws = block_resamples(64, resamples=50)
    assert draws.shape == (50, 64) and draws.min() >= 0 and draws.max() < 64
    runs = np.diff(draws, axis=1)[:, :3]  # blocks of 4 (64 ** (1/3)): the first block is consecutive
    assert (runs == 1).all()


def test_options_a_planner_ran_outside_the_fixed_sweep_are_listed_with_their_share():
    rows = (rows_of("disc", [50.0] * 4) + rows_of("aglop", [50.0] * 3)
            + rows_of("aglop", [60.0], split="block6"))
    coverage = hindsight_coverage(rows, ["disc"], ["aglop"])["aglop"]
    assert coverage["outside_share"] == 0.25 and coverage["outside"] == {'block6 disc {"step": 0.4}': 1}


def energy_rows(method: str, energy: list[float], split: str, predicted: float | None = None, **fields) -> list[dict]:
    return [{**r, "edge_energy_mj": e, "radio_mj": e / 2, "predicted_mj": "" if predicted is None else predicted}
            for r, e in zip(rows_of(method, [100.0] * len(energy), split=split, **fields), energy, strict=True)]


def test_an_energy_planner_is_judged_on_each_requests_energy_paired_by_round():
    types = {"aglop-energy": "aglop", "aglop": "aglop", "edge-only": "fixed", "server-only": "fixed"}
    rows = (energy_rows("aglop-energy", noisy(200, seed=1), "edge-only", predicted=210.0)
            + energy_rows("aglop", noisy(300, seed=2), "block11")
            + energy_rows("edge-only", noisy(205, seed=3), "edge-only")
            + energy_rows("server-only", noisy(400, seed=4), "server-only"))
    rows[3]["edge_energy_mj"] = ""  # a failed request: its round leaves the paired table
    point = judge_energy_point(rows, types, "aglop-energy", "aglop")
    assert point["rounds"] == 39 and point["choices_differ"] and point["best_fixed"] == "edge-only"
    assert point["over_latency_planner_pct"] == pytest.approx(-33, abs=5)
    low, high = point["over_best_fixed_ci95_pct"]
    assert low < 0 < high  # within the noise of edge-only, as it runs edge-only
    assert point["methods"]["aglop"]["option"] == "block11 disc {\"step\": 0.4}"
    assert point["energy_model_error_pct"] == pytest.approx(np.median([abs(210 - e) / e * 100 for e in noisy(200, seed=1)
                                                                       if e != noisy(200, seed=1)[3]]), rel=1e-6)


def test_the_point_lists_what_the_planner_ran_beside_each_fixed_plans_mean():
    rows = (rows_of("aglop", [100.0] * 6, split="server-only") + rows_of("aglop", [60.0] * 2, split="edge-only")
            + rows_of("edge-only", [50.0] * 8, split="edge-only") + rows_of("jpeg", [90.0] * 8, split="server-only")
            + rows_of("oracle", [55.0] * 8, split="edge-only"))
    for r in rows:
        r["codec"] = "" if r["split"] == "edge-only" else "jpeg"
    point = judge_point(rows, TYPES)
    ran = point["planner_options"]
    assert list(ran) == ['server-only jpeg {"step": 0.4}', "edge-only"]  # most run first
    assert ran["edge-only"] == {"n": 2, "mean_e2e_ms": 60.0}
    assert point["fixed_option_means"] == {"edge-only": 50.0, 'server-only jpeg {"step": 0.4}': 90.0}


def test_a_fixed_plan_over_the_planners_budget_is_named():
    """Under the budget's criterion: JPEG q85 (1.4 points) is over 1 point, q95 and edge-only are not;
    a plan whose option the profile lacks counts as over (nothing says it is within)."""
    profile = {"options": [
        {"split": "edge-only", "codec": "", "params": {}, "drops": {"calibrated": 0.0, "expected": 0.0}},
        {"split": "server-only", "codec": "jpeg", "params": {"quality": 85, "rgb": True},
         "drops": {"calibrated": 1.4, "expected": 0.9}},
        {"split": "server-only", "codec": "jpeg", "params": {"rgb": True, "quality": 95},
         "drops": {"calibrated": 0.5, "expected": 0.3}}]}
    plans = {"aglop": {"type": "aglop"}, "edge-only": {"type": "fixed", "split": "edge-only"},
             "q85": {"type": "fixed", "split": "server-only", "codec": "jpeg", "params": {"rgb": True, "quality": 85}},
             "q95": {"type": "fixed", "split": "server-only", "codec": "jpeg", "params": {"quality": 95, "rgb": True}},
             "unknown": {"type": "fixed", "split": "block3", "codec": "disc", "params": {"step": 9}}}
    assert fixed_over_budget(plans, profile, "calibrated", 1.0) == ["q85", "unknown"]
    assert fixed_over_budget(plans, profile, "expected", 1.0) == ["unknown"]
    assert fixed_over_budget(plans, profile, "calibrated", 0.5) == ["q85", "q95", "unknown"]
