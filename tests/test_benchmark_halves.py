"""Selections made on one half, numbers reported from the other (benchmarks/codecs.py and
benchmarks/disc_accuracy.py): a setting that only looks good on the half it is reported on is never
chosen, and the bytes reported are the reporting half's."""

import numpy as np
import pytest

from benchmarks.codecs import HALVES, frontier, half_of, on_half, unit_of
from benchmarks.disc_accuracy import sizes_by_half
from splitbed.codecs.criteria import ViewLosses


def row(step: float, tune_drop: float, report_drop: float, tune_bytes: float, report_bytes: float) -> dict:
    loss = {"pts": None, "lo": None, "hi": None}
    return {"model": "m", "split": "block5", "codec": "disc", "params": {"step": step}, "criterion": "accuracy",
            "order0_entropy_bits": None, "encode_ms": 1.0, "decode_ms": 1.0, "head_ms": 10.0, "codec_share_pct": 20.0,
            "near_ties": 0,
            "tune": {"wire_bytes": tune_bytes, "reduction_pct": 0.0, "bits_per_value": 0.0, "items": 50,
                     "losses": {"accuracy": {**loss, "pts": tune_drop}}},
            "report": {"wire_bytes": report_bytes, "reduction_pct": 90.0, "bits_per_value": 1.0, "items": 50,
                       "losses": {"accuracy": {"pts": report_drop, "lo": report_drop - 1, "hi": report_drop + 1}}}}


def test_the_frontier_chooses_on_the_tuning_half_and_reports_the_other():
    # step 0.8 passes only on the reporting half; step 0.4 passes on the tuning half
    rows = [row(0.8, tune_drop=1.5, report_drop=0.2, tune_bytes=100, report_bytes=100),
            row(0.4, tune_drop=0.5, report_drop=1.2, tune_bytes=200, report_bytes=210)]
    (chosen,) = frontier(rows)
    assert chosen["params"] == {"step": 0.4}
    assert chosen["wire_bytes"] == 210 and chosen["drop_pts"] == 1.2 and chosen["drop_ci95_pts"] == pytest.approx((0.2, 2.2))
    assert chosen["tune_drop_pts"] == 0.5


def test_a_photos_views_fall_in_one_half_and_the_halves_are_about_even():
    assert unit_of("n01440764_tench#view3") == unit_of("n01440764_tench") == "n01440764_tench"
    halves = [half_of(f"item{i}") for i in range(2000)]
    assert set(halves) == set(HALVES) and 900 < halves.count("tune") < 1100


def test_bytes_and_losses_over_one_half_only():
    units = np.array(["a", "a", "b", "c"])
    halves = np.array(["tune", "tune", "report", "report"])
    probs = np.array([[0.9, 0.1]] * 4)
    losses = ViewLosses.of(probs, np.array([0, 1, 1, 0]), [(0,), (0,), (0,), (0,)])
    measured = {"item_bytes": [10, 30, 100, 300], "fp32_bytes": 800}
    report = on_half(measured, losses, units, halves, "report")
    assert report["wire_bytes"] == 200 and report["reduction_pct"] == 75.0 and report["items"] == 2
    assert report["losses"]["accuracy"]["pts"] == 50.0  # b lost its right answer, c kept it
    sizes = sizes_by_half(np.array([10, 30, 100, 300]), halves, 800)
    assert sizes["wire_bytes"] == 200 and sizes["tune_wire_bytes"] == 20 and sizes["tune_reduction_pct"] == 97.5


def test_label_free_drops_are_counted_inside_the_labelled_interval_per_split():
    from benchmarks.disc_accuracy import estimate_rows

    def entry(split, labelled, lo, hi, calibrated, expected, codec="disc"):
        return {"split": split, "codec": codec, "report": {
            "accuracy": {"pts": labelled, "lo": lo, "hi": hi}, "calibrated": {"pts": calibrated},
            "expected": {"pts": expected}}}

    data = {"rows": [entry("block4", 1.0, 0.5, 1.5, 1.2, 0.2), entry("block4", 2.0, 1.0, 3.0, 0.9, 0.3),
                     entry("block4", 9.0, 0.0, 9.9, 9.0, 9.0, codec="jpeg"), entry("block8", None, None, None, 0.1, 0.1)]}
    assert estimate_rows(data) == [["block4", "2", "1 of 2", "-0.45", "0 of 2", "-1.25"]]
