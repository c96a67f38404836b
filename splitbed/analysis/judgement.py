"""Judging a planner against every other method, and its latency model against every option.

Per run (one point of a study grid), methods take turns request by request, so round i (request_id i
of every method) is one moment of the trace and of the host's speed for all of them. Margins are
therefore paired: resampling whole rounds keeps that pairing, and resampling them in blocks of
consecutive rounds keeps the trace's time correlation (a moving-block bootstrap over rounds).

Every selection is made on one half of the rounds and judged on the other: the best fixed option in
hindsight and the lowest other method are chosen on the even rounds and measured on the odd ones, and
the other way round; the point estimate is the mean of the two ratios, and the bootstrap repeats the
selection in every resample. The in-sample numbers (chosen and judged on the same rounds, which
flatters the chosen plan: the lowest of several noisy means is low partly by chance) stay beside them.

An energy planner is judged the same way on each request's edge energy (judge_energy_point).

Over any set of rows: the latency model's error per option and per stage, from the model_*_ms columns
every method's requests carry (the model told the link's true rate and delay, so its error is apart
from the bandwidth estimate's), over every option, edge-only and server-only included.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np

# the measured columns each stage of the model stands for; the model counts no server queueing, so
# queueing shows up as error in the tail
MEASURED = {"head": ("edge_compute_ms",), "encode": ("encode_ms",), "transfer": ("uplink_ms", "downlink_ms"),
            "decode": ("decode_ms",), "tail": ("server_queue_ms", "server_compute_ms")}
RESAMPLES = 2000


def margin_ci95_pct(ours: list[float], theirs: list[float], rounds: int = 2000) -> tuple[float, float]:
    """Bootstrap 95% interval of 1 - mean(ours) / mean(theirs), in percent, for two unpaired samples
    (methods that did not take turns); paired runs use `paired_margin`."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    ratios = [rng.choice(a, len(a)).mean() / rng.choice(b, len(b)).mean() for _ in range(rounds)]
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(100 * (1 - high)), float(100 * (1 - low))


def option_of(row: dict) -> str:
    return f"{row['split']} {row['codec']} {row['codec_params'] if row['codec'] else ''}".strip()


class Rounds:
    """The run as a matrix: one row per round every method finished (answered or failed; a failed
    request counts with the time it took), one column per method, e2e in ms; or another column
    (`edge_energy_mj`: a round counts where every method has a value, so failed requests leave it)."""

    def __init__(self, rows: list[dict], column: str = "e2e_ms"):
        by_round: dict[int, dict[str, float]] = {}
        for r in rows:
            if r[column] not in ("", None):
                by_round.setdefault(int(r["request_id"]), {})[r["method"]] = float(r[column])
        self.methods = list(dict.fromkeys(r["method"] for r in rows))
        complete = sorted(i for i, got in by_round.items() if len(got) == len(self.methods))
        self.ids = np.array(complete, dtype=int)
        self.e2e = np.array([[by_round[i][m] for m in self.methods] for i in complete], dtype=float).reshape(
            len(complete), len(self.methods))

    def column(self, method: str) -> int:
        return self.methods.index(method)


def block_length(rounds: int) -> int:
    """Blocks of about n^(1/3) consecutive rounds (the usual rate for a moving-block bootstrap); a
    round of a dozen methods lasts a few seconds, so a block spans about the trace's own swings."""
    return max(1, round(rounds ** (1 / 3)))


