#!/usr/bin/env python3
"""DISC's accuracy loss on EfficientNet-Lite0 as the seed paper states it, on a photo set that can
resolve one point, tuned on one half of the photos and reported on the other.

    .venv/bin/python -m splitbed.models.photos fetch        # once (or: make photos)
    .venv/bin/python benchmarks/disc_accuracy.py [--quick] [--json PATH]
    .venv/bin/python benchmarks/disc_accuracy.py --dataset imagenet-folder:PATH   # your own labelled ImageNet images

With --dataset imagenet-folder:PATH the set is your folder instead (splitbed/models/imagenet_folder.py:
the layouts ImageNet ships in), one view per image, each image in the half its bytes hash to.

The set: foolbox's 20 labelled ImageNet photos plus the photographs of two Debian packages
(splitbed/models/photos.py: Tux Paint's stamps, GCompris's photo activities), PHOTO_VIEWS views each
(the whole photo, then seeded crops/flips/brightness). Every photo falls in the tuning or the
reporting half by a hash of its bytes; its views stay together. DISC's calibration is fitted on other
photos again (scikit-image's and scikit-learn's, datasets.calibration_samples).

Per split and codec setting, on each half: wire bytes (headers included), reduction against fp32, and
the loss under three criteria with 95% bootstrap intervals over photos (splitbed/codecs/criteria.py):
labelled top-1 accuracy drop, expected accuracy drop under the reference's probabilities, the same
under its probabilities recalibrated by one temperature fitted on the tuning half's labelled views
(the calibrated drop), top-1 agreement (all views, and those the reference is confident about). The
reference's calibration on the labelled views, before and after, says how far the expected drops can
stand in for the labelled one.

Choices are made on the tuning half only: per split and codec (DISC, JPEG, int8), the setting with
the fewest bytes whose labelled and calibrated drops are both under 1 point there; those settings are
then reported on the reporting half (bytes and reduction too). The headline is the split whose chosen
DISC setting has the largest reduction on the tuning half, reported on the reporting half.
Codec time: (encode + decode) over the head's time at that split, both on one thread (median of the
first TIMED views).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a program: set before numpy and torch load (not when imported for PAGES)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # codec timings are single-threaded
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from splitbed.codecs import CalibrationStore, get_codec  # noqa: E402
from splitbed.codecs.criteria import ViewLosses, calibration, fit_temperature, softmax, summarise  # noqa: E402
from splitbed.codecs.evaluation import measure  # noqa: E402
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors  # noqa: E402
from splitbed.models import get_model  # noqa: E402
from splitbed.models.datasets import (  # noqa: E402
    FOOLBOX_PREFIX,
    calibration_samples,
    folder_of,
    folder_views,
    photo_views,
)
from splitbed.models.partition import batched  # noqa: E402
from splitbed.models.photos import load_manifest, summary  # noqa: E402
from splitbed.testing.results_page import Page, ci, pct, table  # noqa: E402

BAR_PTS = 1.0
SPLITS, QUICK_SPLITS = ["block4", "block5", "block6", "block8", "block11", "block13", "block15"], ["block8", "block15"]
# a tenth apart where the 1-point bar falls for most splits (0.6-1.2): between 0.8 and 1.2 the tuning
# half's calibrated drop at block8 went 0.65 -> 0.94 -> 1.23 points, so a coarser grid left bytes unspent
DISC_STEPS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0)
QUICK_DISC_STEPS = (0.5, 1.2, 2.0)
# (deadzone, dct): the default, a wider dead zone, and no DCT (the transform choice)
DISC_VARIANTS, QUICK_DISC_VARIANTS = ((0.65, True), (0.8, True), (0.65, False)), ((0.65, True),)
JPEG_QUALITIES, QUICK_JPEG_QUALITIES = (50, 70, 85, 95), (70, 95)
EVAL_THREADS, TIMED = 2, 20
HALVES = ("tune", "report")
SELECTED_BY = ("accuracy", "calibrated")  # both under the bar on the tuning half


def settings(quick: bool, calibration) -> list[tuple[str, dict]]:
    grid = [("int8", {"level": 3})]
    grid += [("jpeg", {"quality": q}) for q in (QUICK_JPEG_QUALITIES if quick else JPEG_QUALITIES)]
    grid += [("disc", {"step": s, "deadzone": dz, "dct": dct, "calibration": calibration})
             for dz, dct in (QUICK_DISC_VARIANTS if quick else DISC_VARIANTS)
             for s in (QUICK_DISC_STEPS if quick else DISC_STEPS)]
    return grid


@torch.no_grad()
def bench_split(model, split: str, views, inputs, reference_probs, calibrated_probs, store, calibration_inputs,
                quick: bool, progress) -> list[dict]:
    head, fast = model.head(split), model.for_batches()  # head: timed one view at a time, as the edge runs it
    acts = batched(fast.head(split), inputs).numpy()
    labels = [v.labels for v in views]
    photos = np.array([v.photo for v in views])
    halves = np.array([v.half for v in views])
    cal = store.ensure(model, split, lambda: calibration_inputs)
    rows = []
    for codec_name, params in settings(quick, cal):
        codec = get_codec(codec_name, **params)
        torch.set_num_threads(1)
        rebuilt, sizes = measure(codec, acts, store, timing_items=TIMED, head=lambda i: head(inputs[i : i + 1]))
        sizes.update(sizes_by_half(np.asarray(sizes.pop("item_bytes")), halves, sizes["fp32_bytes"]))
        torch.set_num_threads(EVAL_THREADS)
        coded_top1 = batched(fast.tail(split), torch.from_numpy(rebuilt)).argmax(1).numpy()
        losses = ViewLosses.of(reference_probs, coded_top1, labels, calibrated_probs)
        shown = {k: v for k, v in params.items() if k != "calibration"}
        row = {"split": split, "codec": codec_name, "params": shown, **sizes,
               **{half: summarise(losses, photos, halves == half) for half in HALVES}}
        rows.append(row)
        progress(row)
    return rows


def sizes_by_half(item_bytes: np.ndarray, halves: np.ndarray, fp32_bytes: int) -> dict:
    """The reporting half's mean wire bytes, reduction and bits per value (the numbers a row reports),
    and the tuning half's bytes and reduction (the ones a choice is made on)."""
    mean = {half: float(item_bytes[halves == half].mean()) for half in HALVES}
    return {"wire_bytes": mean["report"], "reduction_pct": 100 * (1 - mean["report"] / fp32_bytes),
            "bits_per_value": mean["report"] * 32 / fp32_bytes, "tune_wire_bytes": mean["tune"],
            "tune_reduction_pct": 100 * (1 - mean["tune"] / fp32_bytes)}


