#!/usr/bin/env python3
"""AGLOP judged over a study grid: against every method, the best fixed option in hindsight, and its
latency model on every option.

    sudo .venv/bin/python benchmarks/aglop_grid.py [--study studies/aglop-grid.yaml] [--out DIR] [--json PATH]
    sudo .venv/bin/python benchmarks/aglop_grid.py --study studies/aglop-report.yaml   # the report grid
    python benchmarks/aglop_grid.py --from DIR --json PATH        # judge a study folder already run

Runs the study (run_scenario.py --study: each grid point is one scenario run in which every method
takes turns request by request on one replay of the trace), then judges each point with
splitbed.analysis.judgement: AGLOP over the lowest other non-oracle method and over the best fixed
option in hindsight (the run's fixed plans, a sweep declared in the scenario), each chosen on one half
of the rounds and judged on the other, with a paired moving-block bootstrap interval over whole
rounds; the options AGLOP ran that no fixed plan ran; the oracle (the planner told the true rate and
delay) beside it. Over all points: the latency model's error per option and per stage over every
option's requests (edge-only and server-only included), beside the floor that request-to-request host
jitter sets on it; AGLOP's own prediction error (its rate estimate included), its rate estimate over
the trace's rate, and its decision times. Points over the 5% bar are counted by the point estimate;
the interval stands beside each. That AGLOP never runs an option over its accuracy budget is a test
(tests/test_aglop.py), not a finding.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from splitbed import __version__
from splitbed.aglop.profile import DEFAULT_BUDGET_PTS, DEFAULT_CRITERION
from splitbed.analysis.judgement import (
    chosen_drops,
    estimate_ratio,
    fixed_over_budget,
    jitter_floor_errors,
    judge_point,
    model_errors,
    over_budget_names,
    planner_errors,
    same_option_spread_pct,
)
from splitbed.app.breakdown import read_rows
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.scenarios.study import code_version, load_study
from splitbed.testing.results_page import Page, pct, table

REPO = Path(__file__).resolve().parent.parent

BARS = {"lowest_or_within_ci_share": 0.90, "over_best_fixed_pct": 5.0, "points_over_best_fixed": 1,
        "model_error_pct": 8.0, "decision_ms": 1.0}


def run_study(study: Path, out: Path) -> None:
    try:
        done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), "--study", str(study), "--out", str(out)])
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the study stops its run and keeps what finished
        raise UserError(f"interrupted; {out} keeps the finished runs",
                        fix=f"rerun with --out {out} to go on, or judge them with --from {out}") from err
    if done.returncode != 0:
        raise UserError(f"the study {study} failed (exit {done.returncode}); its folder {out} keeps what finished",
                        fix=f"rerun the same command: runs complete in {out} are skipped")


def check_runs_made_at(study: Path, folder: Path, commit: str) -> str:
    """The code version of a folder's runs: each run's id hashes its scenario and the commit it ran at,
    so the study's ids made for `commit` must be exactly the folder's (a run from any other tree differs)."""
    full = subprocess.run(["git", "rev-parse", "--short=12", commit], cwd=REPO, capture_output=True, text=True)
    if full.returncode != 0:
        raise UserError(f"--commit {commit}: not a commit of this repository", fix="give a commit hash from git log")
    version = f"{__version__}+{full.stdout.strip()}"
    expected = {run.run_id for run in load_study(study, version=version).runs}
    found = set(json.loads((folder / "runs.json").read_text()))
    if expected != found:
        raise UserError(f"{folder}'s runs were not made by {study} at {commit} "
                        f"({len(found - expected)} of {len(found)} runs differ)",
                        fix="name the commit the study ran at (its log's first run was made by it)")
    return version


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
        criterion = aglop.get("criterion", DEFAULT_CRITERION)
        drops += chosen_drops(rows, "aglop", profile, criterion)
        point["fixed_over_budget"] = fixed_over_budget(plans, profile, criterion, aglop.get("budget_pts", DEFAULT_BUDGET_PTS))
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
    budget = max(p.get("budget_pts", DEFAULT_BUDGET_PTS) for p in json.loads((folder / "runs" / judged[0]["run_id"] /
                                                               "manifest.json").read_text())["plans"]
                 if p.get("type") == "aglop")
    # a point whose halves could not be judged (too few rounds) counts as over the bar, not as a pass
    over = [math.inf if math.isnan(p["over_best_fixed_pct"]) else p["over_best_fixed_pct"] for p in judged]
    summary = {
        "points": len(points), "judged_points": len(judged),
        "points_too_short_to_judge": sum(math.isinf(v) for v in over),
        "lowest_or_within_ci_share": statistics.fmean(p["lowest_or_within_ci"] for p in judged),
        # cross-fitted and paired; the in-sample figure (chosen on the rounds it is judged on) beside it
        "max_over_best_fixed_pct": max(over), "median_over_best_fixed_pct": statistics.median(over),
        "median_over_best_fixed_insample_pct": statistics.median(p["over_best_fixed_insample_pct"] for p in judged),
        "points_over_5pct_of_best_fixed": sum(v > BARS["over_best_fixed_pct"] for v in over),
        "points_interval_above_5pct": sum(p["over_best_fixed_ci95_pct"][0] > BARS["over_best_fixed_pct"] for p in judged),
        "model_error_pct": errors["overall"]["median_abs_error_pct"] if errors["overall"] else None,
        "model_error_jitter_floor_pct": statistics.median(floor_errors) if floor_errors else None,
        "aglop_own_prediction_error_pct": median_of(own_errors),
        "aglop_max_profiled_drop_pts": max(drops) if drops else None, "budget_pts": budget, "criterion": criterion,
        # a fixed plan over AGLOP's budget would let the hindsight set win on accuracy AGLOP may not spend
        "fixed_over_budget": over_budget_names(judged),
        # the share of AGLOP's requests on options no fixed plan of its run ran (the hindsight set's blind spot)
        "aglop_outside_sweep_share_max": max(p["hindsight_coverage"]["aglop"]["outside_share"] or 0 for p in judged),
        # the host's noise: how far apart two methods' means of one option lie, per point
        "same_option_spread_median_pct": median_of([p["same_option_spread_pct"] for p in judged]),
        "same_option_spread_max_pct": max((s for p in judged if (s := p["same_option_spread_pct"]) is not None),
                                          default=None),
        "decision_ms_median": statistics.median(decisions) if decisions else None,
    }
    summary["bars"] = {
        "lowest_or_within_ci": summary["lowest_or_within_ci_share"] >= BARS["lowest_or_within_ci_share"],
        "over_best_fixed_5pct_at_most_1_point": summary["points_over_5pct_of_best_fixed"] <= BARS["points_over_best_fixed"],
        "model_error_8pct": summary["model_error_pct"] is not None and summary["model_error_pct"] <= BARS["model_error_pct"],
        "decision_under_1ms": summary["decision_ms_median"] is not None and summary["decision_ms_median"] < BARS["decision_ms"],
    }
    return {"summary": summary, "points": points, "model_errors": errors}


def median_of(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def print_report(result: dict) -> None:
    """Per point: AGLOP's mean; its margin over the lowest other method and over the best fixed plan
    (cross-fitted, %, positive = AGLOP slower) with the paired 95% interval; the oracle's mean over
    AGLOP's; AGLOP's share of requests outside the fixed sweep."""
    print(f"{'trace':<34}{'device':<12}{'delay':>6}{'rounds':>7}{'aglop ms':>9}{'lowest other':>18}"
          f"{'over it % (95% CI)':>24}{'best fixed':>18}{'over it % (95% CI)':>24}{'in-sample':>10}"
          f"{'oracle':>8}{'outside':>8}{'est/rate':>9}")
    for p in result["points"]:
        if "methods" not in p:
            print(f"{p['trace']:<34}{p['device']:<12}{p['delay_ms']:>6}  {p['status']}")
            continue
        low, high = p["over_lowest_other_ci95_pct"]
        f_low, f_high = p["over_best_fixed_ci95_pct"]
        oracle = p["oracle_over_planner_pct"]
        estimate = p["aglop_estimate_over_trace"]
        print(f"{p['trace']:<34}{p['device']:<12}{p['delay_ms']:>6}{p['rounds']:>7}"
              f"{p['methods']['aglop']['mean_e2e_ms']:>9.1f}{p['lowest_other']:>18}"
              f"{p['over_lowest_other_pct']:>+8.1f} ({low:+6.1f},{high:+6.1f})"
              f"{p['best_fixed']:>18}{p['over_best_fixed_pct']:>+8.1f} ({f_low:+6.1f},{f_high:+6.1f})"
              f"{p['over_best_fixed_insample_pct']:>+9.1f}%{'-' if oracle is None else f'{oracle:+.1f}%':>8}"
              f"{100 * (p['hindsight_coverage']['aglop']['outside_share'] or 0):>7.0f}%"
              f"{'-' if estimate is None else round(estimate, 2):>9}")
    print(f"\n{'option':<44}{'n':>6}{'|err| p50':>10}{'mean err':>9}{'e2e p50':>9}  median error per stage, ms "
          "(median |error| per stage): head, encode, transfer, decode, tail")
    for option, e in sorted(result["model_errors"]["per_option"].items(), key=lambda kv: -kv[1]["n"]):
        print(f"{option:<44}{e['n']:>6}{e['median_abs_error_pct']:>9.1f}%{e['mean_error_pct']:>8.1f}%"
              f"{e['median_e2e_ms']:>9.1f}  " + "  ".join(f"{v:+.1f} ({a:.1f})" for v, a in zip(
                  e["median_stage_error_ms"].values(), e["median_stage_abs_error_ms"].values(), strict=True)))
    print(json.dumps(result["summary"], indent=1))


def study_command(description: str, study: str, judge, report) -> int:
    """The command of a benchmark over a study: run studies/STUDY (or, with --from, judge a folder
    already run, checking with --commit that its runs were made at that commit), judge it with
    `judge(folder) -> {"summary": ...}`, print it with `report`, and write it to --json."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(REPO / "studies" / study))
    parser.add_argument("--out", help="the study's folder (default: results/studies/STUDY-TIME)")
    parser.add_argument("--from", dest="source", help="judge this study folder; run nothing")
    parser.add_argument("--commit", help="with --from: the commit the folder's runs were made at (checked "
                        "against their ids and recorded)")
    parser.add_argument("--json", help="write the judgement here")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    started = time.time()
    if args.source:
        folder = Path(args.source)
        if not (folder / "runs.json").is_file():
            raise UserError(f"{folder} holds no runs.json", fix="give the folder a study wrote (its --out)")
        made_at = check_runs_made_at(Path(args.study), folder, args.commit) if args.commit else None
    else:
        stamp = f"{Path(args.study).stem}-{time.strftime('%Y%m%dT%H%M%S')}"
        folder = Path(args.out) if args.out else REPO / "results" / "studies" / stamp
        run_study(Path(args.study), folder)
        made_at = code_version()
    result = judge(folder)
    result["summary"].update(study=Path(args.study).name, folder=str(folder), runs_made_at=made_at,
                             seconds=time.time() - started)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


