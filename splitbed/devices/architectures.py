"""Compact builders for the standard ImageNet CNNs that ncnn's benchmark times, for timing only.

Tencent ncnn's benchmark (benchncnn) publishes Raspberry Pi and Jetson latencies for these architectures,
which makes them useful reference workloads for emulated devices. Timing needs the layer shapes, not
trained weights, so every builder returns a randomly initialised model; call `.eval()` and feed a batch of
one at `INPUT_SIZE[name]`. torchvision cannot be installed here (it pulls a CUDA build of torch), so the
networks are written out from their papers; dropout is left out since it is a no-op in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Act = Callable[..., nn.Module] | None


def divisible(v: float, d: int = 8) -> int:
    """Round to a multiple of d without losing more than 10% (the MobileNet channel rule)."""
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


def conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: Act = nn.ReLU) -> nn.Sequential:
    """Conv (same padding, no bias), batch norm, optional activation."""
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([act(inplace=True)] if act else []))


def conv_relu(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1) -> list[nn.Module]:
    """Plain conv with bias and ReLU (pre-BN networks)."""
    return [nn.Conv2d(cin, cout, k, stride, padding, groups=groups), nn.ReLU(inplace=True)]


def head(cin: int, classes: int = 1000) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def fc_head(cin: int) -> list[nn.Module]:
    """AlexNet/VGG classifier: two 4096-wide ReLU layers, then 1000 logits."""
    return [nn.Flatten(), nn.Linear(cin, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 4096),
            nn.ReLU(inplace=True), nn.Linear(4096, 1000)]


def max_pool(k: int = 3) -> nn.MaxPool2d:
    """Stride-2 max pool, ceil mode as in Caffe."""
    return nn.MaxPool2d(k, 2, ceil_mode=True)


class Residual(nn.Module):
    """body(x) + shortcut(x) (identity by default), optionally followed by ReLU."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, relu: bool = False) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut if shortcut is not None else nn.Identity()
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SE(nn.Module):
    """Squeeze-and-excitation: global pool, 1x1 reduce, ReLU, 1x1 expand, gate, rescale."""

    def __init__(self, ch: int, squeeze: int, gate: Callable[[], nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, squeeze, 1), nn.ReLU(inplace=True),
                               nn.Conv2d(squeeze, ch, 1), gate())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f(x)