def foolbox_source(views) -> dict:
    """The sources-table row of foolbox's photos, counted from the views (the Debian rows come from the
    photo manifest), with the version and licence pip installed."""
    photos = {v.photo: bool(v.labels) for v in views if v.photo.startswith(FOOLBOX_PREFIX)}
    dist = importlib.metadata.distribution("foolbox")
    return {f"foolbox {dist.version} (PyPI)": {"photos": len(photos), "labelled": sum(photos.values()),
                                               "licences": {dist.metadata["License"]: len(photos)}}}


def folder_source(dataset: str, views) -> dict:
    """The sources-table row of a user's folder."""
    return {dataset: {"photos": len(views), "labelled": sum(bool(v.labels) for v in views), "licences": {"the user's": len(views)}}}


def passes(row: dict, half: str) -> bool:
    return all(row[half][c]["pts"] is not None and row[half][c]["pts"] < BAR_PTS for c in SELECTED_BY)


def choose(rows: list[dict]) -> list[dict]:
    """Per (split, codec): the fewest-bytes setting that passes on the tuning half, with its report-half
    numbers (the tuning half's are kept beside them, marked as such)."""
    chosen = {}
    for row in rows:
        key = (row["split"], row["codec"])
        if passes(row, "tune") and (key not in chosen or row["tune_wire_bytes"] < chosen[key]["tune_wire_bytes"]):
            chosen[key] = row
    return list(chosen.values())