def block_resamples(rounds: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Row indices of `resamples` moving-block resamples of `rounds` consecutive rounds."""
    rng = np.random.default_rng(seed)
    length = block_length(rounds)
    blocks = math.ceil(rounds / length)
    starts = rng.integers(0, rounds - length + 1, size=(resamples, blocks))
    return (starts[:, :, None] + np.arange(length)).reshape(resamples, -1)[:, :rounds]


def crossfit_ratio(e2e: np.ndarray, ids: np.ndarray, ours: int, candidates: list[int]) -> float:
    """mean(ours) / mean(chosen) with the chosen candidate (lowest mean) picked on the even rounds and
    judged on the odd ones, and the other way round; the mean of the two ratios."""
    ratios = []
    for choose_on, judge_on in ((0, 1), (1, 0)):
        chosen, judged = ids % 2 == choose_on, ids % 2 == judge_on
        if not chosen.any() or not judged.any():
            return math.nan
        best = candidates[int(np.argmin(e2e[chosen][:, candidates].mean(axis=0)))]
        ratios.append(e2e[judged, ours].mean() / e2e[judged, best].mean())
    return float(np.mean(ratios))


def insample_ratio(e2e: np.ndarray, ids: np.ndarray, ours: int, candidates: list[int]) -> float:
    means = e2e.mean(axis=0)
    return float(means[ours] / min(means[c] for c in candidates))


def paired_margin(table: Rounds, ours: str, candidates: list[str], statistic=crossfit_ratio) -> dict:
    """`ours` over the lowest of `candidates`, in % (positive: ours is slower), with a 95% interval
    from the moving-block bootstrap over whole rounds (the selection repeated in every resample)."""
    column, picks = table.column(ours), [table.column(c) for c in candidates]
    point = 100 * (statistic(table.e2e, table.ids, column, picks) - 1)
    if len(table.ids) < 4:
        return {"pct": point, "ci95_pct": (math.nan, math.nan)}
    draws = [statistic(table.e2e[rows], table.ids[rows], column, picks)
             for rows in block_resamples(len(table.ids))]
    low, high = np.nanpercentile(100 * (np.array(draws) - 1), [2.5, 97.5])
    return {"pct": point, "ci95_pct": (float(low), float(high))}


def hindsight_coverage(rows: list[dict], fixed: list[str], planners: list[str]) -> dict:
    """Per planner, the share of its requests on options no fixed plan of the run ran, and those
    options with their counts: the hindsight set cannot speak for them."""
    swept = {option_of(r) for r in rows if r["method"] in fixed}
    out = {}
    for method in planners:
        mine = [option_of(r) for r in rows if r["method"] == method]
        outside = {o: mine.count(o) for o in dict.fromkeys(mine) if o not in swept}
        out[method] = {"outside_share": sum(outside.values()) / len(mine) if mine else None, "outside": outside}
    return out


def judge_point(rows: list[dict], plan_types: dict[str, str], planner: str = "aglop", oracle: str = "oracle") -> dict:
    """One run's methods: rows of requests.csv; plan_types: method -> plan type (fixed, aglop, ...).
    The oracle is the planner told the trace's true rate and the link's delay: a reference, not a
    bound (its model can be wrong, and a planner can beat it)."""
    table = Rounds(rows)
    e2e = {m: [float(r["e2e_ms"]) for r in rows if r["method"] == m] for m in table.methods}
    means = {m: statistics.fmean(v) for m, v in e2e.items()}
    others = [m for m in table.methods if m not in (planner, oracle)]
    fixed = [m for m in table.methods if plan_types.get(m) == "fixed"]
    vs_lowest = paired_margin(table, planner, others)
    vs_fixed = paired_margin(table, planner, fixed)
    return {
        "rounds": len(table.ids), "block_rounds": block_length(len(table.ids)),
        "methods": {m: {"n": len(v), "mean_e2e_ms": means[m], "p50_e2e_ms": float(np.median(v)),
                        "failed": sum(r["status"] != "ok" for r in rows if r["method"] == m)} for m, v in e2e.items()},
        "lowest_other": min(others, key=means.get), "best_fixed": min(fixed, key=means.get),
        # cross-fitted, paired: positive = the planner is slower
        "over_lowest_other_pct": vs_lowest["pct"], "over_lowest_other_ci95_pct": vs_lowest["ci95_pct"],
        "lowest_or_within_ci": vs_lowest["pct"] <= 0 or vs_lowest["ci95_pct"][0] <= 0,
        "over_best_fixed_pct": vs_fixed["pct"], "over_best_fixed_ci95_pct": vs_fixed["ci95_pct"],
        "over_best_fixed_insample_pct": 100 * (insample_ratio(table.e2e, table.ids, table.column(planner),
                                                              [table.column(m) for m in fixed]) - 1),
        "oracle_over_planner_pct": 100 * (means[oracle] / means[planner] - 1) if oracle in means else None,
        "hindsight_coverage": hindsight_coverage(rows, fixed, [m for m in table.methods if m not in fixed]),
        "planner_options": options_run(rows, planner),
        # each fixed plan's option and its mean, to set beside what the planner ran
        "fixed_option_means": {option_of(next(r for r in rows if r["method"] == m)): means[m] for m in fixed},
    }


def options_run(rows: list[dict], method: str) -> dict[str, dict]:
    """What a method ran: per option, its requests and their mean e2e (answered and failed alike), most
    run first; beside the fixed plans' means it shows where a planner's time went."""
    by_option: dict[str, list[float]] = {}
    for r in rows:
        if r["method"] == method:
            by_option.setdefault(option_of(r), []).append(float(r["e2e_ms"]))
    return {o: {"n": len(v), "mean_e2e_ms": statistics.fmean(v)}
            for o, v in sorted(by_option.items(), key=lambda kv: -len(kv[1]))}


def most_run_option(rows: list[dict], method: str) -> tuple[str, float]:
    """The option a method ran most, and its share of the method's requests."""
    mine = [option_of(r) for r in rows if r["method"] == method]
    if not mine:
        return "", 0.0
    top = max(dict.fromkeys(mine), key=mine.count)
    return top, mine.count(top) / len(mine)


def judge_energy_point(rows: list[dict], plan_types: dict[str, str], planner: str, latency_planner: str) -> dict:
    """An energy planner's run: every method's mean energy and latency and the option it ran most; the
    planner's energy over the latency planner's and over the best fixed plan's (paired, cross-fitted
    as judge_point, over rounds where every method has an energy), and its energy model's error."""
    table = Rounds(rows, "edge_energy_mj")
    missing = [m for m in (planner, latency_planner) if m not in table.methods]
    if missing or len(table.ids) == 0:
        raise ValueError(f"no round in which every method has an energy (none for {', '.join(missing) or 'some'})")
    fixed = [m for m in table.methods if plan_types.get(m) == "fixed"]
    methods = {}
    for m in table.methods:
        ok = [r for r in rows if r["method"] == m and r["status"] == "ok" and r["edge_energy_mj"] not in ("", None)]
        option, share = most_run_option(rows, m)
        methods[m] = {"n": len(ok), "mean_energy_mj": statistics.fmean(float(r["edge_energy_mj"]) for r in ok),
                      "mean_radio_mj": statistics.fmean(float(r["radio_mj"]) for r in ok),
                      "mean_e2e_ms": statistics.fmean(float(r["e2e_ms"]) for r in ok),
                      "option": option, "option_share": share} if ok else {"n": 0}
    vs_latency, vs_fixed = paired_margin(table, planner, [latency_planner]), paired_margin(table, planner, fixed)
    predicted = [(float(r["predicted_mj"]), float(r["edge_energy_mj"])) for r in rows
                 if r["method"] == planner and r["status"] == "ok" and r.get("predicted_mj") not in ("", None)
                 and r["edge_energy_mj"] not in ("", None)]
    return {
        "rounds": len(table.ids), "methods": methods,
        "best_fixed": min(fixed, key=lambda m: methods[m].get("mean_energy_mj", math.inf)),
        # positive: the energy planner spends more
        "over_latency_planner_pct": vs_latency["pct"], "over_latency_planner_ci95_pct": vs_latency["ci95_pct"],
        "over_best_fixed_pct": vs_fixed["pct"], "over_best_fixed_ci95_pct": vs_fixed["ci95_pct"],
        "choices_differ": methods[planner].get("option") != methods[latency_planner].get("option"),
        "energy_model_error_pct": float(np.median([abs(p - m) / m * 100 for p, m in predicted])) if predicted else None,
    }


def with_model(rows: list[dict]) -> list[dict]:
    """Answered requests that carry the model's prediction, every option (edge-only and server-only too)."""
    return [r for r in rows if r["status"] == "ok" and r["model_ms"] not in ("", None)]


def model_errors(rows: list[dict]) -> dict:
    """The latency model against what was measured, over every option's answered requests that carry
    the model's prediction (edge-only and server-only included): overall and per option, the median of |model - measured| / measured (e2e), the
    error of the mean, and per stage the median signed error (model - measured, ms: a wrong term) and
    the median absolute one (ms: where the request-to-request noise is)."""
    judged = with_model(rows)

    def stats(group: list[dict]) -> dict:
        model, measured = (np.array([float(r[c]) for r in group]) for c in ("model_ms", "e2e_ms"))
        stage_error = {stage: np.array([float(r[f"model_{stage}_ms"]) - sum(float(r[c]) for c in columns)
                                        for r in group]) for stage, columns in MEASURED.items()}
        sent = [r for r in group if r["split"] != "edge-only"]
        network = np.array([float(r["uplink_ms"]) + float(r["downlink_ms"]) for r in sent])
        transfer = np.array([float(r["model_transfer_ms"]) for r in sent])
        return {"n": len(group), "median_abs_error_pct": float(np.median(abs(model - measured) / measured) * 100),
                # the transfer term alone, against uplink + downlink: the path model's own error
                "median_transfer_abs_error_pct": float(np.median(abs(transfer - network) / network) * 100)
                if sent else None,
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
    judged = with_model(rows)

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


def profiled_drops(profile: dict, criterion: str) -> dict[tuple[str, str, str], float]:
    """(split, codec, params as the CSV writes them) -> the profile's loss under `criterion`, points."""
    return {(o["split"], o["codec"], json.dumps(o["params"], sort_keys=True)): o["drops"][criterion]
            for o in profile["options"]}


def chosen_drops(rows: list[dict], method: str, profile: dict, criterion: str) -> list[float]:
    """The profile's loss (under `criterion`) of every option the method ran, request by request."""
    drops = profiled_drops(profile, criterion)
    return [drops.get((r["split"], r["codec"], r["codec_params"]), float("nan"))
            for r in rows if r["method"] == method and r["status"] == "ok"]


def fixed_over_budget(plans: dict[str, dict], profile: dict, criterion: str, budget_pts: float) -> list[str]:
    """The fixed plans whose profiled loss is at or over the planner's budget (an option missing from the
    profile counts as over): in a hindsight set, such a plan is one the planner was not allowed to run."""
    drops = profiled_drops(profile, criterion)
    return [name for name, p in plans.items() if p.get("type", "fixed") == "fixed"
            and drops.get((p["split"], p.get("codec", ""), json.dumps(p.get("params", {}), sort_keys=True)),
                          math.inf) >= budget_pts]


def over_budget_names(points: list[dict]) -> str:
    """The fixed plans any judged point found over the planner's budget, for a summary ('none' if none)."""
    return ", ".join(sorted({m for p in points for m in p["fixed_over_budget"]})) or "none"