def main() -> int:
    return study_command(__doc__, "aglop-grid.yaml", judge_study, print_report)


GRID_SUMMARY = [  # (label, summary key, format) of the tune and report grids' side-by-side table
    ("points judged", "judged_points", "{:d}"),
    ("AGLOP lowest or within the interval of the lowest other method", "lowest_or_within_ci_share", "{:.0%}"),
    ("points AGLOP is over the best fixed option by more than 5% (point estimate)",
     "points_over_5pct_of_best_fixed", "{:d}"),
    ("... of them with the interval's low end over 5%", "points_interval_above_5pct", "{:d}"),
    ("AGLOP over the best fixed option, median (max)", ("median_over_best_fixed_pct", "max_over_best_fixed_pct"),
     "{:+.1f}% ({:+.1f}%)"),
    ("the same, chosen and judged on the same rounds (median)", "median_over_best_fixed_insample_pct", "{:+.1f}%"),
    ("latency model error, median over every option's requests", "model_error_pct", "{:.1f}%"),
    ("... its floor from the host's request-to-request jitter", "model_error_jitter_floor_pct", "{:.1f}%"),
    ("AGLOP's own prediction error (its rate estimate included)", "aglop_own_prediction_error_pct", "{:.1f}%"),
    ("largest share of AGLOP's requests outside the fixed sweep", "aglop_outside_sweep_share_max", "{:.0%}"),
    ("the same option run by two methods, means apart (median)", "same_option_spread_median_pct", "{:.1f}%"),
    ("decision time, median ms", "decision_ms_median", "{:.3f}"),
    ("AGLOP's accuracy budget, points of", ("budget_pts", "criterion"), "{:g} {}"),
    ("fixed plans over that budget", "fixed_over_budget", "{}"),
]


