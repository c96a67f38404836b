"""The timing-only CNN builders match the published variants' parameter counts and produce 1000 logits."""

from __future__ import annotations

import pytest
import torch

from splitbed.devices.architectures import ARCHITECTURES, INPUT_SIZE

PARAMS = {
    "squeezenet1_1": 1.235e6, "mobilenet_v1": 4.23e6, "mobilenet_v2": 3.50e6, "mobilenet_v3_large": 5.48e6,
    "shufflenet_v2_x1_0": 2.28e6, "mnasnet1_0": 4.38e6, "regnet_y_400mf": 4.34e6,
    "googlenet": 7.01e6,  # with its true 5x5 branch (ncnn's Caffe model); torchvision's 3x3 variant has 6.62M
    "resnet18": 11.69e6, "resnet50": 25.56e6, "alexnet": 60.97e6, "vgg16": 138.36e6,
}


def test_registry_covers_every_architecture() -> None:
    assert set(ARCHITECTURES) == set(PARAMS) == set(INPUT_SIZE)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_count_and_output_shape(name: str) -> None:
    model = ARCHITECTURES[name]().eval()
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(PARAMS[name], rel=0.02), f"{name}: {n:,} parameters"
    size = INPUT_SIZE[name]
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, size, size))
    assert out.shape == (1, 1000)


def test_every_published_latency_names_a_workload_and_one_half() -> None:
    """devices.yaml's published tables time only networks the workload can build, and each falls in
    exactly one of the cross-model check's declared halves."""
    from benchmarks.device_models import FIT_HALF, HELD_OUT
    from splitbed.devices.catalog import load_profiles

    assert not set(FIT_HALF) & set(HELD_OUT)
    tables = [p.published for p in load_profiles().values() if p.published]
    assert len(tables) >= 4
    for published in tables:
        assert set(published.ms) <= set(ARCHITECTURES) | {"efficientnet_b0"}
        assert set(published.ms) <= set(FIT_HALF) | set(HELD_OUT)
