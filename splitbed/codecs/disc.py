"""DISC, our training-free design for compressing intermediate CNN outputs (the seed paper publishes
only its abstract, so this pipeline is ours, named after it):

1. decorrelate channels with a KLT (PCA across channels) fitted on unlabelled calibration activations,
   optionally keeping only the top `rank` components;
2. decorrelate space with an orthonormal 2-D DCT of each component map (`dct`);
3. quantise each coefficient uniformly with a step that grows where the frozen tail is insensitive:
   step = step_rel * rms_std / fisher^(alpha/2), the Fisher information of the model's own output
   with respect to that coefficient, estimated on the calibration set (gradients, no weight updates);
   `deadzone` > 0.5 rounds small values to zero more often;
4. entropy-code the integer symbols: zstd (fast) or ANS with a per-coefficient Laplace model whose
   scales come from calibration (constriction; smaller, slower).

Calibration state (mean, KLT basis, per-coefficient Fisher weights and Laplace scales) lives in one
.npz file per (model, split), read with allow_pickle=False; messages carry its fingerprint, so a
decoder with different state refuses instead of silently decoding garbage.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zstandard
from scipy.fft import dctn, idctn

from splitbed.codecs import wire
from splitbed.codecs.base import Codec, CorruptPayload, register
from splitbed.codecs.simple import check_level, zstd_decompress
from splitbed.errors import UserError

MAX_SYMBOL = 1 << 15
CALIBRATION_VERSION = 2  # bump when Calibration's fields change: old files are then fitted anew
FISHER_SAMPLES = 2  # labels drawn from the model's own softmax per calibration input


@dataclass
class Calibration:
    model: str
    split: str
    mean: np.ndarray  # (C,)
    basis: np.ndarray  # (C, C) KLT basis, columns sorted by decreasing variance
    variance: np.ndarray  # (C,) component variances
    fisher: np.ndarray  # (C, H, W) per-coefficient sensitivity, mean 1 (DCT domain)
    fisher_pixel: np.ndarray  # (C, H, W) the same without the DCT
    scale: np.ndarray  # (C, H, W) mean |coefficient| (DCT domain)
    scale_pixel: np.ndarray  # (C, H, W) mean |coefficient| without the DCT
    low: np.ndarray  # (C,) smallest value seen per channel: 0 after a ReLU, which decoding restores
    high: np.ndarray  # (C,) largest value seen per channel (6 after a ReLU6)

    @functools.cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.mean, self.basis, self.fisher, self.scale, self.low, self.high):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()[:16]  # 8 bytes on the wire

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in ("mean", "basis", "variance", "fisher", "fisher_pixel",
                                                  "scale", "scale_pixel", "low", "high")}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, model=np.array(self.model), split=np.array(self.split), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
        return cls(model=str(fields.pop("model")), split=str(fields.pop("split")), **fields)


def project(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (C, K) matrix across the channel axis of (N, C, H, W): one matmul per item."""
    n, c, h, w = x.shape
    return (matrix.T @ x.reshape(n, c, h * w)).reshape(n, matrix.shape[1], h, w)


def to_coefficients(x: np.ndarray, cal: Calibration, rank: int, dct: bool) -> np.ndarray:
    """(N, C, H, W) activations -> (N, rank, H, W) KLT (+DCT) coefficients."""
    z = project(x - cal.mean[None, :, None, None], cal.basis[:, :rank])
    return dctn(z, axes=(2, 3), norm="ortho", workers=1) if dct else z


def from_coefficients(z: np.ndarray, cal: Calibration, dct: bool) -> np.ndarray:
    if dct:
        z = idctn(z, axes=(2, 3), norm="ortho", workers=1)
    return project(z, cal.basis[:, : z.shape[1]].T) + cal.mean[None, :, None, None]


