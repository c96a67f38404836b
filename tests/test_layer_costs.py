"""Layer classes and per-class device costs (splitbed/devices/layer_costs.py)."""

import math
import statistics
import time

import pytest
import torch
from torch import nn

from splitbed.devices.layer_costs import (
    CLASSES,
    class_ms,
    fit_costs,
    layer_class,
    predict_ms,
)


def test_each_layer_falls_in_its_class():
    assert layer_class(nn.Conv2d(8, 8, 3, groups=8)) == "depthwise"
    assert layer_class(nn.Conv2d(8, 16, 1)) == "gemm"
    assert layer_class(nn.Linear(8, 4)) == "gemm"
    assert layer_class(nn.Conv2d(8, 16, 3)) == "dense"
    assert layer_class(nn.Conv2d(8, 16, 3, groups=2)) == "dense"  # grouped, not one filter per channel
    assert layer_class(nn.BatchNorm2d(8)) == layer_class(nn.ReLU()) == "other"


def test_class_times_split_the_forward_time_where_the_work_is():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1, groups=64),
                        nn.Conv2d(64, 64, 1)).eval()
    times = class_ms(net, torch.zeros(1, 3, 64, 64))
    assert set(times) == set(CLASSES) and all(v >= 0 for v in times.values())
    assert times["dense"] > 0 and times["depthwise"] > 0 and times["gemm"] > 0
    dense_only = class_ms(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1)).eval(), torch.zeros(1, 3, 64, 64))
    assert dense_only["dense"] > 0.8 * sum(dense_only.values())  # the hooks' own time is not a class


class ConvThenSort(nn.Module):
    """A layer, then work in forward code outside any layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        y = self.conv(x)
        for _ in range(20):
            y = torch.sort(y.flatten(), stable=True).values.view_as(y)
        return y


def test_work_outside_any_layer_counts_as_other_and_the_classes_add_up_to_the_plain_time():
    net, x = ConvThenSort().eval(), torch.zeros(1, 3, 64, 64)
    times = class_ms(net, x)
    assert times["other"] > 3 * times["gemm"]
    with torch.no_grad():
        plain = []
        for _ in range(7):
            begun = time.perf_counter()
            net(x)
            plain.append(1000 * (time.perf_counter() - begun))
    assert 0.5 < sum(times.values()) / statistics.median(plain) < 2


def synthetic_host(n: int = 8) -> dict[str, dict[str, float]]:
    """Networks with different mixes of the classes (deterministic)."""
    return {f"net{i}": {c: 1.0 + ((i * 7 + j * 3) % 5) * (1 + j) for j, c in enumerate(CLASSES)} for i in range(n)}


def test_fitted_costs_predict_networks_left_out_of_the_fit():
    host, truth = synthetic_host(), {"dense": 2.0, "gemm": 3.0, "depthwise": 8.0, "other": 1.5}
    device = {n: predict_ms(truth, t) for n, t in host.items()}
    fit = fit_costs(host, {n: device[n] for n in list(host)[:6]})
    for n in list(host)[6:]:
        assert predict_ms(fit["costs"], host[n]) == pytest.approx(device[n], rel=0.05)
    assert fit["costs"]["depthwise"] > 2 * fit["costs"]["dense"]  # the mix is read, not one scale


def test_networks_outside_the_fit_do_not_move_it():
    host, truth = synthetic_host(), {"dense": 2.0, "gemm": 3.0, "depthwise": 8.0, "other": 1.5}
    device = {n: predict_ms(truth, host[n]) for n in list(host)[:6]}
    changed = {**host, **{n: {c: 100.0 for c in CLASSES} for n in list(host)[6:]}}
    assert fit_costs(changed, device) == fit_costs(host, device)


def test_noise_around_one_scale_is_fitted_as_one_scale():
    """Left out in turn, per-class costs fitted to noise predict worse than one scale: the ridge is strong."""
    host = synthetic_host(10)
    noise = [1.15, 0.87, 1.1, 0.9, 1.2, 0.85, 1.05, 0.95, 1.12, 0.88]
    device = {n: 4.0 * sum(t.values()) * e for (n, t), e in zip(host.items(), noise, strict=True)}
    fit = fit_costs(host, device)
    assert fit["ridge"] >= 10
    costs = list(fit["costs"].values())
    assert max(costs) / min(costs) < 1.2


def test_a_device_that_slows_every_class_alike_gets_one_scale():
    host = synthetic_host()
    device = {n: 4.0 * sum(t.values()) for n, t in host.items()}
    fit = fit_costs(host, device)
    assert all(math.isclose(k, 4.0, rel_tol=0.02) for k in fit["costs"].values())

