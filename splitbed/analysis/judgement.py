"""Judging a planner against every other method, and its latency model against every option.

Per run (one point of a study grid): each method's mean e2e with a bootstrap interval of its margin
over the lowest non-oracle method, and the best fixed option in hindsight (the fixed plan with the
lowest measured mean over the same replay). The lowest of several noisy means is lower than the
chosen plan's true mean (it was chosen for being low on these very requests), so the comparison is
also made cross-fitted: the best fixed plan is chosen on the even rounds and judged on the odd ones,
and the other way round (methods take turns, so round i is the same moment of the trace for all). Over any set of rows: the latency model's error per
option and per stage, from the model_*_ms columns every method's requests carry (the model told the
link's true rate and delay, so its error is apart from the bandwidth estimate's).
"""

from __future__ import annotations

import json
import statistics

import numpy as np

# the measured columns each stage of the model stands for; the model counts no server queueing, so
# queueing shows up as error in the tail
MEASURED = {"head": ("edge_compute_ms",), "encode": ("encode_ms",), "transfer": ("uplink_ms", "downlink_ms"),
            "decode": ("decode_ms",), "tail": ("server_queue_ms", "server_compute_ms")}


def margin_ci95_pct(ours: list[float], theirs: list[float], rounds: int = 2000) -> tuple[float, float]:
    """Bootstrap 95% interval of 1 - mean(ours) / mean(theirs), in percent: when it spans 0, the two
    methods' means differ by no more than the noise (on shared machines, host speed drifts)."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    ratios = [rng.choice(a, len(a)).mean() / rng.choice(b, len(b)).mean() for _ in range(rounds)]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(100 * (1 - high)), float(100 * (1 - low))


def option_of(row: dict) -> str:
    return f"{row['split']} {row['codec']} {row['codec_params'] if row['codec'] else ''}".strip()


def judge_point(rows: list[dict], plan_types: dict[str, str], planner: str = "aglop", oracle: str = "oracle") -> dict:
    """One run's methods: rows of requests.csv; plan_types: method -> plan type (fixed, aglop, ...).
    Failed requests count with the time they took."""
    e2e = {m: [float(r["e2e_ms"]) for r in rows if r["method"] == m] for m in dict.fromkeys(r["method"] for r in rows)}
    e2e = {m: v for m, v in e2e.items() if v}
    means = {m: statistics.fmean(v) for m, v in e2e.items()}
    others = [m for m in means if m not in (planner, oracle)]
    fixed = [m for m in means if plan_types.get(m) == "fixed"]
    lowest = min(others, key=means.get)
    best_fixed = min(fixed, key=means.get)
    ci = margin_ci95_pct(e2e[planner], e2e[lowest])
    over_low, over_high = (-m for m in reversed(margin_ci95_pct(e2e[planner], e2e[best_fixed])))
    return {"over_best_fixed_crossfit_pct": crossfit_over_best_fixed(rows, fixed, planner),
        "methods": {m: {"n": len(v), "mean_e2e_ms": means[m], "p50_e2e_ms": float(np.median(v)),
                        "failed": sum(r["status"] != "ok" for r in rows if r["method"] == m)} for m, v in e2e.items()},
        "lowest_other": lowest, "best_fixed": best_fixed,
        "margin_vs_lowest_other_pct": 100 * (1 - means[planner] / means[lowest]),
        "margin_vs_lowest_other_ci95_pct": ci,
        # lowest, or the lowest other is not faster beyond the noise
        "lowest_or_within_ci": means[planner] <= means[lowest] or ci[1] >= 0,
        "over_best_fixed_pct": 100 * (means[planner] / means[best_fixed] - 1),
        "over_best_fixed_ci95_pct": (over_low, over_high),
        "gap_to_oracle_pct": 100 * (means[planner] / means[oracle] - 1) if oracle in means else None,
    }


def crossfit_over_best_fixed(rows: list[dict], fixed: list[str], planner: str) -> float | None:
    """The planner's mean over the fixed plan chosen on the other half of the rounds, both on the same
    half, averaged over the two halves; in percent over (positive: the planner is slower)."""
    def mean(method: str, parity: int) -> float | None:
        values = [float(r["e2e_ms"]) for r in rows if r["method"] == method and int(r["request_id"]) % 2 == parity]
        return statistics.fmean(values) if values else None

    ratios = []
    for choose_on, judge_on in ((0, 1), (1, 0)):
        chosen = {m: mean(m, choose_on) for m in fixed}
        chosen = {m: v for m, v in chosen.items() if v is not None}
        if not chosen:
            return None
        best = min(chosen, key=chosen.get)
        ours, theirs = mean(planner, judge_on), mean(best, judge_on)
        if ours is None or theirs is None:
            return None
        ratios.append(ours / theirs)
    return 100 * (statistics.fmean(ratios) - 1)


def offloaded_with_model(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == "ok" and r["model_ms"] not in ("", None) and r["split"] != "edge-only"]


def model_errors(rows: list[dict]) -> dict:
    """The latency model against what was measured, over offloaded, answered requests that carry the
    model's prediction: overall and per option, the median of |model - measured| / measured (e2e), the
    error of the mean, and per stage the median signed error (model - measured, ms: a wrong term) and
    the median absolute one (ms: where the request-to-request noise is)."""
    judged = offloaded_with_model(rows)

    def stats(group: list[dict]) -> dict:
        model, measured = (np.array([float(r[c]) for r in group]) for c in ("model_ms", "e2e_ms"))
        stage_error = {stage: np.array([float(r[f"model_{stage}_ms"]) - sum(float(r[c]) for c in columns)
                                        for r in group]) for stage, columns in MEASURED.items()}
        network = np.array([float(r["uplink_ms"]) + float(r["downlink_ms"]) for r in group])
        transfer = np.array([float(r["model_transfer_ms"]) for r in group])
        return {"n": len(group), "median_abs_error_pct": float(np.median(abs(model - measured) / measured) * 100),
                # the transfer term alone, against uplink + downlink: the path model's own error
                "median_transfer_abs_error_pct": float(np.median(abs(transfer - network) / network) * 100),
                # the error of the option's mean: what a choice between options rests on
                "mean_error_pct": float((model.mean() / measured.mean() - 1) * 100),
                "median_e2e_ms": float(np.median(measured)),
                "median_stage_error_ms": {stage: float(np.median(e)) for stage, e in stage_error.items()},
                "median_stage_abs_error_ms": {stage: float(np.median(abs(e))) for stage, e in stage_error.items()},
                "methods": sorted({r["method"] for r in group})}

    per_option = {}
    for option in dict.fromkeys(map(option_of, judged)):
        per_option[option] = stats([r for r in judged if option_of(r) == option])
    return {"overall": stats(judged) if judged else None, "per_option": per_option}


def jitter_floor_errors(rows: list[dict]) -> list[float]:
    """|error| / measured, request by request, of the model made as right as a model of the mean can be
    about the two stages the host's speed moves from one request to the next: its head and tail terms
    replaced by the run's median measured head and tail of the same option. What is left is the
    request-to-request spread no prediction made before the request can remove (one run's rows)."""
    judged = offloaded_with_model(rows)

    def measured(r: dict, stage: str) -> float:
        return sum(float(r[c]) for c in MEASURED[stage])

    errors = []
    for option in dict.fromkeys(map(option_of, judged)):
        group = [r for r in judged if option_of(r) == option]
        medians = {stage: float(np.median([measured(r, stage) for r in group])) for stage in ("head", "tail")}
        for r in group:
            floor_model = float(r["model_ms"]) + sum(m - float(r[f"model_{stage}_ms"]) for stage, m in medians.items())
            errors.append(abs(floor_model - float(r["e2e_ms"])) / float(r["e2e_ms"]) * 100)
    return errors


def planner_errors(rows: list[dict], method: str) -> float | None:
    """Median |predicted - measured| / measured of a planner's own predictions (its rate estimate included)."""
    pairs = [(float(r["predicted_ms"]), float(r["e2e_ms"])) for r in rows
             if r["method"] == method and r["status"] == "ok" and r["predicted_ms"] not in ("", None)]
    return statistics.median(abs(p - m) / m * 100 for p, m in pairs) if pairs else None


def same_option_spread_pct(rows: list[dict], min_requests: int = 10) -> float | None:
    """The host's noise between methods: an option run by two or more methods (a fixed plan and a planner
    that chose it, each at least `min_requests` times) in one run has one true mean, yet the methods'
    means differ; the largest (max - min) / min over such options, in %. A margin between methods
    smaller than this is not resolved by the run. None when no option was run by two methods."""
    means: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["status"] == "ok":
            means.setdefault(option_of(r), {}).setdefault(r["method"], []).append(float(r["e2e_ms"]))
    spreads = []
    for by_method in means.values():
        big = [statistics.fmean(v) for v in by_method.values() if len(v) >= min_requests]
        if len(big) >= 2:
            spreads.append(100 * (max(big) - min(big)) / min(big))
    return max(spreads) if spreads else None


def estimate_ratio(rows: list[dict], method: str) -> float | None:
    """Median of the planner's bandwidth estimate over the trace's rate at send time: its rate term's
    bias, which the model's own error (told the trace's rate) leaves out."""
    ratios = [float(r["estimate_mbps"]) / float(r["trace_rate_mbps"]) for r in rows
              if r["method"] == method and r["status"] == "ok" and r["estimate_mbps"] not in ("", None)
              and r["trace_rate_mbps"] not in ("", None) and float(r["trace_rate_mbps"]) > 0]
    return statistics.median(ratios) if ratios else None


def chosen_drops(rows: list[dict], method: str, profile: dict, criterion: str) -> list[float]:
    """The profile's loss (under `criterion`) of every option the method ran, request by request."""
    drops = {(o["split"], o["codec"], json.dumps(o["params"], sort_keys=True)): o["drops"][criterion]
             for o in profile["options"]}
    return [drops.get((r["split"], r["codec"], r["codec_params"]), float("nan"))
            for r in rows if r["method"] == method and r["status"] == "ok"]
