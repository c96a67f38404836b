#!/usr/bin/env python3
"""Regenerate docs/results.md and the README's headline table from the benchmarks' committed summaries.

    sudo .venv/bin/python scripts/results.py                    # run every benchmark, then write
    sudo .venv/bin/python scripts/results.py --only fidelity    # rerun some, keep the others' JSON
    python scripts/results.py --only aglop_report --from DIR --commit C   # judge a study run at commit C
    python scripts/results.py --render                          # only rewrite from data/bench

Each benchmark writes data/bench/NAME.json and NAME.meta.json (command, full commit, clean, date,
machine, seconds). data/bench is tracked, so the pages are a function of files in the repository:
every number in them comes from a committed summary whose meta names the command and commit that
repeat it. A benchmark with no summary has no README row, and its docs/results.md section says it
is not measured. A result measured on a tree with uncommitted changes (meta "clean": false) is
labelled so in docs/results.md and is refused for the README unless --allow-dirty. Per-request run
folders stay in the ignored results/. `make results` calls this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data" / "bench"  # the one place that knows where the summaries live
RESULTS_MD = REPO / "docs" / "results.md"
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin (written by scripts/results.py) -->", "<!-- results:end -->"
BENCHMARKS = {  # name -> arguments after the interpreter; each writes --json DATA_DIR/NAME.json
    "fidelity": ["benchmarks/fidelity.py", "--quick"],
    "codecs": ["benchmarks/codecs.py", "--quick"],
    "disc_headroom": ["benchmarks/disc_headroom.py", "--splits", "block3,block4,block13"],
    "disc_rate_distortion": ["benchmarks/disc_rate_distortion.py"],
    "disc_accuracy": ["benchmarks/disc_accuracy.py"],
    "devices": ["benchmarks/devices.py"],
    "aglop": ["benchmarks/aglop.py", "--quick"],
    "estimator_window": ["benchmarks/estimator_window.py"],
    "aglop_grid": ["benchmarks/aglop_grid.py"],
    "aglop_report": ["benchmarks/aglop_grid.py", "--study", "studies/aglop-report.yaml"],
    "studies": ["benchmarks/studies.py"],
    "containers": ["benchmarks/containers.py", "--build"],  # needs a Docker daemon
}
STUDY_BENCHMARKS = ("aglop_grid", "aglop_report")  # judge a study folder with --from (benchmarks/aglop_grid.py)


def rerun_command(name: str) -> str:
    return f"sudo .venv/bin/python scripts/results.py --only {name}"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def tree_state() -> tuple[str, bool]:
    """HEAD's full hash and whether the tracked files equal it. The files this script writes are left
    out: a second benchmark of one run must not count the first one's summary as a change."""
    written = [f":(exclude){os.path.relpath(path, REPO)}" for path in (DATA_DIR, RESULTS_MD, README)]
    head = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no", "--", ".", *written)
    return head or "unknown", bool(head) and not changes


