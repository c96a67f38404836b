"""python -m splitbed.models {list,profile,eval} ...: tables on stdout, JSON with --json."""

from __future__ import annotations

import argparse
import json
import sys

from splitbed.errors import check_output_path, run_reporting_user_errors
from splitbed.models.datasets import DATASET_NAMES
from splitbed.models.evaluate import evaluate
from splitbed.models.registry import get_model, model_names
from splitbed.models.split_costs import format_profile, profile_model


def write_json(path: str | None, data: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m splitbed.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="models and datasets by name")
    prof = sub.add_parser("profile", help="per-split shapes, sizes, value ranges and head/tail latency")
    prof.add_argument("model")
    prof.add_argument("--threads", type=int, default=1)
    prof.add_argument("--runs", type=int, default=10, help="timed runs per split (median)")
    prof.add_argument("--weights", help="weights file for torchvision:/timm:/python: models")
    prof.add_argument("--json")
    ev = sub.add_parser("eval", help="top-1/top-5 accuracy on a dataset")
    ev.add_argument("model")
    ev.add_argument("--dataset", required=True, help=", ".join(DATASET_NAMES))
    ev.add_argument("--limit", type=int)
    ev.add_argument("--weights")
    ev.add_argument("--json")
    ev.add_argument("--quiet", action="store_true")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    def body() -> None:
        check_output_path(getattr(args, "json", None), "--json")
        if args.command == "list":
            print("models:   " + ", ".join(model_names()))
            print("datasets: " + ", ".join(DATASET_NAMES))
        elif args.command == "profile":
            profile = profile_model(get_model(args.model, args.weights), threads=args.threads, runs=args.runs)
            print(format_profile(profile))
            write_json(args.json, profile)
        else:
            model = get_model(args.model, args.weights)
            scores = evaluate(model, args.dataset, limit=args.limit, quiet=args.quiet)
            result = {"model": model.name, "dataset": args.dataset, **scores.summary()}
            top1 = "n/a" if scores.top1 is None else f"{scores.top1:.4f}"
            top5 = "n/a" if scores.top5 is None else f"{scores.top5:.4f}"
            print(f"{model.name} on {args.dataset}: top-1 {top1}, top-5 {top5} "
                  f"over {scores.n_labelled} labelled of {scores.n_items} inputs")
            write_json(args.json, result)

    return run_reporting_user_errors(body, args.debug)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