def inverted_residual(cin: int, cout: int, k: int, stride: int, mid: int, act: Act = nn.ReLU, se: int = 0) -> nn.Module:
    """MobileNetV2-style block: 1x1 expand to mid (skipped if mid == cin), depthwise kxk, [SE], linear 1x1."""
    layers = [conv_bn(cin, mid, 1, act=act)] if mid != cin else []
    layers.append(conv_bn(mid, mid, k, stride, groups=mid, act=act))
    layers += [SE(mid, se, nn.Hardsigmoid)] if se else []
    body = nn.Sequential(*layers, conv_bn(mid, cout, 1, act=None))
    return Residual(body) if stride == 1 and cin == cout else body


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(*conv_relu(cin, squeeze, 1))
        self.e1 = nn.Sequential(*conv_relu(squeeze, expand, 1))
        self.e3 = nn.Sequential(*conv_relu(squeeze, expand, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.e1(x), self.e3(x)], 1)


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half, c2 = cout // 2, cin if stride > 1 else cout // 2
        self.left = (nn.Sequential(conv_bn(cin, cin, 3, stride, cin, act=None), conv_bn(cin, half))
                     if stride > 1 else None)
        self.right = nn.Sequential(conv_bn(c2, half), conv_bn(half, half, 3, stride, half, act=None),
                                   conv_bn(half, half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, 1) if self.left is None else (self.left(x), x)  # split, or downsample both ways
        out = torch.cat([a, self.right(b)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, cp: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn(cin, c1), nn.Sequential(conv_bn(cin, r3), conv_bn(r3, c3, 3)),
                                       nn.Sequential(conv_bn(cin, r5), conv_bn(r5, c5, 5)),
                                       nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(cin, cp))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def squeezenet1_1() -> nn.Module:
    """SqueezeNet v1.1 (Iandola et al. 2016, v1.1 from the SqueezeNet repository)."""
    return nn.Sequential(*conv_relu(3, 64, 3, 2), max_pool(), Fire(64, 16, 64), Fire(128, 16, 64), max_pool(),
                         Fire(128, 32, 128), Fire(256, 32, 128), max_pool(), Fire(256, 48, 192),
                         Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256), *conv_relu(512, 1000, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def mobilenet_v1() -> nn.Module:
    """MobileNet v1, width 1.0, 224 (Howard et al. 2017)."""
    layers, cin = [conv_bn(3, 32, 3, 2)], 32
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for cout, s in cfg:
        layers += [conv_bn(cin, cin, 3, s, cin), conv_bn(cin, cout)]
        cin = cout
    return nn.Sequential(*layers, head(1024))


def mobilenet_v2() -> nn.Module:
    """MobileNetV2, width 1.0 (Sandler et al. 2018)."""
    layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    for t, c, n, s in cfg:
        for i in range(n):
            layers.append(inverted_residual(cin, c, 3, s if i == 0 else 1, cin * t, nn.ReLU6))
            cin = c
    return nn.Sequential(*layers, conv_bn(320, 1280, act=nn.ReLU6), head(1280))


def mobilenet_v3_large() -> nn.Module:
    """MobileNetV3-Large 1.0 with SE and hard-swish (Howard et al. 2019, Table 1)."""
    re, hs = nn.ReLU, nn.Hardswish
    cfg = [(3, 16, 16, 0, re, 1), (3, 64, 24, 0, re, 2), (3, 72, 24, 0, re, 1), (5, 72, 40, 1, re, 2),
           (5, 120, 40, 1, re, 1), (5, 120, 40, 1, re, 1), (3, 240, 80, 0, hs, 2), (3, 200, 80, 0, hs, 1),
           (3, 184, 80, 0, hs, 1), (3, 184, 80, 0, hs, 1), (3, 480, 112, 1, hs, 1), (3, 672, 112, 1, hs, 1),
           (5, 672, 160, 1, hs, 2), (5, 960, 160, 1, hs, 1), (5, 960, 160, 1, hs, 1)]
    layers, cin = [conv_bn(3, 16, 3, 2, act=hs)], 16
    for k, mid, cout, se, act, s in cfg:
        layers.append(inverted_residual(cin, cout, k, s, mid, act, divisible(mid / 4) if se else 0))
        cin = cout
    return nn.Sequential(*layers, conv_bn(160, 960, act=hs), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(960, 1280), nn.Hardswish(inplace=True), nn.Linear(1280, 1000))


def shufflenet_v2_x1_0() -> nn.Module:
    """ShuffleNet V2 1.0x (Ma et al. 2018): stages 116/232/464 of 4/8/4 units, 1024-channel conv5."""
    layers, cin = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)], 24
    for cout, n in [(116, 4), (232, 8), (464, 4)]:
        layers += [ShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(n)]
        cin = cout
    return nn.Sequential(*layers, conv_bn(464, 1024), head(1024))


def mnasnet1_0() -> nn.Module:
    """MnasNet-B1 1.0, without SE (Tan et al. 2019)."""
    layers, cin = [conv_bn(3, 32, 3, 2), inverted_residual(32, 16, 3, 1, 32)], 16
    cfg = [(24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2), (192, 5, 2, 6, 4), (320, 3, 1, 6, 1)]
    for cout, k, s, t, n in cfg:
        for i in range(n):
            layers.append(inverted_residual(cin, cout, k, s if i == 0 else 1, cin * t))
            cin = cout
    return nn.Sequential(*layers, conv_bn(320, 1280), head(1280))


def regnet_y_400mf() -> nn.Module:
    """RegNetY-400MF (Radosavovic et al. 2020): widths 48/104/208/440, depths 1/3/6/6, g=8, b=1, SE 0.25."""
    layers, cin = [conv_bn(3, 32, 3, 2)], 32
    for w, d in [(48, 1), (104, 3), (208, 6), (440, 6)]:
        for i in range(d):
            s = 2 if i == 0 else 1
            # bottleneck ratio 1, groups of 8 channels, SE squeezed to a quarter of the block's input width
            body = nn.Sequential(conv_bn(cin, w), conv_bn(w, w, 3, s, w // 8), SE(w, round(cin / 4)),
                                 conv_bn(w, w, act=None))
            short = conv_bn(cin, w, 1, s, act=None) if s > 1 or cin != w else None
            layers.append(Residual(body, short, relu=True))
            cin = w
    return nn.Sequential(*layers, head(440))


def googlenet() -> nn.Module:
    """GoogLeNet / Inception v1 (Szegedy et al. 2015) with its true 5x5 branch, as ncnn's (Caffe) model has;
    with batch norm, as the other networks here (ncnn folds it into the convolutions), no auxiliary heads."""
    return nn.Sequential(
        conv_bn(3, 64, 7, 2), max_pool(), conv_bn(64, 64), conv_bn(64, 192, 3), max_pool(),
        Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64), max_pool(),
        Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
        Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
        Inception(528, 256, 160, 320, 32, 128, 128), max_pool(2),
        Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128), head(1024))


