#!/usr/bin/env python3
"""Rate-accuracy-speed of every feature codec at the split points of EfficientNet-Lite0 and the
Fashion-MNIST CNN, measured side by side in one run.

    python benchmarks/codecs.py [--quick] [--json PATH] [--plot PATH]

Per (model, split, codec, setting): wire bytes per tensor including headers, reduction against fp32,
bits per value, order-0 entropy of the quantised symbols, labelled accuracy drop (Fashion-MNIST 10k
test set, 2k with --quick; Lite0: foolbox's 20 photos), top-1 agreement drop against the uncompressed
model (Lite0: the 20 labelled photos and their 240 views), encode/decode ms (1 thread, median of 50 tensors) and the
head's compute time at that split (1 thread, batch 1), timed right before each timed encode so that
`codec_share_pct` (median of (encode + decode) / head over those 50) compares like with like on a
host whose speed drifts. Every tensor is encoded on its own (batch 1), as a request would be.
DISC is calibrated on data disjoint from the evaluation data (datasets.calibration_samples).
The evaluation items are split in two halves by a hash of their id (a photo's views stay together):
per model and split, the smallest setting of each codec that stays under 1 point of loss on the
tuning half (Fashion-MNIST: labelled accuracy; Lite0: agreement) is chosen there and reported on the
other half, its bytes and its loss with a 95% bootstrap interval over items (photos): the frontier.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":  # run as a program: set before numpy and torch load (not when imported for PAGES)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # codec timings are single-threaded, as promised
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from splitbed.codecs import CalibrationStore, get_codec  # noqa: E402
from splitbed.codecs.criteria import ViewLosses, summarise  # noqa: E402
from splitbed.codecs.evaluation import NEAR_TIE_LOGITS, measure, near_ties, scores  # noqa: E402
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors  # noqa: E402
from splitbed.models import get_model  # noqa: E402
from splitbed.models.datasets import calibration_samples, evaluation_samples  # noqa: E402
from splitbed.testing.results_page import Page, pct, table  # noqa: E402

CRITERION_PTS = 1.0
HALVES = ("tune", "report")  # settings are chosen on the first and reported on the second
EVAL_THREADS = 2  # tails over the evaluation set; head and codec timings use 1


@dataclass
class Setup:
    criterion: str  # "accuracy" (labelled) or "agreement" (with the uncompressed model)
    quick_splits: list[str]
    splits: list[str]
    quick_items: int | None  # evaluation items with --quick (None: all)
    disc_steps: tuple[float, ...]
    quick_disc_steps: tuple[float, ...]
    quick_deadzones: tuple[float, ...]


SETUPS = {
    "fmnist_cnn": Setup("accuracy", ["conv1", "conv2", "conv3"], ["conv1", "conv2", "conv3"], 2000,
                        (0.8, 1.2, 1.6, 2.0, 2.5, 3.0), (1.2, 1.6, 2.0, 2.5), (0.5, 0.65)),
    "efficientnet_lite0": Setup("agreement", ["block3", "block8", "block15"], [f"block{i}" for i in range(3, 16)],
                                None, (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6), (0.25, 0.3, 0.35, 0.4, 0.5), (0.65,)),
}
DEADZONES = (0.5, 0.65)
JPEG_QUALITIES, QUICK_JPEG_QUALITIES = (50, 70, 85, 95), (85, 95)


def codec_grid(setup: Setup, quick: bool, calibration) -> list[tuple[str, dict]]:
    grid = [("raw", {}), ("zstd", {"level": 3}), ("int8", {"level": 3})]
    grid += [("jpeg", {"quality": q}) for q in (QUICK_JPEG_QUALITIES if quick else JPEG_QUALITIES)]
    steps = setup.quick_disc_steps if quick else setup.disc_steps
    deadzones = setup.quick_deadzones if quick else DEADZONES
    grid += [("disc", {"step": s, "deadzone": d, "calibration": calibration}) for d in deadzones for s in steps]
    return grid


def unit_of(sample_id: str) -> str:
    """The item a half holds whole: a photo with all its views ('photo#view3' -> 'photo')."""
    return sample_id.split("#", 1)[0]


def half_of(unit: str) -> str:
    return HALVES[hashlib.sha256(unit.encode()).digest()[0] % 2]


def on_half(row: dict, losses: ViewLosses, units: np.ndarray, halves: np.ndarray, half: str) -> dict:
    """A setting's bytes and losses over one half: mean wire bytes, reduction, bits per value, and per
    criterion the loss in points with its 95% interval from resampling units."""
    keep = halves == half
    mean_bytes = float(np.mean(np.asarray(row["item_bytes"])[keep]))
    values = row["fp32_bytes"] / 4
    return {"wire_bytes": mean_bytes, "reduction_pct": 100 * (1 - mean_bytes / row["fp32_bytes"]),
            "bits_per_value": mean_bytes * 8 / values, "items": int(keep.sum()),
            "losses": summarise(losses, units, keep)}


@torch.no_grad()
def bench_model(name: str, quick: bool, store: CalibrationStore, progress) -> list[dict]:
    setup = SETUPS[name]
    model = get_model(name)
    samples = list(evaluation_samples(model))
    if quick and setup.quick_items:
        samples = samples[: setup.quick_items]
    inputs = torch.stack([s.tensor for s in samples])
    labels = np.array([-1 if s.label is None else s.label for s in samples])
    label_sets = [() if s.label is None else (s.label,) for s in samples]
    units = np.array([unit_of(s.id) for s in samples])
    halves = np.array([half_of(u) for u in units])
    full = model.full()
    logits = torch.cat([full(inputs[i : i + 256]) for i in range(0, len(inputs), 256)])
    reference = logits.argmax(1).numpy()
    reference_probs = torch.softmax(logits, 1).numpy()
    tie_count = int(near_ties(logits).sum())
    calibration_inputs = None
    rows = []
    for split in setup.quick_splits if quick else setup.splits:
        head, tail = model.head(split), model.tail(split)
        acts = torch.cat([head(inputs[i : i + 256]) for i in range(0, len(inputs), 256)]).numpy()
        if calibration_inputs is None:
            calibration_inputs = torch.stack([s.tensor for s in calibration_samples(model)])
        calibration = store.ensure(model, split, lambda inputs=calibration_inputs: inputs)
        for codec_name, params in codec_grid(setup, quick, calibration):
            codec = get_codec(codec_name, **params)
            torch.set_num_threads(1)  # the head at batch 1 on one thread, timed alongside the codec
            rebuilt, row = measure(codec, acts, store, timing_items=min(50, len(acts)),
                                   head=lambda i, head=head: head(inputs[i : i + 1]))
            torch.set_num_threads(EVAL_THREADS)
            out = torch.cat([tail(torch.from_numpy(rebuilt[i : i + 256])) for i in range(0, len(rebuilt), 256)])
            coded = out.argmax(1).numpy()
            agreement_drop, accuracy_drop = scores(coded, reference, labels)
            losses = ViewLosses.of(reference_probs, coded, label_sets)
            halves_of_row = {half: on_half(row, losses, units, halves, half) for half in HALVES}
            row.pop("item_bytes")
            shown = {k: v for k, v in params.items() if k != "calibration"}
            rows.append({"model": name, "split": split, "codec": codec_name, "params": shown,
                         "criterion": setup.criterion, **row, "agreement_drop_pts": agreement_drop,
                         "accuracy_drop_pts": accuracy_drop, **halves_of_row,
                         "n_items": len(acts), "n_labelled": int((labels >= 0).sum()), "near_ties": tie_count})
            progress(rows[-1])
    return rows


def frontier(rows: list[dict]) -> list[dict]:
    """Per (model, split, codec): the smallest setting under the criterion on the tuning half, with the
    reporting half's bytes and loss (its interval beside it); the tuning half's loss is kept as such."""
    best: dict[tuple, dict] = {}
    for row in rows:
        drop = row["tune"]["losses"][row["criterion"]]["pts"]
        if drop is None or drop >= CRITERION_PTS:
            continue
        key = (row["model"], row["split"], row["codec"])
        if key not in best or row["tune"]["wire_bytes"] < best[key]["tune"]["wire_bytes"]:
            best[key] = row
    keep = ("model", "split", "codec", "params", "criterion", "order0_entropy_bits", "encode_ms", "decode_ms",
            "head_ms", "codec_share_pct", "near_ties")

    def order(key):
        return key[0], int(re.sub(r"\D", "", key[1]) or 0), key[2]

    def reported(row: dict) -> dict:
        report, loss = row["report"], row["report"]["losses"][row["criterion"]]
        return {**{k: row[k] for k in keep}, "wire_bytes": report["wire_bytes"], "reduction_pct": report["reduction_pct"],
                "bits_per_value": report["bits_per_value"], "n_items": report["items"],
                "drop_pts": loss["pts"], "drop_ci95_pts": (loss["lo"], loss["hi"]),
                "tune_drop_pts": row["tune"]["losses"][row["criterion"]]["pts"]}

    return [reported(best[key]) for key in sorted(best, key=order)]


def print_frontier(front: list[dict]) -> None:
    print(f"\nsmallest setting per codec under {CRITERION_PTS} point of loss on the tuning half "
          "(accuracy for fmnist_cnn, agreement for efficientnet_lite0), reported on the other half:")
    print(f"{'model':<19}{'split':<8}{'codec':<6}{'reduction':>10}{'bit/val':>8}{'drop (95% CI)':>22}{'tune drop':>10}"
          f"{'enc ms':>8}{'dec ms':>8}{'head ms':>8}{'share':>7}  params")
    for r in front:
        low, high = r["drop_ci95_pts"]
        print(f"{r['model']:<19}{r['split']:<8}{r['codec']:<6}{r['reduction_pct']:>9.2f}%{r['bits_per_value']:>8.3f}"
              f"{r['drop_pts']:>8.2f} ({low:5.2f},{high:5.2f}){r['tune_drop_pts']:>10.2f}"
              f"{r['encode_ms']:>8.2f}{r['decode_ms']:>8.2f}{r['head_ms']:>8.2f}"
              f"{r['codec_share_pct']:>6.1f}%  {json.dumps(r['params'])}")
    for model in dict.fromkeys(r["model"] for r in front):
        r = next(r for r in front if r["model"] == model)
        print(f"{model}: {r['near_ties']} of {r['n_items']} evaluation items have top-2 logits within "
              f"{NEAR_TIE_LOGITS} (they flip at almost any coding noise; 1 point = {r['n_items'] / 100:g} items)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    from splitbed.analysis.plots import finish

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), squeeze=False)
    for ax, name in zip(axes[0], models, strict=True):
        for codec in ("int8", "jpeg", "disc"):
            pts = [(r["bits_per_value"], r["accuracy_drop_pts"] if r["criterion"] == "accuracy"
                    else r["agreement_drop_pts"]) for r in rows if r["model"] == name and r["codec"] == codec]
            if pts:
                xs, ys = zip(*sorted(pts), strict=True)
                ax.scatter(xs, ys, label=codec, s=14)
        criterion = next(r["criterion"] for r in rows if r["model"] == name)
        ax.axhline(CRITERION_PTS, color="grey", linestyle="--", linewidth=1, label="1 point")
        ax.set_xscale("log")
        ax.set_xlabel("bits per value on the wire (log; fp32 = 32)")
        ax.set_ylabel(f"top-1 {criterion} drop (points)")
        ax.set_title(f"{name}: rate vs {criterion} loss, all splits")
        ax.legend()
    finish(fig, path, "DISC: our training-free design (KLT + DCT + Fisher-weighted quantiser + ANS); "
                      "bytes include the wire format's headers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer splits and test images (< 5 minutes)")
    parser.add_argument("--json", help="write all rows and the frontier here")
    parser.add_argument("--plot", default=None, help="rate-accuracy PNG (default: next to --json)")
    parser.add_argument("--models", default="fmnist_cnn,efficientnet_lite0")
    parser.add_argument("--cache", help="calibration folder (default: ~/.cache/splitbed/calibration)")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    torch.set_num_threads(EVAL_THREADS)
    store = CalibrationStore(args.cache)
    started = time.time()

    def progress(row):
        print(f"[{time.time() - started:6.1f}s] {row['model']} {row['split']} {row['codec']} {row['params']}: "
              f"{row['reduction_pct']:.2f}% agr-drop {row['agreement_drop_pts']:.2f}", file=sys.stderr, flush=True)

    unknown = [name for name in args.models.split(",") if name not in SETUPS]
    if unknown:
        raise UserError(f"--models: no benchmark set-up for {', '.join(unknown)}", fix=f"choose from {', '.join(SETUPS)}")
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, args.quick, store, progress)
    front = frontier(rows)
    print_frontier(front)
    plot_path = Path(args.plot) if args.plot else (Path(args.json).with_suffix(".png") if args.json else None)
    if plot_path:
        plot(rows, plot_path)
    if args.json:
        Path(args.json).write_text(json.dumps({"quick": args.quick, "criterion_pts": CRITERION_PTS,
                                               "seconds": time.time() - started, "frontier": front,
                                               "rows": rows}, indent=1) + "\n")
    print(f"\n{len(rows)} settings in {time.time() - started:.0f} s")
    return 0


def codecs_section(data: dict, found: dict) -> list[str]:
    front = data["frontier"]
    splits = list(dict.fromkeys((r["model"], r["split"]) for r in front))
    rows = []
    for model, split in splits:
        mine = {r["codec"]: r for r in front if (r["model"], r["split"]) == (model, split)}
        disc = mine.get("disc")
        rows.append([model, split, mine["disc"]["criterion"] if disc else "-",
                     f"{pct(disc['reduction_pct'])} ({disc['bits_per_value']:.2f})" if disc else "-",
                     "{:.2f} ({:.2f}, {:.2f})".format(disc["drop_pts"], *disc["drop_ci95_pts"]) if disc else "-",
                     pct(mine.get("jpeg", {}).get("reduction_pct")), pct(mine.get("int8", {}).get("reduction_pct")),
                     f"{disc['encode_ms'] + disc['decode_ms']:.2f}" if disc else "-",
                     f"{disc['head_ms']:.2f}" if disc else "-", pct(disc["codec_share_pct"], 1) if disc else "-"])
    return [f"Smallest setting of each codec with under {data['criterion_pts']} point of loss on one half of the "
            "evaluation items (criterion per row: `accuracy` = labelled top-1, `agreement` = top-1 agreement with "
            "the uncompressed model), its size and loss measured on the other half (95% interval over items; a "
            "photo's views stay in one half); bytes include headers; share = DISC encode + decode over the head's "
            "time.", "",
            *table(["model", "split", "criterion", "DISC reduction (bit/value)", "DISC loss, pts (95% CI)", "JPEG",
                    "int8", "DISC enc + dec ms", "head ms", "share"], rows)]


def codecs_headline(data: dict, found: dict) -> list[list[str]]:
    """One row per model; Lite0's is left to disc_accuracy when that is measured."""
    front = [r for r in data["frontier"] if r["codec"] == "disc"]
    rows = []
    for model in dict.fromkeys(r["model"] for r in front):
        if model == "efficientnet_lite0" and "disc_accuracy" in found:
            continue  # measured as the seed states it there
        mine = [r for r in front if r["model"] == model]
        rows.append([f"DISC on {model}", f"{min(r['reduction_pct'] for r in mine):.1f}-"
                     f"{max(r['reduction_pct'] for r in mine):.1f}% smaller than fp32 at {len(mine)} splits; "
                     f"{mine[0]['criterion']} loss {min(r['drop_pts'] for r in mine):.2f}-"
                     f"{max(r['drop_pts'] for r in mine):.2f} points on held-out items (each setting chosen under "
                     f"1 point on the other half)"])
    return rows


PAGES = [Page("codecs", "Codecs: size against accuracy", order=20, argv=["-m", "benchmarks.codecs", "--quick"],
              section=codecs_section, headline=codecs_headline, headline_order=30)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