def interval(entry: dict) -> str:
    return "-" if entry["pts"] is None else f"{entry['pts']:.2f} [{entry['lo']:.2f}, {entry['hi']:.2f}]"


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'split':<8}{'codec':<6}{'params':<38}{'bytes':>8}{'reduct.':>8}  {'labelled drop':<22}"
          f"{'expected drop':<22}{'calibrated drop':<22}{'flips all':<22}{'flips confident':<22}{'codec/head':>10}")
    for r in rows:
        params = json.dumps(r["params"])
        share = f"{r['codec_share_pct']:.1f}%" if "codec_share_pct" in r else "-"
        rep = r["report"]
        print(f"{r['split']:<8}{r['codec']:<6}{params:<38}{r['wire_bytes']:>8.0f}{r['reduction_pct']:>7.2f}%  "
              f"{interval(rep['accuracy']):<22}{interval(rep['expected']):<22}{interval(rep['calibrated']):<22}"
              f"{interval(rep['agreement']):<22}"
              f"{interval(rep['agreement_confident']):<22}{share:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two splits, fewer settings")
    parser.add_argument("--splits", help=f"comma-separated (default: {','.join(SPLITS)})")
    parser.add_argument("--json")
    parser.add_argument("--cache", help="calibration folder (default: ~/.cache/splitbed/calibration)")
    parser.add_argument("--dataset", help="imagenet-folder:PATH, your labelled ImageNet images (default: the photo set)")
    args = parser.parse_args()
    if args.dataset and not args.dataset.startswith("imagenet-folder:"):
        raise UserError(f"--dataset {args.dataset}: only imagenet-folder:PATH", fix="give imagenet-folder:PATH")
    check_output_path(args.json, "--json")
    started = time.time()
    torch.set_num_threads(EVAL_THREADS)
    model = get_model("efficientnet_lite0")
    if args.dataset:
        manifest, views = [], folder_views(model, folder_of(args.dataset))
        if not views:
            raise UserError(f"--dataset {args.dataset}: no images", fix="give a folder with labelled images")
    else:
        manifest, views = load_manifest(), photo_views(model)
    inputs = torch.stack([v.tensor for v in views])
    with torch.no_grad():
        logits = batched(model.for_batches().full(), inputs).numpy()
    reference_probs = softmax(logits)
    labels = [v.labels for v in views]
    halves = np.array([v.half for v in views])
    evaluation_set = {half: {"photos": len({v.photo for v in views if v.half == half}),
                             "views": int((halves == half).sum()),
                             "labelled_photos": len({v.photo for v in views if v.half == half and v.labels})}
                      for half in HALVES}
    tune = halves == "tune"
    if tune.all() or not tune.any():
        raise UserError(f"every image fell in the {halves[0]} half (a hash of its bytes)",
                        fix="give more images: each half needs some to choose on one and report on the other")
    if not any(s for s, t in zip(labels, tune, strict=True) if t):
        raise UserError("the tuning half holds no labelled view to fit the reference's temperature on",
                        fix="label more of the set (both halves need labelled images)")
    temperature = fit_temperature(logits[tune], [s for s, t in zip(labels, tune, strict=True) if t])
    calibrated_probs = softmax(logits, temperature)
    reference = {f"{half}{suffix}": calibration(probs[halves == half], [s for s, h in zip(labels, halves, strict=True) if h == half])
                 for half in HALVES for suffix, probs in (("", reference_probs), (f" at T={temperature:.2f}", calibrated_probs))}
    print(f"evaluation set: {len({v.photo for v in views})} photos, {len(views)} views; {evaluation_set}")
    print(f"reference calibration on labelled views: {reference}")
    calibration_inputs = torch.stack([s.tensor for s in calibration_samples(model)])
    store = CalibrationStore(args.cache)
    splits = args.splits.split(",") if args.splits else (QUICK_SPLITS if args.quick else SPLITS)
    unknown = [s for s in splits if s not in model.split_points[2:-1]]
    if unknown:
        raise UserError(f"--splits: {', '.join(unknown)} is not a Lite0 split point",
                        fix=f"choose from {', '.join(model.split_points[2:-1])}")

    def progress(row):
        print(f"[{time.time() - started:6.0f}s] {row['split']} {row['codec']} {row['params']}: "
              f"{row['reduction_pct']:.2f}%, report: labelled {interval(row['report']['accuracy'])}, "
              f"expected {interval(row['report']['expected'])}", file=sys.stderr, flush=True)

    rows = []
    for split in splits:
        rows += bench_split(model, split, views, inputs, reference_probs, calibrated_probs, store, calibration_inputs, args.quick,
                            progress)
    chosen = choose(rows)
    print_table(chosen, f"chosen on the tuning half (labelled and calibrated drop < {BAR_PTS} pt there), "
                        "reported on the reporting half with 95% bootstrap intervals over photos:")
    disc = [r for r in chosen if r["codec"] == "disc"]
    headline = max(disc, key=lambda r: r["tune_reduction_pct"]) if disc else None  # chosen on the tuning half
    if headline:
        print(f"\nlargest DISC reduction passing on the tuning half ({headline['tune_reduction_pct']:.2f}% there) at "
              f"{headline['split']} {headline['params']}; on the reporting half: {headline['reduction_pct']:.2f}% "
              f"({headline['wire_bytes']:.0f} B), "
              f"labelled drop {interval(headline['report']['accuracy'])}, calibrated drop "
              f"{interval(headline['report']['calibrated'])}, expected drop "
              f"{interval(headline['report']['expected'])} pts; reaches 98%: {headline['reduction_pct'] >= 98}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "quick": args.quick, "bar_pts": BAR_PTS, "seconds": time.time() - started,
            "tuned_on": "tune", "reported_on": "report", "evaluation_set": evaluation_set, "temperature": temperature,
            "sources": folder_source(args.dataset, views) if args.dataset else {**foolbox_source(views), **summary(manifest)},
            "reference_calibration": reference,
            "chosen": chosen, "headline": headline, "rows": rows}, indent=1) + "\n")
    print(f"\n{len(rows)} settings in {time.time() - started:.0f} s")
    return 0