def _resnet(bottleneck: bool, depths: list[int]) -> nn.Module:
    layers, cin, e = [conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)], 64, 4 if bottleneck else 1
    for stage, (w, d) in enumerate(zip([64, 128, 256, 512], depths, strict=True)):
        for i in range(d):
            s = 2 if stage > 0 and i == 0 else 1
            if bottleneck:  # v1, as ncnn's (Caffe) model: stride on the first 1x1
                body = nn.Sequential(conv_bn(cin, w, 1, s), conv_bn(w, w, 3), conv_bn(w, w * e, act=None))
            else:
                body = nn.Sequential(conv_bn(cin, w, 3, s), conv_bn(w, w, 3, act=None))
            short = conv_bn(cin, w * e, 1, s, act=None) if s > 1 or cin != w * e else None
            layers.append(Residual(body, short, relu=True))
            cin = w * e
    return nn.Sequential(*layers, head(cin))


def resnet18() -> nn.Module:
    """ResNet-18 (He et al. 2016)."""
    return _resnet(False, [2, 2, 2, 2])


def resnet50() -> nn.Module:
    """ResNet-50 v1 (He et al. 2016; stride 2 on the first 1x1 conv, as ncnn's Caffe model)."""
    return _resnet(True, [3, 4, 6, 3])


def alexnet() -> nn.Module:
    """AlexNet, the original two-tower Caffe variant (Krizhevsky et al. 2012; bvlc_alexnet), 227 input."""
    return nn.Sequential(
        *conv_relu(3, 96, 11, 4), nn.LocalResponseNorm(5, 1e-4, 0.75), max_pool(),
        *conv_relu(96, 256, 5, 1, 2, 2), nn.LocalResponseNorm(5, 1e-4, 0.75), max_pool(),
        *conv_relu(256, 384, 3, 1, 1), *conv_relu(384, 384, 3, 1, 1, 2), *conv_relu(384, 256, 3, 1, 1, 2),
        max_pool(), *fc_head(9216))


def vgg16() -> nn.Module:
    """VGG-16, configuration D, no batch norm (Simonyan & Zisserman 2015)."""
    layers: list[nn.Module] = []
    cin = 3
    for cout, n in [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]:
        for _ in range(n):
            layers += conv_relu(cin, cout, 3, 1, 1)
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers, *fc_head(25088))


ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {f.__name__: f for f in [
    squeezenet1_1, mobilenet_v1, mobilenet_v2, mobilenet_v3_large, shufflenet_v2_x1_0, mnasnet1_0,
    regnet_y_400mf, googlenet, resnet18, resnet50, alexnet, vgg16]}
# ncnn's benchmark feeds 227x227 to squeezenet and alexnet (their Caffe deploy files), 224x224 to the rest.
INPUT_SIZE: dict[str, int] = {n: 227 if n in ("squeezenet1_1", "alexnet") else 224 for n in ARCHITECTURES}