def run_benchmark(name: str, study_runs: tuple[str, str] | None = None) -> None:
    """One benchmark, its JSON and a meta file beside it; a failed benchmark keeps its previous JSON.
    The result is clean only if the tree equalled one commit at the start and still did at the end.
    `study_runs` (folder, commit): judge a study folder whose runs were made at that commit (the
    benchmark checks their ids against it) instead of running the study; the meta names both the
    command that reruns the study and the commit its runs were made at."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out = DATA_DIR / f"{name}.json"
    judge = ["--from", study_runs[0], "--commit", study_runs[1]] if study_runs else []
    argv = [sys.executable, *BENCHMARKS[name], *judge, "--json", str(out.with_suffix(".new.json"))]
    shown = " ".join(["sudo .venv/bin/python", *BENCHMARKS[name], "--json", os.path.relpath(out, REPO)])
    print(f"== {shown}", flush=True)
    started, (head, clean) = time.time(), tree_state()
    done = subprocess.run(argv, cwd=REPO)
    if done.returncode != 0 or not out.with_suffix(".new.json").exists():
        print(f"== {name} failed (exit {done.returncode}); its previous results, if any, are kept", file=sys.stderr)
        return
    out.with_suffix(".new.json").replace(out)
    meta = {"command": shown, "commit": head, "clean": clean and tree_state() == (head, True),
            **({"runs_commit": git("rev-parse", study_runs[1])} if study_runs else {}),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "seconds": round(time.time() - started)}
    (DATA_DIR / f"{name}.meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def load(name: str) -> tuple[dict, dict] | None:
    """A benchmark's summary and meta, or None if either is missing (a summary without its meta
    names no command or commit, so it is not shown)."""
    path, meta = DATA_DIR / f"{name}.json", DATA_DIR / f"{name}.meta.json"
    if not (path.exists() and meta.exists()):
        return None
    return json.loads(path.read_text()), json.loads(meta.read_text())


def is_clean(meta: dict) -> bool:
    return meta.get("clean") is True


def provenance(meta: dict) -> list[str]:
    dirty = "" if is_clean(meta) else " **Measured with uncommitted changes**: the commit alone does not repeat it."
    made = (f"runs made at commit {meta['runs_commit'][:10]} (checked against their ids), judged at "
            if meta.get("runs_commit") else "")
    return [f"`{meta['command']}` ({meta['seconds']} s), {meta['date']}, {made}commit {meta['commit'][:10]}, "
            f"{meta['machine']}.{dirty}", ""]


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}%"


def fidelity_section(data: dict) -> list[str]:
    h = data["headline"]
    rows = [["10 Mbit/s, 20 ms each way, 1% loss",
             f"goodput error {pct(h['rate_error_pct'])}, RTT {h['rtt_ms']:.2f} ms (error {h['rtt_error_ms']:.2f} ms), "
             f"loss {h['measured_loss_pct']:.2f}% (error {h['loss_error_pts']:.2f} pts)"]]
    rows += [[f"{s['rate_bps'] / 1e6:g} Mbit/s, {s['delay_ms']:g} ms each way, {s['loss_pct']:g}% loss",
              f"RTT {s['rtt_ms']:.2f} ms (error {s['rtt_error_ms']:.2f} ms)"
              + (f", loss {s['measured_loss_pct']:.2f}%" if s["loss_pct"] else "")]
             for s in data["sweep"]]
    rows += [[f"{r['rate_bps'] / 1e6:g} Mbit/s, {r['protocol']}", f"goodput error {pct(r['rate_error_pct'])}"]
             for r in data["fixed_rates"]]
    rows += [[f"{m['size']} B messages after idle, {m['rate_bps'] / 1e6:g} Mbit/s, "
              + (f"{m['delay_ms']:g} ms each way, sent with {m['congestion']}" if m.get("reverse_delay_ms")
                 else f"{m['delay_ms']:g} ms delay" if m["delay_ms"] else "rate only (HTB alone, no receiver stage)"),
              f"delivered in {m['delivery_ms_median']:.1f} ms (median); a link takes {m['link_ms']:.1f} ms"]
             for m in data["messages"]]
    rows += [[f"{t['trace']} replay", f"per-second error median {pct(t['median_error_pct'])}, "
              f"p90 {pct(t['p90_error_pct'])}"] for t in data["traces"]]
    if data.get("outages"):
        rows += [[f"trace of {o['trace']}",
                  f"{o['bytes_during_outage']} bytes delivered during outages, delivery resumed "
                  f"{o['resume_ms_max']:.0f} ms (worst) after the trace's return"] for o in data["outages"]]
    return [f"Backend: `{data['backend']}`.", "", *table(["configured", "measured"], rows)]


def codecs_section(data: dict) -> list[str]:
    front = data["frontier"]
    splits = list(dict.fromkeys((r["model"], r["split"]) for r in front))
    rows = []
    for model, split in splits:
        mine = {r["codec"]: r for r in front if (r["model"], r["split"]) == (model, split)}
        disc = mine.get("disc")
        rows.append([model, split, mine["disc"]["criterion"] if disc else "-",
                     f"{pct(disc['reduction_pct'])} ({disc['bits_per_value']:.2f})" if disc else "-",
                     pct(mine.get("jpeg", {}).get("reduction_pct")), pct(mine.get("int8", {}).get("reduction_pct")),
                     f"{disc['encode_ms'] + disc['decode_ms']:.2f}" if disc else "-",
                     f"{disc['head_ms']:.2f}" if disc else "-", pct(disc["codec_share_pct"], 1) if disc else "-"])
    return [f"Smallest setting of each codec with under {data['criterion_pts']} point of loss "
            "(criterion per row: `accuracy` = labelled top-1, `agreement` = top-1 agreement with the "
            "uncompressed model); bytes include headers; share = DISC encode + decode over the head's time.", "",
            *table(["model", "split", "criterion", "DISC reduction (bit/value)", "JPEG", "int8",
                    "DISC enc + dec ms", "head ms", "share"], rows)]


def disc_headroom_section(data: dict) -> list[str]:
    rows = [[r["split"], f"{r['step']:g}", f"{r['disc_bits_per_value']:.3f}", f"{r['calibration_groups']:.3f}",
             f"{r['context']:.3f}", pct(100 * (1 - r["context"] / r["disc_bits_per_value"]), 1),
             f"{r['oracle_groups']:.3f}"] for r in data["rows"]]
    return ["Bits per value DISC sends against ideal coders of DISC's own symbols: one histogram per DISC table "
            "fitted on the calibration views, the same split by already-decoded neighbours (context), and "
            "histograms fitted on the evaluation views themselves (oracle).", "",
            *table(["split", "step", "DISC", "ideal, per table", "ideal, with context", "context below DISC",
                    "oracle per table"], rows)]


def disc_rate_distortion_section(data: dict) -> list[str]:
    rows = []
    for r in data["rows"]:
        flips = ", ".join(f"{p['flips']} ({p['flips_near_ties']})" for p in r["points"])
        at = r["logit_mse_at_target"]
        rows.append([r["split"], "-" if at is None else f"{at:.4f}", flips,
                     pct(r["best_passing_reduction_pct"]) if r["best_passing_reduction_pct"] is not None else "none"])
    steps = ", ".join(f"{p['step']:g}" for p in data["rows"][0]["points"]) if data["rows"] else ""
    return [f"Logit MSE against the uncompressed model at {data['target_reduction_pct']:g}% reduction "
            f"(interpolated), and top-1 flips of the evaluation views at steps {steps} (in brackets: flips of "
            "near ties, top-2 logits within 0.1).", "",
            *table(["split", "logit MSE at target", "flips (near ties) per step", "largest reduction under 1 point"],
                   rows)]


def ci(entry: dict) -> str:
    return "-" if entry["pts"] is None else f"{entry['pts']:.2f} ({entry['lo']:.2f}, {entry['hi']:.2f})"


def disc_accuracy_section(data: dict) -> list[str]:
    sets = data["evaluation_set"]
    sources = [[name, row["photos"], row["labelled"], ", ".join(f"{k} ({v})" for k, v in row["licences"].items())]
               for name, row in data["sources"].items()]
    calib = [[half, f"{c['views']}", pct(c["accuracy_pct"], 1), pct(c["mean_confidence_pct"], 1),
              f"{c['ece_pts']:.1f}"] for half, c in data["reference_calibration"].items()]
    rows = [[r["split"], r["codec"], ", ".join(f"{k} {v}" for k, v in r["params"].items()), f"{r['wire_bytes']:.0f}",
             pct(r["reduction_pct"]), ci(r["report"]["accuracy"]), ci(r["report"]["expected"]),
             ci(r["report"]["agreement"]), ci(r["report"]["agreement_confident"]), pct(r.get("codec_share_pct"), 1)]
            for r in data["chosen"]]
    h = data["headline"]
    lines = [f"EfficientNet-Lite0 on {sets['tune']['photos'] + sets['report']['photos']} photos "
             f"({sets['tune']['views'] + sets['report']['views']} views): settings chosen on the tuning half "
             f"({sets['tune']['photos']} photos, {sets['tune']['labelled_photos']} labelled), reported on the "
             f"held-out half ({sets['report']['photos']} photos, {sets['report']['views']} views, "
             f"{sets['report']['labelled_photos']} labelled). Sources:", "",
             *table(["source", "photos", "labelled", "licences"], sources),
             "The reference (uncompressed) model on the labelled views, per half: how far its probabilities can "
             "stand in for labels (ECE = expected calibration error, 10 bins):", "",
             *table(["half", "labelled views", "top-1 accuracy", "mean confidence", "ECE pts"], calib),
             f"Per split and codec, the fewest-bytes setting whose labelled and expected drops were both under "
             f"{data['bar_pts']:g} point on the tuning half; its losses on the held-out half in points, with 95% "
             "bootstrap intervals over photos; share = (encode + decode) / head, one thread.", "",
             *table(["split", "codec", "setting", "bytes", "reduction", "labelled drop", "expected drop",
                     "flips, all", "flips, confident", "share"], rows)]
    if h:
        lines += [f"Largest DISC reduction chosen this way: {pct(h['reduction_pct'])} ({h['wire_bytes']:.0f} B) at "
                  f"{h['split']}; held-out labelled drop {ci(h['report']['accuracy'])}, expected drop "
                  f"{ci(h['report']['expected'])} points.", ""]
    return lines


def devices_section(data: dict) -> list[str]:
    rows = [[p["name"], f"{p['quota_cores']:.3f} x {p.get('threads', 1)}", f"{p['emulated_ms']:.1f}",
             f"{p['reference_ms']}", f"{p['ratio']:.3f}", f"{p['cv']:.3f}",
             f"{p['cross_ratio']:.2f}" if p.get("cross_ratio") is not None else "-"] for p in data["profiles"]]
    rows += [[s["name"], "skipped", "", "", "", "", s["reason"]] for s in data["skipped"]]
    return [f"{data['runs']} runs of the reference workload in a governed node; ratio = emulated / reference "
            "(goal 0.9-1.1), cv over the runs (goal <= 0.05), cross ratio = EfficientNet-B0 under the same "
            "calibration.", "",
            *table(["profile", "quota (cores x threads)", "emulated ms", "reference ms", "ratio", "cv",
                    "cross ratio"], rows)]


def aglop_section(data: dict) -> list[str]:
    methods = list(dict.fromkeys(r["method"] for r in data["results"]))
    groups = list(dict.fromkeys((r["trace"], r["device"]) for r in data["results"]))
    rows = []
    for trace, device in groups:
        mine = {r["method"]: r for r in data["results"] if (r["trace"], r["device"]) == (trace, device)}
        rows.append([trace, device, *(f"{mine[m]['mean_e2e_ms']:.1f}" if m in mine else "-" for m in methods)])
    checks = [[c["trace"], c["device"], pct(c["aglop_reduction_pct"]), c["best_other_method"],
               f"{c['margin_vs_best_other_pct']:.1f}% ({c['margin_vs_best_other_ci95_pct'][0]:.1f}, "
               f"{c['margin_vs_best_other_ci95_pct'][1]:.1f})", pct(c["gap_to_oracle_pct"], 1)]
              for c in data["checks"]]
    return [f"Mean end-to-end ms per method; {data['duration_s']:g} s replays, {data['delay_ms']:g} ms one-way "
            "delay, accuracy budget {0} point.".format(data["budget_pts"]), "",
            *table(["trace", "device", *methods], rows),
            "AGLOP against original partition-offloading, against the best other method (positive = AGLOP "
            "faster; bootstrap 95% interval) and against the oracle:", "",
            *table(["trace", "device", "reduction vs original", "best other", "margin (95% CI)",
                    "gap to oracle"], checks),
            f"Latency model: median |predicted - measured| / measured over AGLOP's requests "
            f"{pct(data['prediction_error_pct'], 1)}.", ""]


def estimator_window_section(data: dict) -> list[str]:
    rows = [[r["spacing"], f"{r['noise_sd']:g}", r["setting"], pct(r["median_abs_error_pct"], 1),
             pct(r["worst_trace_error_pct"], 1), f"{r['mean_log_bias']:+.3f}"] for r in data["rows"]]
    names = ", ".join(f"{Path(path).name} x{scale:g}" for path, scale in data["traces"])
    return ["A trace-only analysis (no emulation) that chose which samples AGLOP's bandwidth estimate keeps, on "
            f"the bundled traces the AGLOP grid does not replay ({names}): probes while the edge computes alone, "
            "their on-link times with log-normal noise, and the error of the next 17 KB message's predicted "
            "time (median per trace, then over traces; bias: mean log of predicted over actual).", "",
            *table(["probes", "noise sd", "samples kept", "median abs error", "worst trace", "mean log bias"], rows)]


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
]


def grid_summary_cell(summary: dict, key, form: str) -> str:
    values = [summary.get(k) for k in (key if isinstance(key, tuple) else (key,))]
    return "-" if any(v is None for v in values) else form.format(*values)


def aglop_grids_side_by_side(found: dict) -> list[str]:
    """The tune grid (where AGLOP was developed) and the report grid (never run before the planner's
    freeze) in one table; a grid not measured at this commit shows as such."""
    grids = [("tune grid", found.get("aglop_grid")), ("report grid", found.get("aglop_report"))]
    rows = [[label] + ["not measured" if g is None else grid_summary_cell(g[0]["summary"], key, form)
                       for _, g in grids] for label, key, form in GRID_SUMMARY]
    return ["Both grids judged alike; the report grid's traces, delays and points were never run with the "
            "planner before its freeze (runs commit in its provenance line).", "",
            *table(["", *(label for label, _ in grids)], rows)]


def aglop_grid_section(data: dict) -> list[str]:
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
            "Latency model against every option's requests (edge-only and server-only included; the model told the "
            "trace's rate and the link's delays): per option the median |error| per request, the error of the "
            "option's mean, and per stage the median signed error, model - measured, ms, with the median |error| in "
            "brackets:", "",
            *table(["option", "requests", "median abs error", "error of the mean", "median e2e ms", "head", "encode",
                    "transfer", "decode", "tail"], options)]


def studies_section(data: dict) -> list[str]:
    rows = [[engine, f"{data[f'{engine}_wall_s']:.1f}", f"{data[f'{engine}_overhead_per_run_s']:.2f}"]
            for engine in ("local", "dask")]
    return [f"`{data['study']}` ({data['runs']} runs, --quick), {data['rounds']} round(s), engines in turn; "
            f"Dask / local wall time (median ratio): {data['median_ratio']:.3f}. Overhead per run = (study "
            "wall time - the runs' own time) / runs.", "",
            *table(["engine", "study wall s", "overhead per run s"], rows)]


def containers_section(data: dict) -> list[str]:
    rows = [[r["method"], r["measure"], f"{r['host_ms']:.2f}", f"{r['container_ms']:.2f}", f"{r['difference_ms']:+.2f}",
             f"({r['interval_ms'][0]:.2f}, {r['interval_ms'][1]:.2f})",
             "-" if r["host_round_gap_ms"] is None else f"{r['host_round_gap_ms']:.2f}", "yes" if r["within_noise"] else "no"]
            for r in data["table"] if r["host_ms"] or r["container_ms"]]
    device, build = data["device"], data.get("build") or {}
    goodput = [[g["protocol"], f"{g['rate_bps'] / 1e6:g}", pct(g["container_rate_error_pct"]),
                pct(g["namespace_rate_error_pct"])] for g in data["goodput"]]
    built = (f"built from scratch in {build['base_build_s'] + build['node_build_s']:.0f} s (base "
             f"{build['base_build_s']:.0f} s, project layer {build['node_build_s']:.0f} s)" if build.get("base_build_s")
             else "build not timed in this run")
    return [f"`{data['scenario'].split('/')[-1]}` with the edge node as a container of `{data['image']['image']}` and as a "
            f"host node, {data['rounds']} rounds, in turns. Per method: p50 e2e and each stage's median (ms, stages "
            "that are 0 for both left out), container - host with a bootstrap 95% interval, and the gap between the "
            "host's own rounds (the noise); within noise = the interval holds 0 or the difference is at most that gap.",
            "", *table(["method", "measure", "host", "container", "difference", "95% interval", "host round gap",
                        "within noise"], rows),
            f"Device: {device['name']} reference workload under its governed quota, ratio to the published latency "
            f"{device['ratio']:.3f} (cv {device['cv']:.3f}) on a host node, {device['container_ratio']:.3f} "
            f"(cv {device['container_cv']:.3f}) in a container.", "",
            "Goodput with the receiving end in a container and in a plain namespace, point by point (error against "
            "rate x payload share):", "", *table(["protocol", "Mbit/s", "container error", "namespace error"], goodput),
            f"Image `{data['image']['image']}`: {data['image']['size_mb']:.0f} MB, {built}.", ""]


SECTIONS = {"fidelity": ("Links: emulated against configured", fidelity_section),
            "codecs": ("Codecs: size against accuracy", codecs_section),
            "disc_headroom": ("DISC: distance of the entropy stage from ideal coders", disc_headroom_section),
            "disc_rate_distortion": ("DISC: rate against logit error and flips", disc_rate_distortion_section),
            "disc_accuracy": ("DISC: accuracy loss on held-out photos", disc_accuracy_section),
            "devices": ("Devices: emulated against published latency", devices_section),
            "aglop": ("AGLOP against every baseline", aglop_section),
            "estimator_window": ("AGLOP: which samples its rate estimate keeps", estimator_window_section),
            "aglop_grid": ("AGLOP over its tune grid", aglop_grid_section),
            "aglop_report": ("AGLOP over its report grid", aglop_grid_section),
            "studies": ("Studies: local engine against Dask", studies_section),
            "containers": ("Container nodes against host nodes", containers_section)}


def headline_rows(found: dict) -> list[list[str]]:
    """The README's rows [what, measured, benchmark] for the benchmarks in `found`, in the table's order."""
    rows = []
    if "fidelity" in found:
        d = found["fidelity"][0]
        rows.append(["link fidelity", f"goodput error {pct(d['rate_error_pct'])} at 10 Mbit/s, RTT error "
                     f"{d['rtt_error_ms']:.2f} ms at 40 ms, trace-following error (median per second) up to "
                     f"{pct(d['trace_median_error_pct'])}", "fidelity"])
    if "devices" in found:
        ps = found["devices"][0]["profiles"]
        rows.append(["device emulation", ", ".join(f"{p['name']} {p['ratio']:.2f}x (cv {p['cv']:.3f})" for p in ps)
                     + " of the published latency", "devices"])
    if "codecs" in found:
        front = [r for r in found["codecs"][0]["frontier"] if r["codec"] == "disc"]
        for model in dict.fromkeys(r["model"] for r in front):
            if model == "efficientnet_lite0" and "disc_accuracy" in found:
                continue  # measured as the seed states it below
            mine = [r for r in front if r["model"] == model]
            rows.append([f"DISC on {model}", f"{min(r['reduction_pct'] for r in mine):.1f}-"
                         f"{max(r['reduction_pct'] for r in mine):.1f}% smaller than fp32 at "
                         f"{len(mine)} splits, under 1 point of {mine[0]['criterion']} loss", "codecs"])
    if "disc_accuracy" in found and found["disc_accuracy"][0]["headline"]:
        h = found["disc_accuracy"][0]["headline"]
        rows.append(["DISC on efficientnet_lite0", f"{h['reduction_pct']:.1f}% smaller than fp32 at {h['split']}; "
                     f"held-out accuracy drop: expected {ci(h['report']['expected'])}, labelled "
                     f"{ci(h['report']['accuracy'])} points (95% intervals; setting chosen on other photos)",
                     "disc_accuracy"])
    if "aglop" in found:
        checks = found["aglop"][0]["checks"]
        red = [c["aglop_reduction_pct"] for c in checks]
        gap = [c["gap_to_oracle_pct"] for c in checks]
        rows.append(["AGLOP", f"{min(red):.1f}-{max(red):.1f}% lower e2e than original partition-offloading; "
                     f"{min(gap):+.1f}% to {max(gap):+.1f}% from the oracle ({len(checks)} trace x device points)",
                     "aglop"])
    if "aglop_report" in found:
        s = found["aglop_report"][0]["summary"]
        rows.append(["AGLOP on a report grid it was never run on", f"lowest or within the interval of the lowest "
                     f"other method at {100 * s['lowest_or_within_ci_share']:.0f}% of {s['judged_points']} (trace, "
                     f"device, delay) points; over the best fixed option in hindsight by more than 5% at "
                     f"{s['points_over_5pct_of_best_fixed']} (median {s['median_over_best_fixed_pct']:+.1f}%; paired, "
                     f"cross-fitted); latency model error {pct(s['model_error_pct'], 1)} (median, every option)",
                     "aglop_report"])
    if "containers" in found:
        d = found["containers"][0]
        e2e = [r for r in d["table"] if r["measure"] == "e2e_ms"]
        build = d.get("build") or {}
        rows.append(["container nodes", f"edge as a container vs a host node: e2e p50 {min(r['difference_ms'] for r in e2e):+.1f} "
                     f"to {max(r['difference_ms'] for r in e2e):+.1f} ms ({sum(r['within_noise'] for r in e2e)}/{len(e2e)} "
                     f"methods within noise); {d['device']['name']} {d['device']['container_ratio']:.2f}x in a container "
                     f"({d['device']['ratio']:.2f}x on a host); "
                     f"TCP goodput error up to {pct(d['goodput_tcp_error_pct_max'])} on a container link; image "
                     f"{d['image']['size_mb'] / 1000:.2f} GB" + (f", built in {build['base_build_s'] + build['node_build_s']:.0f} s"
                                                                 if build.get("base_build_s") else ""), "containers"])
    return rows


def headline_notes(found: dict) -> list[str]:
    """Sentences under the README's table that read its rows; each only beside the row it reads."""
    if "disc_accuracy" not in found or not found["disc_accuracy"][0]["headline"]:
        return []
    data = found["disc_accuracy"][0]
    labelled, report = data["headline"]["report"]["accuracy"], data["evaluation_set"]["report"]
    return ["DISC's Lite0 row is the seed's claim measured as stated: accuracy loss, on photos the setting was not "
            f"chosen on. The expected drop (label-free) uses all {report['photos']} held-out photos; the labelled "
            f"drop rests on {report['labelled_photos']} labelled ones"
            + ("" if labelled["pts"] is None else f" (its interval spans {labelled['hi'] - labelled['lo']:.1f} points)")
            + ". Details: [codecs.md](docs/codecs.md).", ""]