NOT_MEASURED = {"pts": None, "lo": None, "hi": None}


def disc_accuracy_section(data: dict, found: dict) -> list[str]:
    sets = data["evaluation_set"]
    sources = [[name, row["photos"], row["labelled"], ", ".join(f"{k} ({v})" for k, v in row["licences"].items())]
               for name, row in data["sources"].items()]
    calib = [[half, f"{c['views']}", pct(c["accuracy_pct"], 1), pct(c["mean_confidence_pct"], 1),
              "-" if c["ece_pts"] is None else f"{c['ece_pts']:.1f}"] for half, c in data["reference_calibration"].items()]
    rows = [[r["split"], r["codec"], ", ".join(f"{k} {v}" for k, v in r["params"].items()), f"{r['wire_bytes']:.0f}",
             pct(r["reduction_pct"]), ci(r["report"]["accuracy"]), ci(r["report"]["expected"]),
             ci(r["report"].get("calibrated", NOT_MEASURED)),
             ci(r["report"]["agreement"]), ci(r["report"]["agreement_confident"]), pct(r.get("codec_share_pct"), 1)]
            for r in data["chosen"]]
    h = data["headline"]
    lines = [f"EfficientNet-Lite0 on {sets['tune']['photos'] + sets['report']['photos']} photos "
             f"({sets['tune']['views'] + sets['report']['views']} views): settings chosen on the tuning half "
             f"({sets['tune']['photos']} photos, {sets['tune']['labelled_photos']} labelled), reported on the "
             f"held-out half ({sets['report']['photos']} photos, {sets['report']['views']} views, "
             f"{sets['report']['labelled_photos']} labelled). Sources:", "",
             *table(["source", "photos", "labelled", "licences"], sources),
             "The reference (uncompressed) model on the labelled views, per half: how far its probabilities can "
             "stand in for labels, as it is and at the temperature fitted on the tuning half's labelled views "
             "(ECE = expected calibration error, 10 bins):", "",
             *table(["half", "labelled views", "top-1 accuracy", "mean confidence", "ECE pts"], calib),
             f"Per split and codec, the fewest-bytes setting whose labelled and calibrated drops were both under "
             f"{data['bar_pts']:g} point on the tuning half; its losses on the held-out half in points, with 95% "
             "bootstrap intervals over photos; share = (encode + decode) / head, one thread.", "",
             *table(["split", "codec", "setting", "bytes", "reduction", "labelled drop", "expected drop", "calibrated drop",
                     "flips, all", "flips, confident", "share"], rows)]
    if estimates := estimate_rows(data):
        lines += [f"Do the label-free drops stand in for the labelled one? Per split, every DISC setting measured "
                  f"there, on the held-out half: the calibrated drop (temperature {data['temperature']:.2f}, fitted on "
                  "the tuning half's labelled views) and the uncalibrated expected drop, each inside the labelled "
                  "drop's 95% interval or not, and the median of (estimate - labelled drop) in points:", "",
                  *table(["split", "settings", "calibrated inside", "calibrated miss", "uncalibrated inside",
                          "uncalibrated miss"], estimates)]
    if h:
        lines += [f"Largest DISC reduction chosen this way: {pct(h['reduction_pct'])} ({h['wire_bytes']:.0f} B) at "
                  f"{h['split']}; held-out labelled drop {ci(h['report']['accuracy'])}, calibrated drop "
                  f"{ci(h['report'].get('calibrated', NOT_MEASURED))}, expected drop {ci(h['report']['expected'])} points.", ""]
    return lines


