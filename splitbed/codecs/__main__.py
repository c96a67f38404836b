"""python -m splitbed.codecs calibrate MODEL [--splits a,b] [--refit]: fit DISC's state per split.

Fits on datasets.calibration_samples(model), which never overlap the evaluation samples, and writes
one .npz per split under the calibration cache (~/.cache/splitbed/calibration, or $SPLITBED_CACHE).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from splitbed.codecs.disc_calibration import CalibrationStore
from splitbed.errors import run_reporting_user_errors
from splitbed.models import EDGE_ONLY, SERVER_ONLY, get_model
from splitbed.models.datasets import calibration_samples


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m splitbed.codecs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="fit DISC for a model's split points")
    cal.add_argument("model")
    cal.add_argument("--splits", help="comma-separated split points (default: all inner ones)")
    cal.add_argument("--refit", action="store_true", help="fit again even where a file exists")
    cal.add_argument("--cache", help="calibration folder")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    def body() -> None:
        model = get_model(args.model)
        splits = args.splits.split(",") if args.splits else [
            s for s in model.split_points if s not in (SERVER_ONLY, EDGE_ONLY)]
        for split in splits:
            model.index(split)  # unknown names fail before any work
        store = CalibrationStore(args.cache)
        inputs = None
        for split in splits:
            if inputs is None:
                inputs = torch.stack([s.tensor for s in calibration_samples(model)])
            start = time.time()
            state = store.ensure(model, split, lambda batch=inputs: batch, refit=args.refit)
            print(f"{model.name} {split}: {state.fingerprint} ({time.time() - start:.1f} s) "
                  f"-> {store.path(model.name, split)}")

    return run_reporting_user_errors(body, args.debug)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