def link(name: str) -> str:
    return f"[{name}](docs/results.md#{anchor(SECTIONS[name][0])})"


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def headline_names(readme: str) -> list[str]:
    """The benchmark behind each of the README's headline rows, in order (one name per row)."""
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in readme and END in readme else ""
    return [m.group(1) for line in block.splitlines() if (m := re.search(r"\| \[(\w+)\]\(docs/results\.md", line))]


def unbacked_rows(readme: str) -> list[str]:
    """Why each README headline row is not backed by a clean summary in DATA_DIR; empty if all are."""
    problems = []
    for name in headline_names(readme):
        where = os.path.relpath(DATA_DIR / name, REPO)
        if (loaded := load(name)) is None:
            problems.append(f"{name}: the README has its row but {where}.json or .meta.json is missing")
        elif not is_clean(loaded[1]):
            problems.append(f"{name}: {where}.meta.json says commit {loaded[1]['commit'][:10]} had uncommitted changes")
    return problems


def results_page(found: dict) -> str:
    lines = ["# Measured results", "",
             "Written by `scripts/results.py` (`sudo make results`) from the benchmarks' summaries in `data/bench/`; "
             "do not edit by hand. Each table names the command, commit, date and machine it came from. These "
             "machines are shared and noisy (2 cores): compare ratios and medians measured side by side, not absolute "
             "times across tables.", ""]
    for name, (title, section) in SECTIONS.items():
        lines += [f"## {title}", ""]
        if name == "aglop_report":
            lines += aglop_grids_side_by_side(found) + [""]
        if name in found:
            lines += provenance(found[name][1]) + section(found[name][0])
        else:
            lines += [f"Not measured at this commit: run `{rerun_command(name)}`.", ""]
    return "\n".join(lines).rstrip() + "\n"


