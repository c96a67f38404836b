"""The run_scenario.py command: argument parsing, root check, and turning UserError into exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from splitbed import __version__
from splitbed.errors import UserError, run_reporting_user_errors

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "default.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_scenario.py",
        description="Run a split-CNN scenario in an emulated network of edge devices and servers.",
        epilog="Needs root: sudo python run_scenario.py scenarios/default.yaml",
    )
    parser.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO), help="scenario YAML file")
    parser.add_argument("--check", action="store_true", help="probe this machine's capabilities and exit")
    parser.add_argument("--json", action="store_true", help="with --check: print the probe as JSON")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove what killed runs left (namespaces, rules, qdiscs, cgroups, processes)")
    parser.add_argument("--validate", action="store_true",
                        help="check the scenario file (fields, ranges, files, traces) and exit: 0 valid, 2 not")
    parser.add_argument("--quick", action="store_true", help="fewer requests: a smoke test of any scenario")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    parser.add_argument("--version", action="version", version=f"splitbed {__version__}")
    return parser


def run_check(as_json: bool) -> int:
    from splitbed.host.capabilities import format_table, probe

    caps = probe()
    print(json.dumps(caps.to_dict(), indent=2) if as_json else format_table(caps))
    return 0 if caps.can_run() else 2


def run_cleanup() -> int:
    from splitbed.host.state import STATE_DIR, cleanup_dead_runs

    if os.geteuid() != 0:
        raise UserError("--cleanup needs root", fix="run: sudo python run_scenario.py --cleanup")
    removed = cleanup_dead_runs()
    for item in removed:
        print(f"removed {item}")
    print(f"cleanup: {len(removed)} item(s) removed from runs recorded in {STATE_DIR}")
    return 0


def run_scenario_file(path: str, quick: bool = False, quiet: bool = False, validate: bool = False) -> int:
    from splitbed.scenarios.schema import load_scenario

    scenario = load_scenario(path)  # every check before anything starts, root or not
    if validate:
        print(f"{path}: valid")
        return 0
    from splitbed.scenarios.run import Run

    if os.geteuid() != 0:
        raise UserError("needs root for namespaces, qdiscs and cgroups", fix=f"run: sudo python run_scenario.py {path}")
    Run(scenario, quick, quiet).execute()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.check:
            return run_reporting_user_errors(lambda: run_check(args.json), args.debug)
        if args.cleanup:
            return run_reporting_user_errors(run_cleanup, args.debug)
        return run_reporting_user_errors(
            lambda: run_scenario_file(args.scenario, args.quick, args.quiet, args.validate), args.debug)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
