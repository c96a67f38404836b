"""Models by name: built-ins, torchvision/timm models with a user weights file, or a Python path."""

from __future__ import annotations

from splitbed.models import efficientnet_lite, fmnist_cnn, user_models
from splitbed.models.partition import SplitModel
from splitbed.registry import Registry

BUILTIN = Registry("model", {
    **{name: efficientnet_lite.build for name in efficientnet_lite.VARIANTS},
    "fmnist_cnn": fmnist_cnn.build,
})
LIBRARY_FORMS = ("torchvision:NAME", "timm:NAME", "python:package.module:function")
DEFAULT_MODEL = "efficientnet_lite0"
_cache: dict[str, SplitModel] = {}


def model_names() -> list[str]:
    return [*BUILTIN, *LIBRARY_FORMS]


def get_model(name: str, weights: str | None = None) -> SplitModel:
    """A built-in model, `torchvision:NAME` / `timm:NAME` (+ weights file), or `python:mod:func`."""
    key = f"{name}|{weights}"
    if key in _cache:
        return _cache[key]
    if name.startswith(("torchvision:", "timm:")):
        library, arch = name.split(":", 1)
        model = user_models.from_library(library, arch, weights)
    elif name.startswith("python:"):
        model = user_models.from_python_path(name.split(":", 1)[1], weights)
    else:
        model = BUILTIN.lookup(name, others=LIBRARY_FORMS)(name)
    _cache[key] = model
    return model
