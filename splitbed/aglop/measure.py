"""Time every split and codec option on one side, as a program placed in a node's cgroup.

    python -m splitbed.aglop.measure edge|server --model NAME --threads N --options FILE

Loads the model and one real input first (unconstrained), prints "ready", waits for "go" on stdin
(by then the caller has moved it into the node's cgroup), then prints one JSON line:
edge: head_ms per split and encode_ms per option key; server: tail_ms per split and decode_ms per key.
Medians of RUNS timed calls after one warm-up call, batch 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from splitbed.aglop.profile import Option
from splitbed.codecs import CalibrationStore, decode, get_codec
from splitbed.models import get_model
from splitbed.models.datasets import evaluation_samples
from splitbed.models.partition import EDGE_ONLY, SERVER_ONLY
from splitbed.models.split_costs import median_ms

RUNS = 9


@torch.no_grad()
def measure(side: str, model_name: str, options: list[dict]) -> dict:
    model = get_model(model_name)
    store = CalibrationStore()
    x = next(iter(evaluation_samples(model))).tensor[None]
    splits = list(dict.fromkeys(o["split"] for o in options))
    acts = model.activations(x, splits)
    codecs = {}
    for o in map(Option.from_dict, options):
        if o.codec:
            extra = {"calibration": store.get(model.name, o.split)} if o.codec == "disc" else {}
            codecs[o.key] = (o.split, get_codec(o.codec, **o.params, **extra))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return {}
    if side == "edge":
        heads = {s: model.head(s) for s in splits}
        head_ms = [0.0 if s == SERVER_ONLY else median_ms(heads[s], x, RUNS) for s in splits]
        # a longer head is never faster: what looks so is noise (a CFS period boundary, a neighbour)
        monotone = np.maximum.accumulate(head_ms)
        return {"head_ms": dict(zip(splits, map(float, monotone), strict=True)),
                "encode_ms": {k: median_ms(c.encode, acts[s], RUNS) for k, (s, c) in codecs.items()}}
    tails = {s: model.tail(s) for s in splits if s != EDGE_ONLY}
    messages = {k: c.encode(acts[s]) for k, (s, c) in codecs.items()}
    return {"tail_ms": {s: median_ms(t, acts[s], RUNS) for s, t in tails.items()},
            "decode_ms": {k: median_ms(lambda m: decode(m, store), m, RUNS) for k, m in messages.items()}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=("edge", "server"))
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--options", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.side, args.model, json.loads(Path(args.options).read_text()))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
