"""python -m splitbed.analysis {report RUN_DIR | compare RUN_DIR RUN_DIR ... --out DIR | model RUN_DIR |
memory RUN_DIR ...}"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from splitbed.analysis.judgement import model_errors
from splitbed.analysis.report import compare, memory_table, report
from splitbed.app.breakdown import read_rows
from splitbed.errors import run_reporting_user_errors


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m splitbed.analysis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="summary.md and plots/*.png for one run folder")
    rep.add_argument("run_dir")
    cmp_ = sub.add_parser("compare", help="one table and one figure across run folders")
    cmp_.add_argument("run_dirs", nargs="+")
    cmp_.add_argument("--out", required=True)
    mod = sub.add_parser("model", help="the latency model against the run's measured requests (JSON), per method")
    mod.add_argument("run_dir")
    mem = sub.add_parser("memory", help="the edge's memory per run: predicted, limit, node peak, status (a table)")
    mem.add_argument("run_dirs", nargs="+", help="run folders (a study's runs/*)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    def body() -> None:
        if args.command == "report":
            drawn = report(args.run_dir)
            print(f"plots: {', '.join(drawn)} in {args.run_dir}/plots")
        elif args.command == "memory":
            print(memory_table([Path(d) for d in args.run_dirs]))
        elif args.command == "model":
            rows = read_rows(Path(args.run_dir) / "requests.csv")
            per_method = {m: model_errors([r for r in rows if r["method"] == m]) for m in dict.fromkeys(
                r["method"] for r in rows)}
            print(json.dumps({"all": model_errors(rows)["overall"],
                              **{m: e["overall"] for m, e in per_method.items()}}, indent=1))
        else:
            rows = compare(args.run_dirs, args.out)
            print(f"{len(rows)} row(s): {args.out}/compare.md, compare.csv, compare.png")

    return run_reporting_user_errors(body, args.debug)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
