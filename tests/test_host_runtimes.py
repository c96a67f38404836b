"""benchmarks/host_runtimes.py's arithmetic: the fit half's scale per runtime, held-out ratios, floors."""

import math
from types import SimpleNamespace

import pytest

from benchmarks.device_models import FIT_HALF, HELD_OUT
from benchmarks.host_runtimes import device_entry, section


def test_a_runtime_that_scales_like_the_device_predicts_it_and_one_that_does_not_misses():
    """The device's times are 5x the 'ncnn' times here, and PyTorch's differ per network by 0.7-1.4x:
    ncnn's held-out ratios are all 1 with a floor of 1; PyTorch's worst held-out miss is at least its
    hindsight floor, which is the half log spread of its held-out ratios."""
    models = FIT_HALF + HELD_OUT
    ncnn = {m: 10.0 + i for i, m in enumerate(models)}
    wobble = {m: (0.7, 1.0, 1.4)[i % 3] for i, m in enumerate(models)}
    times = {"ncnn": ncnn, "pytorch": {m: ncnn[m] * wobble[m] for m in models}}
    device = SimpleNamespace(key="dev", published=SimpleNamespace(ms={m: 5 * ncnn[m] for m in models}))
    entry = device_entry(device, times)
    assert entry["ncnn"]["scale"] == pytest.approx(5.0)
    assert all(r == pytest.approx(1.0) for r in entry["ncnn"]["ratios"].values())
    assert entry["ncnn"]["floor_held_out"] == pytest.approx(1.0, abs=1e-4)
    held = [entry["pytorch"]["ratios"][m] for m in HELD_OUT]
    assert entry["pytorch"]["floor_held_out"] == pytest.approx(math.sqrt(max(held) / min(held)), rel=1e-4)
    worst = entry["pytorch"]["held_out"]["worst_ratio"]
    assert max(worst, 1 / worst) >= entry["pytorch"]["floor_held_out"] - 1e-4
    page = section({"cpu_model": "x", "rounds": 2, "run_s": 3.0, "fit_half": FIT_HALF, "held_out": HELD_OUT,
                    "host_ms": times, "devices": [entry]}, {})
    assert any(line.startswith("| dev | ncnn | 1.00x |") for line in page)