def headline_block(found: dict) -> str:
    rows = [[what, value, link(name) + ("" if is_clean(found[name][1]) else " (uncommitted changes)")]
            for what, value, name in headline_rows(found)]
    if not rows:
        return "No headline result is measured at this commit: `sudo make results` runs the benchmarks.\n"
    return "\n".join(table(["what", "measured", "details"], rows) + headline_notes(found))


def render(allow_dirty: bool = False) -> int:
    """Both pages from DATA_DIR alone; nothing is written if a README row would show a dirty result."""
    found = {name: loaded for name in BENCHMARKS if (loaded := load(name))}
    dirty = [name for _, _, name in headline_rows(found) if not is_clean(found[name][1])]
    if dirty and not allow_dirty:
        for name in dict.fromkeys(dirty):
            print(f"error: {name}'s result was measured at commit {found[name][1]['commit'][:10]} with uncommitted "
                  f"changes ({os.path.relpath(DATA_DIR / name, REPO)}.meta.json); rerun it from a clean commit "
                  f"(`{rerun_command(name)}`) or pass --allow-dirty to show it in the README anyway", file=sys.stderr)
        return 2
    RESULTS_MD.parent.mkdir(exist_ok=True)
    RESULTS_MD.write_text(results_page(found))
    readme = README.read_text()
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        README.write_text(head + BEGIN + "\n" + headline_block(found) + END + rest.split(END, 1)[1])
    print(f"wrote {os.path.relpath(RESULTS_MD, REPO)} ({', '.join(found) or 'no benchmark results yet'})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--render", action="store_true", help="do not run anything; rewrite from data/bench")
    parser.add_argument("--from", dest="source", help="with --only NAME (a study benchmark): judge this study "
                        "folder instead of running the study")
    parser.add_argument("--commit", help="with --from: the commit the folder's runs were made at")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="show results measured with uncommitted changes in the README too (labelled)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: --only: unknown benchmark {', '.join(unknown)} (expected some of {', '.join(BENCHMARKS)})",
              file=sys.stderr)
        return 2
    if args.source and (len(names) != 1 or names[0] not in STUDY_BENCHMARKS or not args.commit):
        print(f"error: --from needs --commit and --only with one study benchmark ({', '.join(STUDY_BENCHMARKS)})",
              file=sys.stderr)
        return 2
    if not args.render:
        if os.geteuid() != 0 and not args.source:
            print("error: the benchmarks need root: sudo .venv/bin/python scripts/results.py", file=sys.stderr)
            return 2
        for name in names:
            run_benchmark(name, (args.source, args.commit) if args.source else None)
    return render(args.allow_dirty)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the benchmark running was stopped too; its previous JSON is kept
        print("interrupted: pages not rewritten", file=sys.stderr)
        sys.exit(130)
