#!/usr/bin/env python3
"""AGLOP judged over a study grid: against every method, the best fixed option in hindsight, and its
latency model on every option.

    sudo .venv/bin/python benchmarks/aglop_grid.py [--study studies/aglop-grid.yaml] [--out DIR] [--json PATH]
    python benchmarks/aglop_grid.py --from DIR --json PATH        # judge a study folder already run

Runs the study (run_scenario.py --study: each grid point is one scenario run in which every method
takes turns request by request on one replay of the trace), then per point: AGLOP's mean e2e against
the lowest other non-oracle method (bootstrap 95% interval of the margin), against the best fixed
option in hindsight (the fixed plan with the lowest measured mean on that replay), and against the
oracle; the best fixed plan also cross-fitted (chosen on the even rounds, judged on the odd ones, and
the other way round), since the lowest of seven noisy means flatters the fixed plans; points over the
5% bar are counted twice, by the mean and by the bootstrap interval's low end. Over all points: the
latency model's error per option and per stage, over every method's offloaded requests (the model
told the trace's rate and the link's delay), beside the floor that request-to-request host jitter
sets on it (judgement.jitter_floor_errors), AGLOP's own prediction error (its rate estimate
included) and, per point, its rate estimate over the trace's rate, the profiled loss of every option
AGLOP ran, and its decision times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbed.aglop.profile import DEFAULT_CRITERION  # noqa: E402
from splitbed.analysis.judgement import (  # noqa: E402
    chosen_drops,
    estimate_ratio,
    jitter_floor_errors,
    judge_point,
    model_errors,
    planner_errors,
    same_option_spread_pct,
)
from splitbed.app.breakdown import read_rows  # noqa: E402
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors  # noqa: E402

BARS = {"lowest_or_within_ci_share": 0.90, "over_best_fixed_pct": 5.0, "model_error_pct": 8.0, "decision_ms": 1.0}


def run_study(study: Path, out: Path) -> None:
    try:
        done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), "--study", str(study), "--out", str(out)])
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the study stops its run and keeps what finished
        raise UserError(f"interrupted; {out} keeps the finished runs",
                        fix=f"rerun with --out {out} to go on, or judge them with --from {out}") from err
    if done.returncode != 0:
        raise UserError(f"the study {study} failed (exit {done.returncode}); its folder {out} keeps what finished",
                        fix=f"rerun the same command: runs complete in {out} are skipped")


def point_label(values: dict) -> dict:
    """The swept values, shortened: trace file name (x scale), device, one-way delay."""
    trace = Path(str(values.get("links.uplink.trace", "?"))).name
    scale = values.get("links.uplink.trace_scale", 1)
    return {"trace": trace + (f" x{scale:g}" if scale != 1 else ""), "device": values.get("nodes.edge.device"),
            "delay_ms": values.get("links.uplink.delay_ms")}


def judge_study(folder: Path) -> dict:
    runs = json.loads((folder / "runs.json").read_text())
    points, all_rows, drops, decisions, own_errors, floor_errors = [], [], [], [], [], []
    for run_id, run in runs.items():
        run_dir = folder / "runs" / run_id
        if run["status"] != "complete" or not (run_dir / "requests.csv").exists():
            points.append({**point_label(run["values"]), "run_id": run_id, "status": run["status"]})
            continue
        manifest = json.loads((run_dir / "manifest.json").read_text())
        rows = read_rows(run_dir / "requests.csv")
        plans = {p["name"]: p for p in manifest["plans"]}
        types = {name: p.get("type", "fixed") for name, p in plans.items()}
        point = {**point_label(run["values"]), "run_id": run_id, "status": run["status"],
                 **judge_point(rows, types)}
        point["fixed_options"] = {m: f"{p['split']} {p.get('codec', '')} {json.dumps(p.get('params', {}))}".strip()
                                  for m, p in plans.items() if types[m] == "fixed"}
        profile = json.loads((run_dir / "aglop-profile.json").read_text())
        aglop = plans["aglop"]
        drops += chosen_drops(rows, "aglop", profile, aglop.get("criterion", DEFAULT_CRITERION))
        decisions += [p["decision_ms_median"] for p in manifest.get("edge_plans", [])
                      if p["plan"] == "aglop" and p.get("decision_ms_median") is not None]
        point["aglop_prediction_error_pct"] = planner_errors(rows, "aglop")
        own_errors.append(point["aglop_prediction_error_pct"])
        point["aglop_estimate_over_trace"] = estimate_ratio(rows, "aglop")
        point["same_option_spread_pct"] = same_option_spread_pct(rows)
        points.append(point)
        all_rows += rows
        floor_errors += jitter_floor_errors(rows)
    judged = [p for p in points if "methods" in p]
    if not judged:
        raise UserError(f"no complete run in {folder}", fix="run the study first (without --from)")
    errors = model_errors(all_rows)
    budget = max(p.get("budget_pts", 1.0) for p in json.loads((folder / "runs" / judged[0]["run_id"] /
                                                               "manifest.json").read_text())["plans"]
                 if p.get("type") == "aglop")
    summary = {
        "points": len(points), "judged_points": len(judged),
        "lowest_or_within_ci_share": statistics.fmean(p["lowest_or_within_ci"] for p in judged),
        "max_over_best_fixed_pct": max(p["over_best_fixed_pct"] for p in judged),
        "median_over_best_fixed_pct": statistics.median(p["over_best_fixed_pct"] for p in judged),
        "max_over_best_fixed_crossfit_pct": max(p["over_best_fixed_crossfit_pct"] for p in judged),
        "median_over_best_fixed_crossfit_pct": statistics.median(p["over_best_fixed_crossfit_pct"] for p in judged),
        # points over the bar, and those over it beyond the noise (the interval's low end above it)
        "points_over_5pct_of_best_fixed": sum(p["over_best_fixed_pct"] > BARS["over_best_fixed_pct"] for p in judged),
        "points_surely_over_5pct_of_best_fixed": sum(p["over_best_fixed_ci95_pct"][0] > BARS["over_best_fixed_pct"]
                                                     for p in judged),
        "model_error_pct": errors["overall"]["median_abs_error_pct"] if errors["overall"] else None,
        "model_error_jitter_floor_pct": statistics.median(floor_errors) if floor_errors else None,
        "aglop_own_prediction_error_pct": statistics.median(e for e in own_errors if e is not None),
        "aglop_max_profiled_drop_pts": max(drops) if drops else None, "budget_pts": budget,
        # the host's noise: how far apart two methods' means of one option lie, per point
        "same_option_spread_median_pct": median_of([p["same_option_spread_pct"] for p in judged]),
        "same_option_spread_max_pct": max((s for p in judged if (s := p["same_option_spread_pct"]) is not None),
                                          default=None),
        "decision_ms_median": statistics.median(decisions) if decisions else None,
    }
    summary["bars"] = {
        "lowest_or_within_ci": summary["lowest_or_within_ci_share"] >= BARS["lowest_or_within_ci_share"],
        "within_5pct_of_best_fixed": summary["max_over_best_fixed_pct"] <= BARS["over_best_fixed_pct"],
        "model_error_8pct": summary["model_error_pct"] is not None and summary["model_error_pct"] <= BARS["model_error_pct"],
        "within_budget": summary["aglop_max_profiled_drop_pts"] is not None and summary["aglop_max_profiled_drop_pts"] < budget,
        "decision_under_1ms": summary["decision_ms_median"] is not None and summary["decision_ms_median"] < BARS["decision_ms"],
    }
    return {"summary": summary, "points": points, "model_errors": errors}


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def print_report(result: dict) -> None:
    print(f"{'trace':<34}{'device':<12}{'delay':>6}{'aglop':>9}{'lowest other':>24}{'margin (95% CI)':>26}"
          f"{'best fixed':>24}{'over (95% CI)':>24}{'x-fit':>8}{'oracle gap':>11}{'est/rate':>9}{'same opt':>9}")
    for p in result["points"]:
        if "methods" not in p:
            print(f"{p['trace']:<34}{p['device']:<12}{p['delay_ms']:>6}  {p['status']}")
            continue
        m = p["methods"]
        low, high = p["margin_vs_lowest_other_ci95_pct"]
        over_low, over_high = p["over_best_fixed_ci95_pct"]
        print(f"{p['trace']:<34}{p['device']:<12}{p['delay_ms']:>6}{m['aglop']['mean_e2e_ms']:>9.1f}"
              f"{p['lowest_other']:>16}{m[p['lowest_other']]['mean_e2e_ms']:>8.1f}"
              f"{p['margin_vs_lowest_other_pct']:>9.1f}% ({low:6.1f},{high:6.1f})"
              f"{p['best_fixed']:>16}{m[p['best_fixed']]['mean_e2e_ms']:>8.1f}{p['over_best_fixed_pct']:>7.1f}%"
              f" ({over_low:5.1f},{over_high:5.1f})"
              f"{p['over_best_fixed_crossfit_pct']:>7.1f}%"
              f"{p['gap_to_oracle_pct'] if p['gap_to_oracle_pct'] is None else round(p['gap_to_oracle_pct'], 1):>10}%"
              f"{'-' if p['aglop_estimate_over_trace'] is None else round(p['aglop_estimate_over_trace'], 2):>9}"
              f"{'-' if p.get('same_option_spread_pct') is None else round(p['same_option_spread_pct'], 1):>8}%")
    print(f"\n{'option':<44}{'n':>6}{'|err| p50':>10}{'mean err':>9}{'e2e p50':>9}  median error per stage, ms "
          "(median |error| per stage): head, encode, transfer, decode, tail")
    for option, e in sorted(result["model_errors"]["per_option"].items(), key=lambda kv: -kv[1]["n"]):
        print(f"{option:<44}{e['n']:>6}{e['median_abs_error_pct']:>9.1f}%{e['mean_error_pct']:>8.1f}%"
              f"{e['median_e2e_ms']:>9.1f}  " + "  ".join(f"{v:+.1f} ({a:.1f})" for v, a in zip(
                  e["median_stage_error_ms"].values(), e["median_stage_abs_error_ms"].values(), strict=True)))
    print(json.dumps(result["summary"], indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(REPO / "studies" / "aglop-grid.yaml"))
    parser.add_argument("--out", help="the study's folder (default: results/studies/aglop-grid-TIME)")
    parser.add_argument("--from", dest="source", help="judge this study folder; run nothing")
    parser.add_argument("--json", help="write the judgement here")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    started = time.time()
    if args.source:
        folder = Path(args.source)
        if not (folder / "runs.json").is_file():
            raise UserError(f"{folder} holds no runs.json", fix="give the folder a study wrote (its --out)")
    else:
        folder = Path(args.out) if args.out else REPO / "results" / "studies" / f"aglop-grid-{time.strftime('%Y%m%dT%H%M%S')}"
        run_study(Path(args.study), folder)
    result = judge_study(folder)
    result["summary"].update(study=str(folder), seconds=time.time() - started)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
