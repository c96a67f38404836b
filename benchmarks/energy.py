#!/usr/bin/env python3
"""AGLOP planning on the edge's energy, judged over a study grid (trace x device x radio).

    sudo .venv/bin/python -m benchmarks.energy [--study studies/energy.yaml] [--out DIR] [--json PATH]
    python -m benchmarks.energy --from DIR [--commit C] --json PATH   # judge a study folder already run

Runs the study (every method takes turns request by request on one replay of the trace per point),
then per point: each method's mean energy per request (board + radio, docs/energy.md) and latency and
the option it ran most; AGLOP-energy's energy over AGLOP-latency's and over the best fixed plan's
(paired over rounds, cross-fitted, with a moving-block bootstrap interval: splitbed.analysis.judgement);
whether the two AGLOPs' choices differ; and the energy model's error on AGLOP-energy's requests.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from benchmarks.aglop_grid import median_of, point_label, study_command
from splitbed.aglop.profile import DEFAULT_BUDGET_PTS, DEFAULT_CRITERION
from splitbed.analysis.judgement import fixed_over_budget, judge_energy_point, over_budget_names
from splitbed.app.breakdown import read_rows
from splitbed.errors import UserError, run_reporting_user_errors
from splitbed.testing.results_page import Page, pct, table

REPO = Path(__file__).resolve().parent.parent
PLANNER, LATENCY_PLANNER = "aglop-energy", "aglop"


def judge_study(folder: Path) -> dict:
    runs = json.loads((folder / "runs.json").read_text())
    points = []
    for run_id, run in runs.items():
        label = {**point_label(run["values"]), "radio": run["values"].get("links.uplink.radio"), "run_id": run_id,
                 "status": run["status"]}
        run_dir = folder / "runs" / run_id
        if run["status"] != "complete" or not (run_dir / "requests.csv").exists():
            points.append(label)
            continue
        manifest = json.loads((run_dir / "manifest.json").read_text())
        types = {p["name"]: p.get("type", "fixed") for p in manifest["plans"]}
        plans = {p["name"]: p for p in manifest["plans"]}
        planner = plans[PLANNER]
        over = fixed_over_budget(plans, json.loads((run_dir / "aglop-profile.json").read_text()),
                                 planner.get("criterion", DEFAULT_CRITERION), planner.get("budget_pts", DEFAULT_BUDGET_PTS))
        try:
            points.append({**label, **judge_energy_point(read_rows(run_dir / "requests.csv"), types, PLANNER,
                                                         LATENCY_PLANNER), "fixed_over_budget": over})
        except ValueError as err:  # a run whose energy cannot be judged is reported, not skipped
            points.append({**label, "status": f"not judged: {err}"})
    judged = [p for p in points if "methods" in p]
    if not judged:
        raise UserError(f"no complete run in {folder}", fix="run the study first (without --from)")
    summary = {
        "points": len(points), "judged_points": len(judged),
        "points_choices_differ": sum(p["choices_differ"] for p in judged),
        "median_over_latency_planner_pct": statistics.median(p["over_latency_planner_pct"] for p in judged),
        "median_over_best_fixed_pct": statistics.median(p["over_best_fixed_pct"] for p in judged),
        "points_lowest_energy": sum(p["over_best_fixed_pct"] <= 0 and p["over_latency_planner_pct"] <= 0 for p in judged),
        "energy_model_error_pct": median_of([p["energy_model_error_pct"] for p in judged]),
        # a fixed plan over the planners' accuracy budget would win on accuracy they may not spend
        "fixed_over_budget": over_budget_names(judged),
    }
    return {"summary": summary, "points": points}


def main() -> int:
    return study_command(__doc__, "energy.yaml", judge_study, lambda result: print("\n".join(energy_section(result, {}))))


def method_cell(point: dict, method: str) -> str:
    m = point["methods"].get(method, {})
    if not m.get("n"):
        return "-"
    return f"{m['mean_energy_mj']:.0f} mJ, {m['mean_e2e_ms']:.0f} ms ({m['option']} {100 * m['option_share']:.0f}%)"


def energy_section(data: dict, found: dict) -> list[str]:
    s = data["summary"]
    methods = [PLANNER, LATENCY_PLANNER, "edge-only", "server-only"]
    rows = []
    for p in data["points"]:
        where = [p["trace"], p["device"], p["radio"]]
        if "methods" not in p:
            rows.append([*where, p["status"], *([""] * (len(methods) + 3))])
            continue
        rows.append([*where, str(p["rounds"]), *(method_cell(p, m) for m in methods),
                     "{:+.1f}% ({:+.1f}, {:+.1f})".format(p["over_latency_planner_pct"], *p["over_latency_planner_ci95_pct"]),
                     "{:+.1f}% ({:+.1f}, {:+.1f})".format(p["over_best_fixed_pct"], *p["over_best_fixed_ci95_pct"]),
                     pct(p["energy_model_error_pct"], 1)])
    return [f"{s['judged_points']} of {s['points']} points complete (`studies/{s.get('study', 'energy.yaml')}`; "
            "every method takes turns on one replay per point). Per method: mean edge energy per request (board + "
            "radio), mean latency, and the option it ran most with its share of its requests. Over = AGLOP-energy's "
            "mean energy over the other's, minus 1 (negative = it spends less), paired over rounds, the best fixed "
            "plan chosen on half the rounds and judged on the other, with a 95% moving-block bootstrap interval. "
            "Model = the energy model's median |error| on AGLOP-energy's requests (its prediction, rate estimate "
            f"included, against the request's measured energy). AGLOP-energy's most-run option differs from "
            f"AGLOP-latency's at {s['points_choices_differ']} of {s['judged_points']} points; it spends the least of "
            f"the two and the fixed ends at {s['points_lowest_energy']}; median over AGLOP-latency "
            f"{s['median_over_latency_planner_pct']:+.1f}%, over the best fixed plan {s['median_over_best_fixed_pct']:+.1f}%."
            + (f" Fixed plans over the planners' accuracy budget: {s['fixed_over_budget']}." if "fixed_over_budget" in s else ""),
            "", *table(["trace", "device", "radio", "rounds", *methods, "over AGLOP-latency (95% CI)",
                        "over best fixed (95% CI)", "model"], rows),
            "Where the two AGLOPs' most-run options differ, mean per request:", "",
            *(why_they_differ(p) for p in data["points"] if p.get("choices_differ")), ""]


def why_they_differ(p: dict) -> str:
    """One line for a point where the two AGLOPs' most-run options differ: each option's mean energy per
    request split into board and radio, and what the energy planner's choice trades."""
    e, lat = p["methods"][PLANNER], p["methods"][LATENCY_PLANNER]
    if not (e.get("n") and lat.get("n")):
        return f"- {p['trace']}, {p['device']}, {p['radio']}: one of the two answered no request with an energy."

    def parts(m: dict) -> tuple[float, float]:
        return m["mean_energy_mj"] - m["mean_radio_mj"], m["mean_radio_mj"]

    (eb, er), (lb, lr) = parts(e), parts(lat)
    return (f"- {p['trace']}, {p['device']}, {p['radio']}: AGLOP-latency ran {lat['option']} "
            f"({100 * lat['option_share']:.0f}% of its requests; {lb:.0f} mJ board + {lr:.0f} mJ radio, "
            f"{lat['mean_e2e_ms']:.0f} ms); AGLOP-energy ran {e['option']} ({100 * e['option_share']:.0f}%; "
            f"{eb:.0f} + {er:.0f} mJ, {e['mean_e2e_ms']:.0f} ms): {er - lr:+.0f} mJ of radio against "
            f"{eb - lb:+.0f} mJ of board, {e['mean_e2e_ms'] - lat['mean_e2e_ms']:+.0f} ms.")


def energy_headline(data: dict, found: dict) -> list[list[str]]:
    s = data["summary"]
    return [["AGLOP planning on energy (trace x device x radio)",
             f"median {s['median_over_latency_planner_pct']:+.1f}% energy per request against AGLOP on latency, "
             f"{s['median_over_best_fixed_pct']:+.1f}% against the best fixed plan; choices differ at "
             f"{s['points_choices_differ']} of {s['judged_points']} points"]]


PAGES = [Page("energy", "AGLOP planning on energy", order=110, argv=["-m", "benchmarks.energy"],
              section=energy_section, headline=energy_headline, headline_order=70, judges_study=True)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
