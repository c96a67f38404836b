"""A small 3-conv CNN for Fashion-MNIST, trained here by train_fmnist.py; checkpoint in weights/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from splitbed.errors import UserError
from splitbed.models.partition import SplitModel

WEIGHTS = Path(__file__).resolve().parent / "weights" / "fmnist_cnn.pt"
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics (of x / 255)


def conv_block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def make_stages() -> list[tuple[str, nn.Module]]:
    return [
        ("conv1", conv_block(1, 32, pool=True)),  # 32 x 14 x 14
        ("conv2", conv_block(32, 64, pool=True)),  # 64 x 7 x 7
        ("conv3", conv_block(64, 128, pool=True)),  # 128 x 3 x 3
        ("classifier", nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128 * 3 * 3, 10))),
    ]


def preprocess(image) -> torch.Tensor:
    """A 28x28 uint8 image (array or PIL) -> normalised 1x28x28 float tensor."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy((array - MEAN) / STD).reshape(1, 28, 28)


def build(name: str = "fmnist_cnn", weights: Path = WEIGHTS) -> SplitModel:
    stages = make_stages()
    if not weights.exists():
        raise UserError("fmnist_cnn checkpoint is missing", where=str(weights),
                        fix="train it: python -m splitbed.models.train_fmnist")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    nn.Sequential(*(m for _, m in stages)).load_state_dict(state, strict=True)
    return SplitModel(name=name, stages=stages, input_shape=(1, 28, 28), num_classes=10,
                      preprocess=preprocess, description="3-conv CNN trained on Fashion-MNIST",
                      default_dataset="fashion-mnist-test")