@torch.no_grad()
def head_activations(model, split: str, inputs: torch.Tensor, batch: int = 32) -> np.ndarray:
    head = model.head(split)
    return torch.cat([head(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]).numpy()


def quantised_symbols(codec: Disc, x: np.ndarray) -> np.ndarray:
    """The integer symbols DISC entropy-codes for x (for measuring their order-0 entropy)."""
    batch = x.reshape((1, *x.shape)) if x.ndim == 3 else x
    rank = min(codec.params["rank"] or batch.shape[1], batch.shape[1])
    plan = quant_plan(codec.calibration, codec.params, rank)
    z = to_coefficients(batch.astype(np.float64), codec.calibration, rank, codec.params["dct"]) / plan.steps
    return (np.sign(z) * np.floor(np.abs(z) + 1 - codec.params["deadzone"])).astype(np.int32)


def fit(model, split: str, inputs: torch.Tensor, seed: int = 0) -> Calibration:
    """Fit DISC's state for `model` at `split` on unlabelled calibration inputs."""
    acts = head_activations(model, split, inputs).astype(np.float64)
    if acts.ndim != 4:
        raise UserError(f"DISC needs 4-d (N, C, H, W) activations; split {split} gives {acts.shape}",
                        fix="use another codec at this split")
    n, c, h, w = acts.shape
    pixels = acts.transpose(0, 2, 3, 1).reshape(-1, c)
    mean = pixels.mean(0)
    variance, basis = np.linalg.eigh(np.cov((pixels - mean).T) if c > 1 else np.var(pixels, keepdims=True))
    order = np.argsort(variance)[::-1]
    variance, basis = np.maximum(variance[order], 0), basis[:, order]
    cal = Calibration(model.name, split, mean, basis, variance, *(np.ones((c, h, w)),) * 4,
                      low=acts.min(axis=(0, 2, 3)), high=acts.max(axis=(0, 2, 3)))
    fisher_dct, fisher_pix = tail_fisher(model, split, acts.astype(np.float32), basis, seed)
    cal.fisher, cal.fisher_pixel = fisher_dct, fisher_pix
    cal.scale = np.abs(to_coefficients(acts, cal, c, True)).mean(0)
    cal.scale_pixel = np.abs(to_coefficients(acts, cal, c, False)).mean(0)
    return cal


def tail_fisher(model, split: str, acts: np.ndarray, basis: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal Fisher information of the tail's output w.r.t. each KLT(+DCT) coefficient, mean 1."""
    tail = model.tail(split)
    generator = torch.Generator().manual_seed(seed)
    total_dct = np.zeros(acts.shape[1:])
    total_pix = np.zeros(acts.shape[1:])
    for i in range(0, len(acts), 32):
        x = torch.from_numpy(acts[i : i + 32]).requires_grad_(True)
        with torch.enable_grad():  # callers may be inside no_grad
            log_probs = torch.log_softmax(tail(x), dim=1)
        for _ in range(FISHER_SAMPLES):
            labels = torch.multinomial(log_probs.exp().detach(), 1, generator=generator)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(log_probs.gather(1, labels).sum(), x, retain_graph=True)
            gz = project(grad.double().numpy(), basis)
            total_pix += (gz**2).sum(0)
            total_dct += (dctn(gz, axes=(2, 3), norm="ortho") ** 2).sum(0)
    return total_dct / max(total_dct.mean(), 1e-30), total_pix / max(total_pix.mean(), 1e-30)


class CalibrationStore:
    """Calibration files under a cache folder, one per (model, split); fitted on first use."""

    def __init__(self, root: str | Path | None = None):
        default = Path(os.environ.get("SPLITBED_CACHE", Path.home() / ".cache" / "splitbed"))
        self.root = Path(root) if root else default / "calibration"
        self.loaded: dict[tuple[str, str], Calibration] = {}

    def path(self, model_name: str, split: str) -> Path:
        safe = model_name.replace("/", "_").replace(":", "_")
        return self.root / f"v{CALIBRATION_VERSION}" / safe / f"{split}.npz"

    def by_fingerprint(self, fingerprint: str) -> Calibration:
        """The calibration a message names: among those loaded, else any file under the root."""
        for cal in self.loaded.values():
            if cal.fingerprint == fingerprint:
                return cal
        for path in sorted(self.root.glob(f"v{CALIBRATION_VERSION}/*/*.npz")):
            cal = Calibration.load(path)
            self.loaded[(cal.model, cal.split)] = cal
            if cal.fingerprint == fingerprint:
                return cal
        raise CorruptPayload(f"no DISC calibration with fingerprint {fingerprint} under {self.root}")

    def get(self, model_name: str, split: str) -> Calibration:
        key = (model_name, split)
        if key not in self.loaded:
            path = self.path(model_name, split)
            if not path.exists():
                raise UserError(f"no DISC calibration for {model_name} at {split}", where=str(path),
                                fix="calibrate first: python -m splitbed.codecs calibrate MODEL")
            self.loaded[key] = Calibration.load(path)
        return self.loaded[key]

    def ensure(self, model, split: str, inputs_fn, refit: bool = False) -> Calibration:
        """Load, or fit on inputs_fn() and save."""
        path = self.path(model.name, split)
        if refit or not path.exists():
            fit(model, split, inputs_fn()).save(path)
            self.loaded.pop((model.name, split), None)
        return self.get(model.name, split)


class QuantPlan:
    """Everything derived from (calibration, step, alpha, dct, rank): computed once, reused per message."""

    def __init__(self, cal: Calibration, params: dict, rank: int):
        self.steps = steps_for(cal, params, rank)
        self.classes = ScaleClasses(laplace_scales(cal, params, self.steps, rank))


_plans: dict[tuple, QuantPlan] = {}


def quant_plan(cal: Calibration, params: dict, rank: int) -> QuantPlan:
    key = (cal.fingerprint, float(params["step"]), float(params["alpha"]), bool(params["dct"]), rank)
    if key not in _plans:
        if len(_plans) >= 256:  # a long-running server sees few settings; stay bounded anyway
            _plans.clear()
        _plans[key] = QuantPlan(cal, params, rank)
    return _plans[key]


def steps_for(cal: Calibration, params: dict, rank: int) -> np.ndarray:
    fisher = cal.fisher if params["dct"] else cal.fisher_pixel
    rms = float(np.sqrt(cal.variance.mean())) or 1.0
    return params["step"] * rms / np.maximum(fisher[:rank], 1e-6) ** (params["alpha"] / 2)


def laplace_scales(cal: Calibration, params: dict, steps: np.ndarray, rank: int) -> np.ndarray:
    scale = (cal.scale if params["dct"] else cal.scale_pixel)[:rank]
    return np.clip(scale / steps, 0.05, 1e4)


@register
class Disc(Codec):
    name, codec_id = "disc", 5
    DEFAULTS = {"step": 0.3, "alpha": 0.5, "rank": 0, "dct": True, "deadzone": 0.5, "entropy": "ans",
                "level": 3}
    needs_calibration = True

    PARAMS = struct.Struct(">fffBBHH8s")  # step, alpha, deadzone, flags, level, rank, peak, calibration

    def __init__(self, calibration: Calibration | None = None, **params):
        super().__init__(**params)
        self.calibration = calibration

    @classmethod
    def pack_params(cls, p: dict) -> bytes:
        flags = int(bool(p["dct"])) | (2 if p["entropy"] == "ans" else 0)
        return cls.PARAMS.pack(p["step"], p["alpha"], p["deadzone"], flags, p["level"], p["rank_used"],
                               p["peak"], bytes.fromhex(p["cal"]))

    @classmethod
    def unpack_params(cls, raw: bytes) -> dict:
        if len(raw) != cls.PARAMS.size:
            raise wire.MalformedHeader(f"disc parameters are {len(raw)} bytes, expected {cls.PARAMS.size}")
        step, alpha, deadzone, flags, level, rank, peak, cal = cls.PARAMS.unpack(raw)
        return {"step": step, "alpha": alpha, "deadzone": deadzone, "dct": bool(flags & 1),
                "entropy": "ans" if flags & 2 else "zstd", "level": level, "rank_used": rank, "peak": peak,
                "cal": cal.hex()}

    def validate(self):
        p = self.params
        if not isinstance(p["step"], (int, float)) or not 0 < p["step"] <= 100:
            raise UserError(f"disc step must be a number in (0, 100], got {p['step']!r}")
        if not isinstance(p["alpha"], (int, float)) or not 0 <= p["alpha"] <= 2:
            raise UserError(f"disc alpha must be in [0, 2], got {p['alpha']!r}")
        if not isinstance(p["rank"], int) or p["rank"] < 0:
            raise UserError(f"disc rank must be an integer >= 0 (0 = all components), got {p['rank']!r}")
        if not isinstance(p["deadzone"], (int, float)) or not 0.5 <= p["deadzone"] < 1:
            raise UserError(f"disc deadzone must be in [0.5, 1), got {p['deadzone']!r}")
        if p["entropy"] not in ("zstd", "ans"):
            raise UserError(f"disc entropy must be 'zstd' or 'ans', got {p['entropy']!r}")
        check_level(p["level"])
        for key in ("step", "alpha", "deadzone"):  # what the header carries: both sides must derive alike
            p[key] = float(np.float32(p[key]))

    def encode_payload(self, x):
        cal = self.calibration
        if cal is None:
            raise UserError("disc needs a calibration: get_codec('disc', calibration=store.get(model, split))")
        batch = x.reshape((1, *x.shape)) if x.ndim == 3 else x
        if batch.ndim != 4 or batch.shape[1:] != cal.fisher.shape:
            raise UserError(f"disc calibrated for {cal.fisher.shape} at {cal.model}/{cal.split}, got {x.shape}")
        rank = min(self.params["rank"] or batch.shape[1], batch.shape[1])
        plan = quant_plan(cal, self.params, rank)
        q = quantised_symbols(self, batch)
        peak = int(np.abs(q).max()) if q.size else 0
        if peak >= MAX_SYMBOL:
            raise UserError(f"disc step {self.params['step']} is too small for this tensor (symbol {peak})")
        extra = {"cal": cal.fingerprint, "rank_used": rank, "peak": peak}
        if self.params["entropy"] == "ans":
            return encode_ans(q, plan.classes, peak), extra
        dtype = np.int8 if peak < 128 else np.int16
        level = self.params["level"]
        return zstandard.ZstdCompressor(level=level).compress(q.astype(dtype).tobytes()), extra

    @classmethod
    def decode_payload(cls, message, p, store):
        rank, peak, dct = p["rank_used"], p["peak"], p["dct"]
        params = {"step": p["step"], "alpha": p["alpha"], "dct": dct}
        if store is None:
            raise CorruptPayload("disc message but the decoder has no calibration store")
        cal = store.by_fingerprint(p["cal"])
        shape = message.shape
        batch_shape = (1, *shape) if len(shape) == 3 else shape
        if len(batch_shape) != 4 or tuple(batch_shape[1:]) != cal.fisher.shape or not 0 < rank <= shape[-3]:
            raise CorruptPayload(f"disc shape {shape} / rank {rank} does not fit the calibration")
        if not 0 <= peak < MAX_SYMBOL or not 0 < params["step"] <= 100 or not 0 <= params["alpha"] <= 2:
            raise CorruptPayload("disc peak/step out of range")
        plan = quant_plan(cal, params, rank)
        steps = plan.steps
        q_shape = (batch_shape[0], rank, *batch_shape[2:])
        count = int(np.prod(q_shape))
        if p["entropy"] == "ans":
            q = decode_ans(message.payload, plan.classes, peak, q_shape)
        else:
            dtype = np.int8 if peak < 128 else np.int16
            raw = zstd_decompress(message.payload, count * np.dtype(dtype).itemsize)
            q = np.frombuffer(raw, dtype=dtype).reshape(q_shape)
        theta = p["deadzone"]
        # reconstruct at the middle of the (dead-zone widened) bin
        magnitude = np.where(q != 0, np.abs(q) + theta - 0.5, 0.0)
        x = from_coefficients(np.sign(q) * magnitude * steps, cal, dct)
        # Values outside what the channel ever showed (negative after a ReLU) are coding noise.
        x = np.clip(x, cal.low[None, :, None, None], cal.high[None, :, None, None])
        return x.reshape(shape).astype(np.float32)


SCALE_CLASSES = np.geomspace(0.05, 1e4, 33)  # Laplace scale bins (in quantiser steps)


class ScaleClasses:
    """Coefficients grouped by their calibrated Laplace scale: one probability table per group.

    One shared table per group instead of one per coefficient makes ANS several times faster at a
    cost of well under 1% in size; the grouping is fixed by the calibration, so encoder and
    decoder derive it alike.
    """

    def __init__(self, scales: np.ndarray):
        flat = scales.ravel()
        group = np.clip(np.searchsorted(SCALE_CLASSES, flat) - 1, 0, len(SCALE_CLASSES) - 2)
        self.order = np.argsort(group, kind="stable")
        counts = np.bincount(group, minlength=len(SCALE_CLASSES) - 1)
        self.groups = [(int(k), int(n)) for k, n in enumerate(counts) if n]
        bounds = np.concatenate([[0], np.cumsum([n for _, n in self.groups])]).tolist()
        self.ranges = list(zip(bounds[:-1], bounds[1:], strict=True))  # [start, end) of each group
        log_scale = np.log(flat[self.order])
        self.scale = [float(np.exp(log_scale[a:b].mean())) for a, b in self.ranges]

    @functools.lru_cache(maxsize=64)  # noqa: B019  (plans are few and long-lived)
    def models(self, peak: int):
        import constriction

        x = np.arange(-peak, peak + 1, dtype=np.float64)
        tables = []
        for b in self.scale:
            upper = np.exp(-np.abs(x + 0.5) / b)  # Laplace bin masses via the tail function
            lower = np.exp(-np.abs(x - 0.5) / b)
            mass = np.where(x == 0, 1 - np.exp(-0.5 / b), 0.5 * np.abs(lower - upper))
            mass = np.maximum(mass, 1e-9)
            tables.append(constriction.stream.model.Categorical(mass / mass.sum(), perfect=False))
        return tables


def encode_ans(q: np.ndarray, classes: ScaleClasses, peak: int) -> bytes:
    import constriction

    symbols = q.reshape(q.shape[0], -1)[:, classes.order] + peak
    coder = constriction.stream.stack.AnsCoder()
    models = classes.models(peak)
    for item in reversed(symbols):
        for (a, b), model in reversed(list(zip(classes.ranges, models, strict=True))):
            coder.encode_reverse(item[a:b].astype(np.int32), model)
    return coder.get_compressed().astype("<u4").tobytes()


def decode_ans(payload: bytes, classes: ScaleClasses, peak: int, shape: tuple[int, ...]) -> np.ndarray:
    import constriction

    if len(payload) % 4:
        raise CorruptPayload("ans payload is not a whole number of 32-bit words")
    coder = constriction.stream.stack.AnsCoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
    models = classes.models(peak)
    per_item = int(np.prod(shape[1:]))
    q = np.empty((shape[0], per_item), dtype=np.int32)
    for i in range(shape[0]):
        decoded = np.concatenate([coder.decode(m, b - a) for (a, b), m in zip(classes.ranges, models, strict=True)])
        q[i, classes.order] = decoded - peak
    return q.reshape(shape)
