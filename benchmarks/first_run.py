#!/usr/bin/env python3
"""The default scenario's first run on a machine, from an empty cache, stage by stage; then a second run.

    sudo .venv/bin/python -m benchmarks.first_run [--repo CLONE] [--scenario scenarios/default.yaml] [--json PATH]

The cache is a fresh folder (SPLITBED_CACHE) holding only the photos, which `make setup` fetches
before any run; everything a first run fits or measures once per machine (the device's governor,
DISC's calibrations, AGLOP's codec and timing tables, the edge's memory footprint) starts empty. The
run's own progress lines are read as they come, each stamped with the seconds since the start, and
the time between the lines that open each stage is that stage's share. The second run, on the cache
the first one filled, is what every later run costs. --repo times another clone's run_scenario.py
(e.g. one checked out at an older commit, for a before/after) with this clone's interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.host.cache import cache_root
from splitbed.testing.results_page import Page, table

REPO = Path(__file__).resolve().parent.parent
# (stage, the first line of it): stages in the order a run reaches them; "start" is everything before
STAGES = (("device", r"calibrating the CPU quota"), ("disc_calibrations", r"DISC calibration for"),
          ("codec_table", r"measuring sizes and accuracy"), ("timing_table", r"timing every split"),
          ("run", r"edge memory:"))
PROGRESS_EVERY_S = 20  # keep a progress bar's redrawn line at most this often


def stage_seconds(lines: list[tuple[float, str]], total_s: float) -> dict[str, float]:
    """stage -> seconds, from (seconds since start, line) pairs: a stage lasts from its first line to the
    next stage's first line (the last one to the end); a stage a run never opened is absent."""
    starts = {"start": 0.0}
    for stage, pattern in STAGES:
        hit = next((t for t, line in lines if re.search(pattern, line)), None)
        if hit is not None:
            starts[stage] = hit
    ordered = sorted(starts.items(), key=lambda item: item[1])
    ends = [t for _, t in ordered[1:]] + [total_s]
    return {stage: round(end - start, 1) for (stage, start), end in zip(ordered, ends, strict=True)}


def timed_run(repo: Path, scenario: str, cache: Path) -> dict:
    """One run of `scenario` from `repo` with SPLITBED_CACHE=cache: its wall time and its stamped lines
    (every full line; a progress bar's redrawn line every PROGRESS_EVERY_S)."""
    env = {**os.environ, "SPLITBED_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    started = time.monotonic()
    lines, pending, last_bar = [], b"", -PROGRESS_EVERY_S
    with subprocess.Popen([sys.executable, str(repo / "run_scenario.py"), scenario], cwd=repo, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        while chunk := process.stdout.read1(4096):
            pending += chunk
            while (cut := re.search(rb"[\r\n]", pending)) is not None:
                text, mark, pending = pending[: cut.start()].decode(errors="replace"), pending[cut.start():cut.end()], pending[cut.end():]
                now = time.monotonic() - started
                if text.strip() and (mark == b"\n" or now - last_bar >= PROGRESS_EVERY_S):
                    lines.append((round(now, 1), text.strip()))
                    last_bar = now if mark == b"\r" else last_bar
        code = process.wait()
    wall = time.monotonic() - started
    if pending.strip():  # a last line without its newline
        lines.append((round(wall, 1), pending.decode(errors="replace").strip()))
    if code != 0:
        raise UserError(f"the run failed (exit {code}): {' / '.join(line for _, line in lines[-3:])}")
    return {"wall_s": round(wall, 1), "stages_s": stage_seconds(lines, wall), "lines": lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", default=str(REPO), help="the clone whose run_scenario.py is timed")
    parser.add_argument("--scenario", default="scenarios/default.yaml", help="relative to --repo")
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    if os.geteuid() != 0:
        raise UserError("needs root: sudo .venv/bin/python -m benchmarks.first_run")
    repo = Path(args.repo).resolve()
    if not (repo / "run_scenario.py").is_file() or not (repo / args.scenario).is_file():
        raise UserError(f"no run_scenario.py or {args.scenario} in {repo}", fix="give a splitbed clone as --repo")
    photos = cache_root() / "photos"
    if not photos.is_dir():
        raise UserError(f"no photos at {photos}", fix="fetch them first: make photos")
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="splitbed-first-run-") as tmp:
        cache = Path(tmp)
        (cache / "photos").symlink_to(photos)
        first = timed_run(repo, args.scenario, cache)
        print(f"first run: {first['wall_s']} s {first['stages_s']}", flush=True)
        second = timed_run(repo, args.scenario, cache)
        print(f"second run: {second['wall_s']} s", flush=True)
    summary = {"scenario": args.scenario, "repo_commit": commit, "cores": os.cpu_count(), "first": first,
               "second": second}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


STAGE_NAMES = {"start": "start-up: imports, checks", "device": "the device's CPU quota and governor gain",
               "disc_calibrations": "DISC calibrations (one per split)",
               "codec_table": "AGLOP's codec table: sizes and losses of every option",
               "timing_table": "AGLOP's timing table: every split on the device", "run": "the run itself"}


def first_run_section(data: dict, found: dict) -> list[str]:
    first, second = data["first"], data["second"]
    rows = [[STAGE_NAMES.get(stage, stage), f"{seconds:.0f}"] for stage, seconds in first["stages_s"].items()]
    rows.append(["**first run, total**", f"**{first['wall_s']:.0f}**"])
    rows.append(["second run (the cache filled), total", f"{second['wall_s']:.0f}"])
    return [f"`{data['scenario']}` on {data['cores']} cores from an empty cache (the photos only), then again "
            f"(repo at {data['repo_commit'][:7]}). Seconds per stage, from the run's own lines:", "",
            *table(["stage", "seconds"], rows),
            "The first run's lines as it printed them (seconds since the start; a progress bar every "
            f"{PROGRESS_EVERY_S} s):", "", "```",
            *(f"[{t:6.1f}] {line}" for t, line in first["lines"]), "```", ""]


PAGES = [Page("first_run", "The first run on a fresh machine", order=5, argv=["-m", "benchmarks.first_run"],
              section=first_run_section)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