def grid_summary_cell(summary: dict, key, form: str) -> str:
    values = [summary.get(k) for k in (key if isinstance(key, tuple) else (key,))]
    return "-" if any(v is None for v in values) else form.format(*values)


def aglop_grids_side_by_side(found: dict) -> list[str]:
    """The tune grid (where AGLOP was developed) and the report grid (never used to tune it) in one table,
    above the report grid's section; a grid not measured at this commit shows as such."""
    grids = [("tune grid", found.get("aglop_grid")), ("report grid", found.get("aglop_report"))]
    rows = [[label] + ["not measured" if g is None else grid_summary_cell(g[0]["summary"], key, form)
                       for _, g in grids] for label, key, form in GRID_SUMMARY]
    return ["Both grids judged alike; the report grid's traces, delays and points were never used to tune the "
            "planner; each grid judges the planner at the commit in its provenance line.", "",
            *table(["", *(label for label, _ in grids)], rows), ""]


def aglop_grid_section(data: dict, found: dict) -> list[str]:
    s = data["summary"]
    rows = []
    for p in data["points"]:
        if "methods" not in p:
            rows.append([p["trace"], p["device"], f"{p['delay_ms']:g}", p["status"], "", "", "", "", "", "", "", ""])
            continue
        m, coverage = p["methods"], p["hindsight_coverage"]["aglop"]["outside_share"] or 0
        rows.append([p["trace"], p["device"], f"{p['delay_ms']:g}", str(p["rounds"]), f"{m['aglop']['mean_e2e_ms']:.1f}",
                     f"{p['lowest_other']} {m[p['lowest_other']]['mean_e2e_ms']:.1f}",
                     "{:+.1f}% ({:+.1f}, {:+.1f})".format(p["over_lowest_other_pct"], *p["over_lowest_other_ci95_pct"]),
                     f"{p['best_fixed']} {m[p['best_fixed']]['mean_e2e_ms']:.1f}",
                     "{:+.1f}% ({:+.1f}, {:+.1f})".format(p["over_best_fixed_pct"], *p["over_best_fixed_ci95_pct"]),
                     f"{p['over_best_fixed_insample_pct']:+.1f}%",
                     "-" if p["oracle_over_planner_pct"] is None else f"{p['oracle_over_planner_pct']:+.1f}%",
                     f"{100 * coverage:.0f}%",
                     "-" if p.get("aglop_estimate_over_trace") is None else f"{p['aglop_estimate_over_trace']:.2f}"])
    misses = [miss_line(p) for p in data["points"] if "methods" in p and p["over_best_fixed_pct"] > BARS["over_best_fixed_pct"]]
    options = [[option, str(e["n"]), pct(e["median_abs_error_pct"], 1), f"{e['mean_error_pct']:+.1f}%",
                f"{e['median_e2e_ms']:.1f}", *(f"{v:+.1f} ({a:.1f})" for v, a in zip(
                    e["median_stage_error_ms"].values(), e["median_stage_abs_error_ms"].values(), strict=True))]
               for option, e in sorted(data["model_errors"]["per_option"].items(), key=lambda kv: -kv[1]["n"])]
    return [f"{s['judged_points']} of {s['points']} points complete (`studies/{s.get('study', 'aglop-grid.yaml')}`; every "
            "method takes turns on one replay per point, a round = one request of each). Over = AGLOP's mean over the "
            "other's, minus 1 (positive = AGLOP slower), with the other chosen on half the rounds and judged on the "
            "other half (both ways, averaged); 95% interval from a moving-block bootstrap over whole rounds (paired, "
            "the selection redone in each resample). Best fixed = the run's fixed plans (the sweep its scenario "
            "declares); in-sample = chosen and judged on all rounds. Oracle = the oracle's mean over AGLOP's (the "
            "planner told the trace's true rate and the link's delay: a reference, not a bound). Outside = AGLOP's "
            "requests on options no fixed plan ran. Estimate / rate = AGLOP's bandwidth estimate over the trace's "
            "rate at send time (median).",
            "", *table(["trace", "device", "one-way ms", "rounds", "AGLOP mean", "lowest other", "over it (95% CI)",
                        "best fixed", "over it (95% CI)", "in-sample", "oracle", "outside", "estimate / rate"], rows),
            *(["Where AGLOP's time went at the points over 5% of the best fixed option (its requests per option, "
               "their mean e2e ms; the fixed plans' means beside):", "", *misses, ""] if misses else []),
            "Latency model against every option's requests (edge-only and server-only included; the model told the "
            "trace's rate and the link's delays): per option the median |error| per request, the error of the "
            "option's mean, and per stage the median signed error, model - measured, ms, with the median |error| in "
            "brackets:", "",
            *table(["option", "requests", "median abs error", "error of the mean", "median e2e ms", "head", "encode",
                    "transfer", "decode", "tail"], options)]


