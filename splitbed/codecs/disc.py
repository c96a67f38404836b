"""DISC, our training-free design for compressing intermediate CNN outputs (the seed paper publishes
only its abstract, so this pipeline is ours, named after it):

1. decorrelate channels with a KLT taken in the frozen tail's metric (principal components of L^T x,
   F = L L^T the channel Fisher matrix), fitted on unlabelled calibration activations and
   gradients of the model's own output (no labels, no weight updates); optionally keep only the top
   `rank` components;
2. decorrelate space with an orthonormal 2-D DCT of each component map (`dct`);
3. quantise each coefficient uniformly with a step that grows where the tail is insensitive:
   step = step_rel * rms / fisher^(alpha/2), fisher the diagonal Fisher information of that
   coefficient; `deadzone` > 0.5 rounds small values to zero more often (0.65 by default: fewer
   bits for less error than plain rounding, measured on Lite0);
4. entropy-code the integer symbols: rANS (rans.py) with a Laplace model per group of coefficients
   whose scales come from calibration, or zstd (larger; kept as a baseline).

Calibration state (mean, transform and its inverse, per-coefficient Fisher weights and Laplace
scales) is fitted by disc_calibration.py and lives in one .npz file per (model, split); messages carry its
fingerprint, so a decoder with different state refuses instead of silently decoding garbage.
Encoding and decoding run in float32.
"""

from __future__ import annotations

import struct

import numpy as np
import zstandard
from scipy.fft import dctn

from splitbed.codecs import rans, wire
from splitbed.codecs.base import Codec, CorruptPayload, register
from splitbed.codecs.disc_calibration import Calibration
from splitbed.codecs.simple import check_level, zstd_decompress
from splitbed.errors import UserError
from splitbed.host.memory import MIB, BoundedCache, array_bytes

MAX_SYMBOL = 1 << 15
def quantised_symbols(codec: Disc, x: np.ndarray) -> np.ndarray:
    """The integer symbols DISC entropy-codes for x (for measuring their order-0 entropy)."""
    batch = x.reshape((1, *x.shape)) if x.ndim == 3 else x
    rank = min(codec.params["rank"] or batch.shape[1], batch.shape[1])
    return quant_plan(codec.calibration, codec.params, rank).quantise(batch)


