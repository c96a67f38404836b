"""A tiny user model for tests of the python:package.module:function path."""

import torch
from torch import nn


def build():
    torch.manual_seed(0)
    stages = [
        ("conv", nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())),
        ("pool", nn.AdaptiveAvgPool2d(2)),
        ("fc", nn.Sequential(nn.Flatten(), nn.Linear(16, 3))),
    ]
    return stages, (1, 8, 8)
