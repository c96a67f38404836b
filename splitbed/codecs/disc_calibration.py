"""DISC's calibration: the state a DISC encoder and decoder share, fitted once per (model, split).

fit() derives the channel transform (a KLT in the frozen tail's Fisher metric), per-coefficient Fisher
weights and Laplace scales from unlabelled calibration inputs and gradients of the model's own
output; Calibration holds them and saves/loads one .npz (allow_pickle=False); CalibrationStore finds
them under the cache folder by (model, split) or by the fingerprint a message carries.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.fft import dctn

from splitbed.codecs.base import CorruptPayload
from splitbed.errors import UserError
from splitbed.host.cache import cache_root
from splitbed.host.memory import MIB, BoundedCache
from splitbed.models.partition import batched

CALIBRATION_VERSION = 3  # bump when Calibration's fields change: old files are then fitted anew
FISHER_SAMPLES = 2  # labels drawn from the model's own softmax per calibration input
OUTER_PRODUCT_BYTES = 512 * MIB  # one gradient pass keeps C x C per position twice (1.5x that at its peak,
#                                   while adding a batch's): Lite0's largest is 80 MB
FISHER_RIDGE = 1e-3  # added to the (trace-normalised) channel Fisher matrix: channels the tail ignores
#                      still get a finite step


@dataclass
class Calibration:
    model: str
    split: str
    mean: np.ndarray  # (C,)
    analysis: np.ndarray  # (C, C) coefficients z = analysis.T @ (x - mean), by decreasing variance
    synthesis: np.ndarray  # (C, C) its inverse: x = synthesis @ z + mean
    variance: np.ndarray  # (C,) component variances (in the tail's metric)
    fisher: np.ndarray  # (C, H, W) per-coefficient sensitivity, mean 1 (DCT domain)
    fisher_pixel: np.ndarray  # (C, H, W) the same without the DCT
    scale: np.ndarray  # (C, H, W) mean |coefficient| (DCT domain)
    scale_pixel: np.ndarray  # (C, H, W) mean |coefficient| without the DCT
    low: np.ndarray  # (C,) smallest value seen per channel: 0 after a ReLU, which decoding restores
    high: np.ndarray  # (C,) largest value seen per channel (6 after a ReLU6)

    FIELDS = ("mean", "analysis", "synthesis", "variance", "fisher", "fisher_pixel", "scale", "scale_pixel",
              "low", "high")

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self.FIELDS)

    @functools.cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.mean, self.analysis, self.fisher, self.scale, self.low, self.high):
            digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return digest.hexdigest()[:12]  # 6 bytes on the wire: collisions among a few dozen files ~1e-11

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, model=np.array(self.model), split=np.array(self.split),
                 **{k: getattr(self, k) for k in self.FIELDS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Calibration:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
        return cls(model=str(fields.pop("model")), split=str(fields.pop("split")), **fields)


def project(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply matrix.T across the channel axis of (N, C, H, W): one matmul per item."""
    n, c, h, w = x.shape
    return (matrix.T @ x.reshape(n, c, h * w)).reshape(n, matrix.shape[1], h, w)


def head_activations(model, split: str, inputs: torch.Tensor, batch: int = 32) -> np.ndarray:
    return batched(model.head(split), inputs, batch).numpy()


