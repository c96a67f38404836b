#!/usr/bin/env python3
"""A study on the local engine against the same study on a one-machine Dask cluster, in turns.

    sudo .venv/bin/python benchmarks/studies.py [--study studies/example.yaml] [--rounds 1] [--json PATH]

Each round runs the study once per engine into a fresh folder (local first, then Dask: a
LocalCluster with one worker process and one `emulator` resource, started once). Reported per engine:
the study's wall time, the runs' own time (sum of each run_scenario.py process's seconds), and the
engine's overhead per run = (wall - runs' own time) / runs; and the Dask / local wall-time ratio per
round. Every run of a round must complete, and both engines must give the same runs and columns.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.scenarios.study import load_study
from splitbed.testing.results_page import Page, table

REPO = Path(__file__).resolve().parent.parent


def run_once(study: Path, out: Path, engine: list[str], quick: bool) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "run_scenario.py"), "--study", str(study), "--out", str(out),
                           "--quiet", *(["--quick"] if quick else []), *engine], capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise UserError(f"the study failed on {engine or 'local'}: {done.stderr.strip()[-300:]}")
    runs = json.loads((out / "runs.json").read_text())
    if not all(r["status"] == "complete" for r in runs.values()):
        raise UserError(f"not every run completed: {[r['status'] for r in runs.values()]}")
    own = sum(r["seconds"] for r in runs.values())
    with (out / "study.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {"wall_s": wall, "runs": len(runs), "runs_own_s": own, "overhead_per_run_s": (wall - own) / len(runs),
            "columns": list(rows[0]), "run_methods": sorted((r["run_id"], r["method"]) for r in rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(REPO / "studies" / "example.yaml"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--full", action="store_true", help="the study's own request counts (default: --quick)")
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    if os.geteuid() != 0:
        raise UserError("needs root: sudo .venv/bin/python benchmarks/studies.py")
    if not 1 <= args.rounds <= 20:
        raise UserError("--rounds must be 1-20")
    study = Path(args.study).resolve()
    load_study(study)  # a bad study fails before anything runs
    from distributed import LocalCluster

    rounds = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"emulator": 1},
                      dashboard_address=None) as cluster, tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            local = run_once(study, Path(tmp) / f"local-{k}", [], not args.full)
            dask = run_once(study, Path(tmp) / f"dask-{k}", ["--engine", "dask", "--address",
                                                             cluster.scheduler_address], not args.full)
            if local["columns"] != dask["columns"] or local["run_methods"] != dask["run_methods"]:
                raise UserError("the two engines gave different runs or columns")
            rounds.append({"local": local, "dask": dask, "ratio": dask["wall_s"] / local["wall_s"]})
            print(f"round {k + 1}: local {local['wall_s']:.1f} s (overhead {local['overhead_per_run_s']:.2f} s/run), "
                  f"dask {dask['wall_s']:.1f} s (overhead {dask['overhead_per_run_s']:.2f} s/run), "
                  f"dask/local {rounds[-1]['ratio']:.3f}", flush=True)
    summary = {"study": str(study.relative_to(REPO) if study.is_relative_to(REPO) else study),
               "runs": rounds[0]["local"]["runs"], "rounds": len(rounds),
               "median_ratio": statistics.median(r["ratio"] for r in rounds),
               "local_overhead_per_run_s": statistics.median(r["local"]["overhead_per_run_s"] for r in rounds),
               "dask_overhead_per_run_s": statistics.median(r["dask"]["overhead_per_run_s"] for r in rounds),
               "local_wall_s": statistics.median(r["local"]["wall_s"] for r in rounds),
               "dask_wall_s": statistics.median(r["dask"]["wall_s"] for r in rounds),
               "rounds_detail": [{k: {m: v for m, v in r[k].items() if m not in ("columns", "run_methods")}
                                  if isinstance(r[k], dict) else r[k] for k in r} for r in rounds]}
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds_detail"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def studies_section(data: dict, found: dict) -> list[str]:
    rows = [[engine, f"{data[f'{engine}_wall_s']:.1f}", f"{data[f'{engine}_overhead_per_run_s']:.2f}"]
            for engine in ("local", "dask")]
    return [f"`{data['study']}` ({data['runs']} runs, --quick), {data['rounds']} round(s), engines in turn; "
            f"Dask / local wall time (median ratio): {data['median_ratio']:.3f}. Overhead per run = (study "
            "wall time - the runs' own time) / runs.", "",
            *table(["engine", "study wall s", "overhead per run s"], rows)]


PAGES = [Page("studies", "Studies: local engine against Dask", order=110, argv=["-m", "benchmarks.studies"],
              section=studies_section)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
