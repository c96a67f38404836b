"""The run_scenario.py command: argument parsing, root check, and turning UserError into exit 2."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from splitbed import __version__
from splitbed.errors import Terminated, UserError, raise_terminated, run_reporting_user_errors

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
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="replace a scenario field, e.g. --set links.uplink.delay_ms=5 (repeatable)")
    parser.add_argument("--out", help="write the run into this folder (default: OUTPUT/NAME-UTCTIME)")
    parser.add_argument("--oversubscribe", action="store_true",
                        help="run even when the edges' quotas do not fit this machine's cores (recorded)")
    parser.add_argument("--study", metavar="STUDY.yaml", help="run a study: a grid of scenarios (see docs/studies.md)")
    parser.add_argument("--engine", choices=["local", "dask"], default="local",
                        help="with --study: run here one after another (local), or on a Dask cluster")
    parser.add_argument("--address", help="with --engine dask: the scheduler, tcp://HOST:8786 or tls://HOST:8786")
    parser.add_argument("--retries", type=int, default=1, help="with --study: tries again after a lost worker")
    parser.add_argument("--retry-failed", action="store_true",
                        help="with --study: run again the runs whose edge was killed at its memory limit")
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


def run_scenario_file(args: argparse.Namespace) -> int:
    from splitbed.scenarios.overrides import parse_sets
    from splitbed.scenarios.schema import load_scenario

    scenario = load_scenario(args.scenario, parse_sets(args.set))  # every check before anything starts
    if args.validate:
        print(f"{args.scenario}: valid")
        return 0
    from splitbed.scenarios.run import Run

    if os.geteuid() != 0:
        raise UserError("needs root for namespaces, qdiscs and cgroups", fix=f"run: sudo python run_scenario.py {args.scenario}")
    Run(scenario, args.quick, args.quiet, Path(args.out) if args.out else None, args.oversubscribe).execute()
    return 0


def run_study_file(args: argparse.Namespace) -> int:
    from splitbed.scenarios.engines import run_study
    from splitbed.scenarios.study import load_study

    study = load_study(args.study, quick=args.quick)  # every run resolved and checked first
    if args.validate:
        print(f"{args.study}: {len(study.runs)} runs, valid")
        return 0
    if os.geteuid() != 0 and args.engine == "local":
        raise UserError("needs root for namespaces, qdiscs and cgroups", fix=f"run: sudo python run_scenario.py --study {args.study}")
    return run_study(study, Path(args.out) if args.out else None, engine=args.engine, address=args.address,
                     retries=args.retries, quiet=args.quiet, oversubscribe=args.oversubscribe,
                     retry_failed=args.retry_failed)



def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, raise_terminated)  # an engine's stop: like Ctrl-C, rows kept, all removed
    if os.environ.get("SPLITBED_END_WITH_PARENT"):  # a study's run: SIGTERM when its worker dies
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    try:
        if args.check:
            return run_reporting_user_errors(lambda: run_check(args.json), args.debug)
        if args.cleanup:
            return run_reporting_user_errors(run_cleanup, args.debug)
        if args.study:
            return run_reporting_user_errors(lambda: run_study_file(args), args.debug)
        return run_reporting_user_errors(lambda: run_scenario_file(args), args.debug)
    except KeyboardInterrupt as err:
        print("terminated" if isinstance(err, Terminated) else "interrupted", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
