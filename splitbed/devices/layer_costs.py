"""Where a network spends its time, per layer class, and what each class costs on a device.

ARM and x86 cores (and ncnn and PyTorch) do not spend their time on the same layers in the same
proportions: a depthwise convolution, memory-bound here, may be relatively cheaper or dearer there
than a dense one. So a device's time for a network is modelled as the sum over layer classes of
k[class] x (this machine's one-thread time in that class). The k are fitted per device on networks
with published times (one half of them); the other half checks the fit.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

CLASSES = ("dense", "gemm", "depthwise", "other")
PASSES = 7
RIDGE = (0.01, 0.1, 1.0, 10.0, 100.0)  # pull of the classes' log costs toward their mean, chosen leave-one-out


def layer_class(module) -> str:
    """dense: a convolution with a spatial kernel (grouped ones too); gemm: a 1x1 convolution or a
    fully connected layer (a matrix product); depthwise: one filter per channel; other: the rest
    (normalisation, activations, pooling: memory-bound elementwise work)."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise"
        return "gemm" if module.kernel_size == (1, 1) and module.groups == 1 else "dense"
    return "gemm" if isinstance(module, nn.Linear) else "other"


def median_ms(forward, seconds: float = 0.0, least: int = PASSES) -> float:
    """Median ms of back-to-back calls, at least `least` of them and for at least `seconds`, after one
    untimed call. This host's speed moves within seconds: a sample of a few passes is one moment of it."""
    forward()
    times, end = [], time.perf_counter() + seconds
    while len(times) < least or time.perf_counter() < end:
        begun = time.perf_counter()
        forward()
        times.append((time.perf_counter() - begun) * 1000)
    return statistics.median(times)


def class_ms(model, x, seconds: float = 0.0) -> dict[str, float]:
    """The network's one-thread forward time on this machine (the median of at least PASSES passes and
    `seconds` of them, no hooks), split by layer class in the proportions timed with a hook around every
    leaf layer; time outside any leaf (additions, concatenations in forward code) counts as `other`."""
    import torch
    from torch import nn

    leaves, inside = [], set()
    for module in model.modules():
        if id(module) not in inside and (isinstance(module, (nn.Conv2d, nn.Linear)) or not list(module.children())):
            leaves.append(module)
            inside.update(id(m) for m in module.modules())
    spent, started = dict.fromkeys(CLASSES, 0.0), {}

    def before(module, _inputs):
        started[id(module)] = time.perf_counter()

    def after(module, _inputs, _output):
        spent[layer_class(module)] += time.perf_counter() - started[id(module)]

    hooks = [m.register_forward_pre_hook(before) for m in leaves] + [m.register_forward_hook(after) for m in leaves]
    passes = []
    with torch.no_grad():
        try:
            model(x)
            for _ in range(PASSES):
                spent.update(dict.fromkeys(CLASSES, 0.0))
                begun = time.perf_counter()
                model(x)
                passes.append((time.perf_counter() - begun, dict(spent)))
        finally:
            for hook in hooks:
                hook.remove()
        plain = median_ms(lambda: model(x), seconds)
    total, parts = sorted(passes, key=lambda p: p[0])[len(passes) // 2]
    parts["other"] += max(total - sum(parts.values()), 0.0)
    return {c: plain * parts[c] / total for c in CLASSES}


def _fit(times: np.ndarray, device_ms: np.ndarray, ridge: float) -> np.ndarray:
    from scipy.optimize import minimize

    def loss(log_k: np.ndarray) -> float:
        return float(np.sum(np.log(times @ np.exp(log_k) / device_ms) ** 2) + ridge * np.sum((log_k - log_k.mean()) ** 2))

    start = np.full(len(CLASSES), math.log(np.sum(device_ms) / np.sum(times)))
    return np.exp(minimize(loss, start, method="L-BFGS-B", bounds=[(-10, 10)] * len(CLASSES)).x)


def fit_costs(host: dict[str, dict[str, float]], device_ms: dict[str, float]) -> dict:
    """Per-class costs (device ms per ms of this machine's class time) fitted on the networks of
    `device_ms`, least squares in log time; the ridge is the one whose leave-one-out error over those
    same networks is least (nothing outside them is looked at)."""
    nets = sorted(device_ms)
    times = np.array([[host[n][c] for c in CLASSES] for n in nets])
    published = np.array([device_ms[n] for n in nets])

    def left_out_error(ridge: float) -> float:
        errors = []
        for i in range(len(nets)):
            keep = np.arange(len(nets)) != i
            k = _fit(times[keep], published[keep], ridge)
            errors.append(math.log(times[i] @ k / published[i]) ** 2)
        return statistics.mean(errors)

    ridge = min(RIDGE, key=left_out_error)
    return {"ridge": ridge, "costs": dict(zip(CLASSES, map(float, _fit(times, published, ridge)), strict=True))}


def predict_ms(costs: dict[str, float], times: dict[str, float]) -> float:
    return sum(costs[c] * times[c] for c in CLASSES)