class QuantPlan:
    """Everything derived from (calibration, step, alpha, dct, deadzone, rank), in float32: computed
    once, reused per message. Transform, quantiser and their inverses live here, so encoder and
    decoder cannot drift apart."""

    def __init__(self, cal: Calibration, params: dict, rank: int):
        self.dct, self.deadzone = bool(params["dct"]), float(params["deadzone"])
        steps = steps_for(cal, params, rank)
        self.steps = steps.astype(np.float32)
        self.flat_steps = self.steps.ravel()
        self.inverse_steps = (1 / steps).astype(np.float32)
        self.analysis_t = np.ascontiguousarray(cal.analysis[:, :rank].T, dtype=np.float32)
        self.synthesis = np.ascontiguousarray(cal.synthesis[:, :rank], dtype=np.float32)
        self.mean = cal.mean.astype(np.float32)[:, None]
        self.low, self.high = cal.low.astype(np.float32)[:, None], cal.high.astype(np.float32)[:, None]
        self.classes = ScaleClasses(laplace_scales(cal, params, steps, rank))
        _, h, w = cal.fisher.shape
        self.dct_h, self.dct_w = dct_matrix(h), dct_matrix(w)

    @property
    def nbytes(self) -> int:
        return array_bytes(self, self.classes, self.classes.tables)

    def scaled(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) activations -> (N, rank, H, W) float32 coefficients in units of their steps."""
        n, c, h, w = batch.shape
        z = self.analysis_t @ (batch.reshape(n, c, h * w).astype(np.float32, copy=False) - self.mean)
        if self.dct:
            z = dct_2d(z.reshape(-1, h, w), self.dct_h, self.dct_w)
        z = z.reshape(n, -1, h, w)
        z *= self.inverse_steps
        return z

    def quantise(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) activations -> (N, rank, H, W) int32 symbols (rans.py fuses the same rule)."""
        z = self.scaled(batch)
        # round to nearest with a dead zone: |z| < deadzone -> 0, then bins of width 1
        return np.copysign(np.floor(np.abs(z) + np.float32(1 - self.deadzone)), z).astype(np.int32)

    def dequantise(self, q: np.ndarray) -> np.ndarray:
        """Symbols -> coefficients at the middle of their bins (rans.py fuses the same rule)."""
        z = q.astype(np.float32)
        z += np.sign(z) * np.float32(self.deadzone - 0.5)
        return z * self.steps

    def synthesise(self, z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """(N, rank, H, W) coefficients back to activations of `shape` (N, C, H, W)."""
        n, c, h, w = shape
        if self.dct:
            z = dct_2d(z.reshape(-1, h, w), self.dct_h.T, self.dct_w.T)
        x = self.synthesis @ z.reshape(n, -1, h * w)
        x += self.mean
        # Values outside what the channel ever showed (negative after a ReLU) are coding noise.
        np.maximum(x, self.low, out=x)
        return np.minimum(x, self.high, out=x).reshape(shape)


def dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix (D @ v == scipy's dct(v, norm="ortho")), float32."""
    return dctn(np.eye(size), axes=(0,), norm="ortho").astype(np.float32)


def dct_2d(maps: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """rows @ m @ cols.T for every (H, W) map m: two matmuls, several times faster than an FFT-based
    DCT on maps this small. Pass the transposed matrices for the inverse."""
    k, h, w = maps.shape
    return np.matmul(rows, (maps.reshape(k * h, w) @ cols.T).reshape(k, h, w))


# Plans kept per process, by bytes: an early split's plan holds several activation-sized arrays (1.7 MB
# at block1 of Lite0), a late one under 1 MB; Lite0's 60 profiled settings hold 58 MB. The bound is
# part of an edge's predicted memory (splitbed.app.footprint); a plan evicted is derived again.
PLAN_CACHE_BYTES = 64 * MIB
_plans = BoundedCache(PLAN_CACHE_BYTES, lambda plan: plan.nbytes)


def quant_plan(cal: Calibration, params: dict, rank: int) -> QuantPlan:
    key = (cal.fingerprint, float(params["step"]), float(params["alpha"]), bool(params["dct"]),
           float(params["deadzone"]), rank)
    return _plans.get(key, lambda: QuantPlan(cal, params, rank))


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
    DEFAULTS = {"step": 0.3, "alpha": 1.0, "rank": 0, "dct": True, "deadzone": 0.65, "entropy": "ans",
                "level": 3}
    needs_calibration = True

    # step, alpha, deadzone (half floats), flags (level | dct | ans | int16), rank, calibration: 15 bytes
    PARAMS = struct.Struct(">eeeBH6s")
    DCT, ANS, WIDE = 0x20, 0x40, 0x80

    def __init__(self, calibration: Calibration | None = None, **params):
        super().__init__(**params)
        self.calibration = calibration

    @classmethod
    def pack_params(cls, p: dict) -> bytes:
        flags = p["level"] | (cls.DCT if p["dct"] else 0) | (cls.ANS if p["entropy"] == "ans" else 0)
        flags |= cls.WIDE if p["wide"] else 0
        return cls.PARAMS.pack(p["step"], p["alpha"], p["deadzone"], flags, p["rank_used"], bytes.fromhex(p["cal"]))

    @classmethod
    def unpack_params(cls, raw: bytes) -> dict:
        if len(raw) != cls.PARAMS.size:
            raise wire.MalformedHeader(f"disc parameters are {len(raw)} bytes, expected {cls.PARAMS.size}")
        step, alpha, deadzone, flags, rank, cal = cls.PARAMS.unpack(raw)
        return {"step": step, "alpha": alpha, "deadzone": deadzone, "dct": bool(flags & cls.DCT),
                "entropy": "ans" if flags & cls.ANS else "zstd", "wide": bool(flags & cls.WIDE),
                "level": flags & 0x1F, "rank_used": rank, "cal": cal.hex()}

    def validate(self):
        p = self.params
        for key in ("step", "alpha", "deadzone"):  # what the header carries: both sides must derive alike
            if isinstance(p[key], (int, float)) and not isinstance(p[key], bool):
                with np.errstate(over="ignore"):  # too large becomes inf, refused just below
                    p[key] = float(np.float16(p[key]))
        if not isinstance(p["step"], (int, float)) or not 0.001 <= p["step"] <= 100:
            raise UserError(f"disc step must be a number in [0.001, 100], got {p['step']!r}")
        if not isinstance(p["alpha"], (int, float)) or not 0 <= p["alpha"] <= 2:
            raise UserError(f"disc alpha must be in [0, 2], got {p['alpha']!r}")
        if not isinstance(p["rank"], int) or p["rank"] < 0:
            raise UserError(f"disc rank must be an integer >= 0 (0 = all components), got {p['rank']!r}")
        if not isinstance(p["deadzone"], (int, float)) or not 0.5 <= p["deadzone"] < 1:
            raise UserError(f"disc deadzone must be in [0.5, 1), got {p['deadzone']!r}")
        if p["entropy"] not in ("zstd", "ans"):
            raise UserError(f"disc entropy must be 'zstd' or 'ans', got {p['entropy']!r}")
        check_level(p["level"])

    def encode_payload(self, x):
        cal = self.calibration
        if cal is None:
            raise UserError("disc needs a calibration: get_codec('disc', calibration=store.get(model, split))")
        batch = x.reshape((1, *x.shape)) if x.ndim == 3 else x
        if batch.ndim != 4 or batch.shape[1:] != cal.fisher.shape:
            raise UserError(f"disc calibrated for {cal.fisher.shape} at {cal.model}/{cal.split}, got {x.shape}")
        rank = min(self.params["rank"] or batch.shape[1], batch.shape[1])
        plan = quant_plan(cal, self.params, rank)
        extra = {"cal": cal.fingerprint, "rank_used": rank, "wide": False}
        if self.params["entropy"] == "ans":
            payload = encode_ans(plan.scaled(batch), plan)
            if payload is None:
                raise UserError(f"disc step {self.params['step']} is too small for this tensor (a symbol beyond "
                                f"{rans.MAX_EXCESS} past its table)", fix="use a larger step")
            return payload, extra
        q = plan.quantise(batch)
        peak = int(np.abs(q).max()) if q.size else 0
        if peak >= MAX_SYMBOL:
            raise UserError(f"disc step {self.params['step']} is too small for this tensor (symbol {peak})",
                            fix="use a larger step")
        extra["wide"] = peak >= 128
        dtype = np.int16 if extra["wide"] else np.int8
        return zstandard.ZstdCompressor(level=self.params["level"]).compress(q.astype(dtype).tobytes()), extra

    @classmethod
    def decode_payload(cls, message, p, store):
        rank, dct = p["rank_used"], p["dct"]
        if store is None:
            raise CorruptPayload("disc message but the decoder has no calibration store")
        cal = store.by_fingerprint(p["cal"])
        shape = message.shape
        batch_shape = (1, *shape) if len(shape) == 3 else shape
        if len(batch_shape) != 4 or tuple(batch_shape[1:]) != cal.fisher.shape or not 0 < rank <= shape[-3]:
            raise CorruptPayload(f"disc shape {shape} / rank {rank} does not fit the calibration")
        if not 0 < p["step"] <= 100 or not 0 <= p["alpha"] <= 2 or not 0.5 <= p["deadzone"] < 1:
            raise CorruptPayload("disc step/alpha/deadzone out of range")
        plan = quant_plan(cal, {"step": p["step"], "alpha": p["alpha"], "dct": dct, "deadzone": p["deadzone"]}, rank)
        q_shape = (batch_shape[0], rank, *batch_shape[2:])
        if p["entropy"] == "ans":
            z = decode_ans(message.payload, plan, q_shape)
        else:
            dtype = np.int16 if p["wide"] else np.int8
            raw = zstd_decompress(message.payload, int(np.prod(q_shape)) * np.dtype(dtype).itemsize)
            z = plan.dequantise(np.frombuffer(raw, dtype=dtype).reshape(q_shape))
        return plan.synthesise(z, batch_shape).reshape(shape)


SCALE_CLASSES = np.geomspace(0.05, 1e4, 33)  # Laplace scale bins (in quantiser steps)
ESCAPE_SCALES = 7  # a class codes |q| < 0.5 + 7 scales directly; larger values escape (~1e-3 of them)


class ScaleClasses:
    """Coefficients grouped by their calibrated Laplace scale: one probability table per group.

    One shared table per group instead of one per coefficient keeps the tables few and small at a
    cost of well under 1% in size; the grouping is fixed by the calibration, so encoder and
    decoder derive it alike. Each table covers |q| < bound (bound from the group's scale) plus two
    escape symbols (rans.py).
    """

    def __init__(self, scales: np.ndarray):
        flat = scales.ravel()
        group = np.clip(np.searchsorted(SCALE_CLASSES, flat) - 1, 0, len(SCALE_CLASSES) - 2)
        order = np.argsort(group, kind="stable")
        sizes = [int(n) for n in np.bincount(group, minlength=len(SCALE_CLASSES) - 1) if n]
        ranges = np.cumsum([0, *sizes])
        log_scale = np.log(flat[order])
        scale = [float(np.exp(log_scale[a:b].mean())) for a, b in zip(ranges[:-1], ranges[1:], strict=True)]
        bound = [min(int(np.ceil(0.5 + ESCAPE_SCALES * b)), (rans.MAX_ALPHABET - 1) // 2) for b in scale]
        self.tables = rans.Tables([laplace_table(b, k) for b, k in zip(scale, bound, strict=True)])
        self.order = order.astype(np.int32)  # coding position -> coefficient
        self.ranges = ranges.astype(np.int64)  # coding positions ranges[g]..ranges[g+1] use table g
        self.bounds = np.array(bound, dtype=np.int32)  # table g codes |q| < bounds[g], escapes beyond


def laplace_table(scale: float, bound: int) -> np.ndarray:
    """Probabilities of symbols -bound..bound (in steps); the two ends are the escapes |q| >= bound."""
    x = np.arange(-bound, bound + 1, dtype=np.float64)
    mass = np.where(x == 0, 1 - np.exp(-0.5 / scale),
                    0.5 * (np.exp(-(np.abs(x) - 0.5) / scale) - np.exp(-(np.abs(x) + 0.5) / scale)))
    mass[[0, -1]] = 0.5 * np.exp(-(bound - 0.5) / scale)  # tail mass
    return mass / mass.sum()


def encode_ans(scaled: np.ndarray, plan: QuantPlan) -> bytes | None:
    classes = plan.classes
    return rans.encode(scaled.reshape(scaled.shape[0], -1), plan.deadzone, classes.order, classes.ranges,
                       classes.bounds, classes.tables)


def decode_ans(payload: bytes, plan: QuantPlan, shape: tuple[int, ...]) -> np.ndarray:
    classes = plan.classes
    z = rans.decode(payload, (shape[0], int(np.prod(shape[1:]))), plan.deadzone, plan.flat_steps, classes.order,
                    classes.ranges, classes.bounds, classes.tables)
    if z is None:
        raise CorruptPayload("the rANS stream does not decode to this many symbols")
    return z.reshape(shape)
