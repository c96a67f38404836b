"""User models: torchvision or timm architectures with a weights file, or a module from a Python path.

Stages are derived for the common families (a `features` sequence plus a classifier, as in MobileNet,
EfficientNet, VGG; or stem + layer1..4 + fc, as in ResNet); anything else comes from a Python path
`package.module:function` returning (nn.Module or list of (name, module) stages) and the input shape.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from splitbed.errors import UserError
from splitbed.models.efficientnet_lite import tf_preprocess
from splitbed.models.partition import SplitModel

INSTALL_VISION = "install the optional extra '.[vision]' into .venv with pip (it brings its own torch build)"


def imagenet_preprocess(image, resolution: int = 224) -> torch.Tensor:
    """torchvision/timm convention: resize/crop like TF, then ImageNet mean/std."""
    x = (tf_preprocess(image, resolution) + 1.0) / 2.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (x - mean) / std


class Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


def stages_of(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """Split a common torchvision/timm classifier into sequential stages."""
    if hasattr(net, "features") and isinstance(net.features, nn.Sequential) and hasattr(net, "classifier"):
        pool = getattr(net, "avgpool", nn.AdaptiveAvgPool2d(1))
        stages = [(f"features{i}", m) for i, m in enumerate(net.features)]
        return stages + [("classifier", nn.Sequential(pool, Flatten(), net.classifier))]
    if all(hasattr(net, n) for n in ("conv1", "bn1", "layer1", "layer4", "fc")):
        stem = nn.Sequential(net.conv1, net.bn1, getattr(net, "relu", getattr(net, "act1", nn.ReLU())),
                             getattr(net, "maxpool", nn.Identity()))
        pool = getattr(net, "avgpool", getattr(net, "global_pool", nn.AdaptiveAvgPool2d(1)))
        layers = [(f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)]
        return [("stem", stem), *layers, ("classifier", nn.Sequential(pool, Flatten(), net.fc))]
    raise UserError(
        f"cannot derive split points for {type(net).__name__}",
        fix="give the model as python:package.module:function returning its list of (name, module) stages",
    )


def load_weights(net: nn.Module, weights: str | None) -> None:
    if weights is None:
        raise UserError("a torchvision/timm model needs a weights file (nothing is downloaded)",
                        fix="set model weights: PATH to a state_dict saved with torch.save")
    path = Path(weights)
    if not path.is_file():
        raise UserError("weights file not found", where=weights)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)


def from_library(library: str, arch: str, weights: str | None) -> SplitModel:
    try:
        module = importlib.import_module("torchvision.models" if library == "torchvision" else "timm")
    except ImportError as err:
        raise UserError(f"model {library}:{arch} needs {library}, which is not installed", fix=INSTALL_VISION) from err
    try:
        net = module.get_model(arch) if library == "torchvision" else module.create_model(arch, pretrained=False)
    except Exception as err:  # each library raises its own type for an unknown name
        raise UserError(f"{library} has no model {arch!r}: {err}") from err
    load_weights(net, weights)
    return SplitModel(f"{library}:{arch}", stages_of(net.eval()), (3, 224, 224), 1000, imagenet_preprocess)


def from_python_path(path: str, weights: str | None) -> SplitModel:
    """`package.module:function` returning (module or stages, input_shape[, preprocess])."""
    module_name, _, func_name = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise UserError(f"cannot import {path!r}: {err}", fix="give python:package.module:function") from err
    built = factory()
    net_or_stages, input_shape = built[0], tuple(built[1])
    preprocess = built[2] if len(built) > 2 else (lambda x: torch.as_tensor(x, dtype=torch.float32))
    stages = list(net_or_stages) if isinstance(net_or_stages, list) else stages_of(net_or_stages)
    if weights is not None:
        load_weights(nn.Sequential(*(m for _, m in stages)), weights)
    with torch.no_grad():
        num_classes = nn.Sequential(*(m.eval() for _, m in stages))(torch.zeros(1, *input_shape)).shape[-1]
    return SplitModel(f"python:{path}", stages, input_shape, int(num_classes), preprocess)