def outer_per_position(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (H*W, C, C): at each position, the sum over items of the channel outer product."""
    n, c, h, w = x.shape
    columns = x.reshape(n, c, h * w).transpose(2, 1, 0)
    return columns @ columns.transpose(0, 2, 1)


def quadratic_forms(outer: np.ndarray, matrix: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H*W, C, C) outer products, (C, K) transform -> (K, H, W): at each position, the sum over items of
    the squared coefficients (matrix.T @ x)^2, read off the outer products without the items."""
    return (matrix[None] * (outer @ matrix)).sum(1).T.reshape(matrix.shape[1], h, w)


def fit(model, split: str, inputs: torch.Tensor, seed: int = 0) -> Calibration:
    """Fit DISC's state for `model` at `split` on unlabelled calibration inputs.

    The channel transform is a KLT in the tail's own metric: with F = L L^T the channel Fisher
    matrix (how much the model's output moves per unit of error along each channel direction), the
    coefficients are the principal components of L^T x. Equal quantisation error then costs equal
    output change in every component, which a plain KLT (orthonormal in activation space) ignores.
    """
    fast = model.for_batches()
    acts = head_activations(fast, split, inputs).astype(np.float64)
    if acts.ndim != 4:
        raise UserError(f"DISC needs 4-d (N, C, H, W) activations; split {split} gives {acts.shape}",
                        fix="use another codec at this split")
    n, c, h, w = acts.shape
    pixels = acts.transpose(0, 2, 3, 1).reshape(-1, c)
    mean = pixels.mean(0)
    covariance = np.atleast_2d(np.cov((pixels - mean).T))
    # One pass of gradients, kept as channel outer products per position and per DCT frequency: the
    # per-coefficient Fisher terms of the transform fitted below are quadratic forms of them. Where those
    # would not fit OUTER_PRODUCT_BYTES (wide, large activations), the channel matrix alone, and a
    # second pass over the same draws once the transform is known.
    one_pass = 2 * h * w * c * c * 8 <= OUTER_PRODUCT_BYTES
    pixel_outer = np.zeros((h * w, c, c)) if one_pass else None
    dct_outer = np.zeros((h * w, c, c)) if one_pass else None
    channel_fisher = np.zeros((c, c))
    for grad in tail_gradients(fast, split, acts, seed):
        if one_pass:
            pixel_outer += outer_per_position(grad)
            dct_outer += outer_per_position(dctn(grad, axes=(2, 3), norm="ortho"))
        else:
            g = grad.transpose(0, 2, 3, 1).reshape(-1, c)
            channel_fisher += g.T @ g
    if one_pass:
        channel_fisher = pixel_outer.sum(0)
    channel_fisher /= max(np.trace(channel_fisher) / c, 1e-30)
    lower = np.linalg.cholesky(channel_fisher + FISHER_RIDGE * np.eye(c))
    variance, rotation = np.linalg.eigh(lower.T @ covariance @ lower)
    order = np.argsort(variance)[::-1]
    variance, rotation = np.maximum(variance[order], 0), rotation[:, order]
    analysis = lower @ rotation
    synthesis = np.linalg.solve(lower.T, rotation)
    # d output / d coefficient is synthesis.T @ (d output / d activation), position by position
    if one_pass:
        fisher_pix = quadratic_forms(pixel_outer, synthesis, h, w)
        fisher_dct = quadratic_forms(dct_outer, synthesis, h, w)
    else:
        fisher_dct, fisher_pix = np.zeros((c, h, w)), np.zeros((c, h, w))
        for grad in tail_gradients(fast, split, acts, seed):  # the same draws again
            gz = project(grad, synthesis)
            fisher_pix += (gz**2).sum(0)
            fisher_dct += (dctn(gz, axes=(2, 3), norm="ortho") ** 2).sum(0)
    z = project(acts - mean[None, :, None, None], analysis)
    return Calibration(model.name, split, mean, analysis, synthesis, variance,
                       fisher=fisher_dct / max(fisher_dct.mean(), 1e-30),
                       fisher_pixel=fisher_pix / max(fisher_pix.mean(), 1e-30),
                       scale=np.abs(dctn(z, axes=(2, 3), norm="ortho")).mean(0), scale_pixel=np.abs(z).mean(0),
                       low=acts.min(axis=(0, 2, 3)), high=acts.max(axis=(0, 2, 3)))


def tail_gradients(model, split: str, acts: np.ndarray, seed: int):
    """Gradients of log p(y | x) w.r.t. the activations, y drawn from the model's own softmax
    (FISHER_SAMPLES draws per input, fixed seed): samples of the Fisher information, no labels."""
    tail = model.tail(split)
    generator = torch.Generator().manual_seed(seed)
    for i in range(0, len(acts), 32):
        x = torch.from_numpy(acts[i : i + 32].astype(np.float32)).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        with torch.enable_grad():  # callers may be inside no_grad
            log_probs = torch.log_softmax(tail(x), dim=1)
        for _ in range(FISHER_SAMPLES):
            labels = torch.multinomial(log_probs.exp().detach(), 1, generator=generator)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(log_probs.gather(1, labels).sum(), x, retain_graph=True)
            yield grad.double().numpy()


CALIBRATION_CACHE_BYTES = 96 * MIB  # per process; Lite0's are 0.6-2.3 MB each (splitbed.app.footprint)


class CalibrationStore:
    """Calibration files under a cache folder, one per (model, split); fitted on first use. Loaded ones
    are kept up to CALIBRATION_CACHE_BYTES, least recently used out first (a server meets any split)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else cache_root() / "calibration"
        self.loaded = BoundedCache(CALIBRATION_CACHE_BYTES, lambda cal: cal.nbytes)
        self.paths: dict[str, Path] = {}  # fingerprint -> file, for the files looked at

    def path(self, model_name: str, split: str) -> Path:
        safe = model_name.replace("/", "_").replace(":", "_")
        return self.root / f"v{CALIBRATION_VERSION}" / safe / f"{split}.npz"

    def by_fingerprint(self, fingerprint: str) -> Calibration:
        """The calibration a message names: its file, found by reading the files under the root once
        (one at a time: only the one asked for stays loaded)."""
        if fingerprint not in self.paths:
            for path in sorted(self.root.glob(f"v{CALIBRATION_VERSION}/*/*.npz")):
                if path not in self.paths.values():
                    self.paths[Calibration.load(path).fingerprint] = path
        if fingerprint not in self.paths:
            raise CorruptPayload(f"no DISC calibration with fingerprint {fingerprint} under {self.root}")
        return self.loaded.get(self.paths[fingerprint], lambda: Calibration.load(self.paths[fingerprint]))

    def get(self, model_name: str, split: str) -> Calibration:
        path = self.path(model_name, split)

        def load() -> Calibration:  # only on a miss: the edge asks once per request
            if not path.exists():
                raise UserError(f"no DISC calibration for {model_name} at {split}", where=str(path),
                                fix="calibrate first: python -m splitbed.codecs calibrate MODEL")
            return Calibration.load(path)

        return self.loaded.get(path, load)

    def ensure_splits(self, model, splits, inputs_fn, say=print) -> list[Calibration]:
        """Each split's calibration, loaded, or fitted on inputs_fn() (called once, if any is missing) and
        saved, saying so: a fresh machine fits a dozen of them before its first run."""
        inputs = None
        out = []
        for split in dict.fromkeys(splits):
            if not self.path(model.name, split).exists():
                inputs = inputs if inputs is not None else inputs_fn()
                say(f"DISC calibration for {model.name} at {split} (once, cached)")
            out.append(self.ensure(model, split, lambda batch=inputs: batch))
        return out

    def ensure(self, model, split: str, inputs_fn, refit: bool = False) -> Calibration:
        """Load, or fit on inputs_fn() and save."""
        path = self.path(model.name, split)
        if refit or not path.exists():
            fit(model, split, inputs_fn()).save(path)
            self.loaded.clear()
            self.paths.clear()
        return self.get(model.name, split)
