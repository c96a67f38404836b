"""AGLOP's profile from the command line (root: the edge side is timed inside a quota'd cgroup).

    python -m splitbed.aglop profile [--model M] [--device D] [--rebuild] [--json PATH] [--mbps 0.5,1,3] [--sweep]

Prints every option (split, codec setting) with its size, accuracy drop and times, and what the
planner would choose at a few uplink rates; --sweep: every option it chooses anywhere from 0.3 to
200 Mbit/s and 2 to 20 ms each way, with a fresh or an idle-restarted TCP window.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

import numpy as np

from splitbed.aglop.planner import Planner
from splitbed.aglop.profile import build_profile, load_options
from splitbed.devices.calibration import node_settings
from splitbed.devices.catalog import get_profile
from splitbed.devices.cgroups import CgroupManager
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.models import get_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m splitbed.aglop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("profile", help="build (or show the cached) AGLOP profile")
    cmd.add_argument("--model", default="efficientnet_lite0")
    cmd.add_argument("--device", default="rpi4")
    cmd.add_argument("--rebuild", action="store_true", help="measure again instead of using the cache")
    cmd.add_argument("--json", help="write the profile here")
    cmd.add_argument("--mbps", default="0.5,1,2,4,8", help="uplink rates to show the planner's choice at")
    cmd.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay for those choices")
    cmd.add_argument("--sweep", action="store_true", help="every option chosen anywhere on a grid of rates and delays")
    args = parser.parse_args(argv)
    check_output_path(args.json, "--json")
    if os.geteuid() != 0:
        raise UserError("the profile times the edge inside a cgroup: run as root", fix="sudo .venv/bin/python -m splitbed.aglop ...")
    cgroups = CgroupManager(f"splitbed-aglop-{os.getpid()}")
    try:
        profile = build_profile(get_model(args.model), node_settings(get_profile(args.device), cgroups), cgroups,
                                rebuild=args.rebuild)
    finally:
        cgroups.remove_all()
    options = load_options(profile)
    print(f"{'split':<12}{'codec':<6}{'params':<28}{'bytes':>9}{'drop':>6}{'head':>8}{'enc':>6}{'dec':>6}{'tail':>7}")
    for o in options:
        print(f"{o.split:<12}{o.codec or '-':<6}{json.dumps(o.params):<28}{o.bytes_mean:>9.0f}{o.drop_pts:>6.2f}"
              f"{o.head_ms:>8.1f}{o.encode_ms:>6.1f}{o.decode_ms:>6.1f}{o.tail_ms:>7.1f}")
    planner = Planner(options)
    print(f"\nplanner's choice (under 1 point, one-way delay {args.delay_ms} ms):")
    for mbps in (float(x) for x in args.mbps.split(",")):
        planner.current = None
        d = planner.choose(mbps * 1e6, 2 * args.delay_ms)
        print(f"  {mbps:>5} Mbit/s: {d.option.split} {d.option.codec} {json.dumps(d.option.params)} "
              f"-> {d.predicted_ms:.1f} ms predicted")
    if args.sweep:
        chosen: collections.Counter = collections.Counter()
        for mbps in np.geomspace(0.3, 200, 60):
            for delay in (2, 5, 10, 20):
                for window in (10, None):
                    planner.current = None
                    o = planner.choose(mbps * 1e6, 2 * delay, window).option  # the delay each way
                    chosen[f"{o.split} {o.codec} {json.dumps(o.params)}".replace("  ", " ")] += 1
        print("\noptions chosen on 60 rates (0.3-200 Mbit/s) x 4 delays (2-20 ms) x 2 windows:")
        for option, count in chosen.most_common():
            print(f"  {count:>4}  {option}")
    if args.json:
        Path(args.json).write_text(json.dumps(profile, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