def estimate_rows(data: dict) -> list[list[str]]:
    """Per split, over every DISC setting measured there, on the held-out half: how often the calibrated
    and the uncalibrated expected drops fall inside the labelled drop's 95% interval, and their median
    miss (estimate - labelled) in points."""
    out = []
    for split in dict.fromkeys(r["split"] for r in data["rows"]):
        rows = [r["report"] for r in data["rows"] if r["split"] == split and r["codec"] == "disc"
                and r["report"]["accuracy"]["pts"] is not None and r["report"].get("calibrated", {}).get("pts") is not None]
        if not rows:
            continue
        cells = [split, str(len(rows))]
        for name in ("calibrated", "expected"):
            inside = sum(r["accuracy"]["lo"] <= r[name]["pts"] <= r["accuracy"]["hi"] for r in rows)
            miss = statistics.median(r[name]["pts"] - r["accuracy"]["pts"] for r in rows)
            cells += [f"{inside} of {len(rows)}", f"{miss:+.2f}"]
        out.append(cells)
    return out


def disc_accuracy_headline(data: dict, found: dict) -> list[list[str]]:
    """The README's Lite0 row (codecs leaves it out when this is measured); none if nothing passed."""
    if not (h := data["headline"]):
        return []
    return [["DISC on efficientnet_lite0", f"{h['reduction_pct']:.1f}% smaller than fp32 at {h['split']}; "
             f"held-out accuracy drop: calibrated {ci(h['report'].get('calibrated', NOT_MEASURED))}, labelled "
             f"{ci(h['report']['accuracy'])} points (95% intervals; chosen on other photos)"]]


def disc_accuracy_notes(data: dict, found: dict) -> list[str]:
    """How to read the Lite0 row, under the README's table; only beside that row."""
    if not data["headline"]:
        return []
    labelled, report = data["headline"]["report"]["accuracy"], data["evaluation_set"]["report"]
    return [f"DISC's Lite0 row: the calibrated drop uses all {report['photos']} held-out photos, the labelled one "
            f"{report['labelled_photos']} labelled ones"
            + ("" if labelled["pts"] is None else f" (an interval {labelled['hi'] - labelled['lo']:.1f} points wide)")
            + ". [codecs.md](docs/codecs.md)", ""]


PAGES = [Page("disc_accuracy", "DISC: accuracy loss on held-out photos", order=50,
              argv=["-m", "benchmarks.disc_accuracy"], section=disc_accuracy_section,
              headline=disc_accuracy_headline, headline_order=40, notes=disc_accuracy_notes)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