def miss_line(point: dict) -> str:
    ran = point.get("planner_options")
    if ran is None:
        return f"- {point['trace']}, {point['device']}, {point['delay_ms']:g} ms: rejudge the folder to list AGLOP's options"
    fixed = point.get("fixed_option_means", {})
    shown = "; ".join(f"{option} {e['n']} x {e['mean_e2e_ms']:.1f}" + (
        f" (its fixed plan {fixed[option]:.1f})" if option in fixed else "") for option, e in list(ran.items())[:3])
    return (f"- {point['trace']}, {point['device']}, {point['delay_ms']:g} ms one way: AGLOP {shown}; best fixed "
            f"{point['best_fixed']} {point['methods'][point['best_fixed']]['mean_e2e_ms']:.1f}")


def aglop_report_headline(data: dict, found: dict) -> list[list[str]]:
    s = data["summary"]
    return [["AGLOP on a report grid it was never tuned on", f"lowest or within the interval of the lowest "
             f"other method at {100 * s['lowest_or_within_ci_share']:.0f}% of {s['judged_points']} (trace, "
             f"device, delay) points; over the best fixed option in hindsight by more than 5% at "
             f"{s['points_over_5pct_of_best_fixed']} (median {s['median_over_best_fixed_pct']:+.1f}%; paired, "
             f"cross-fitted); latency model error {pct(s['model_error_pct'], 1)} (median, every option)"]]


PAGES = [Page("aglop_grid", "AGLOP over its tune grid", order=90, argv=["-m", "benchmarks.aglop_grid"],
              section=aglop_grid_section, judges_study=True),
         Page("aglop_report", "AGLOP over its report grid", order=100,
              argv=["-m", "benchmarks.aglop_grid", "--study", "studies/aglop-report.yaml"],
              section=aglop_grid_section, headline=aglop_report_headline, headline_order=60, judges_study=True,
              before=aglop_grids_side_by_side)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
