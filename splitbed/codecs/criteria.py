"""What a lossy codec costs in accuracy, three ways, with bootstrap intervals over photos.

- accuracy: labelled top-1 accuracy of the uncompressed model minus that of the coded one, on views
  with an honest label (a set of acceptable classes: a view is right if its top-1 is in the set);
- expected: the reference model's own probability of its answer minus its probability of the coded
  answer, on every view: a label-free estimate of the labelled accuracy drop, as good as the
  reference is calibrated (`calibration` checks that on the labelled views);
- agreement: the share of views whose top-1 changes (every flip counts, near ties too), on all views
  and on the confident ones (reference top-1 probability >= CONFIDENT);
- calibrated: the expected drop under the reference's probabilities recalibrated by temperature
  scaling (Guo et al., ICML 2017: one temperature, fitted on labelled views of another half by
  likelihood): a model that is right more often than it is confident has its expected drop
  understated, and a temperature under 1 sharpens its probabilities to what its labels show.
All in points (percent). A photo is the unit: its views are resampled together, so the interval says
what another set of photos would show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CRITERIA = ("accuracy", "expected", "calibrated", "agreement", "agreement_confident")
CONFIDENT = 0.5
BOOTSTRAP = 1000


@dataclass
class ViewLosses:
    """Per view: the loss under each criterion (NaN where the criterion does not apply)."""

    losses: dict[str, np.ndarray]

    @classmethod
    def of(cls, reference_probs: np.ndarray, coded_top1: np.ndarray, labels: list[tuple[int, ...]],
           calibrated_probs: np.ndarray | None = None) -> ViewLosses:
        """calibrated_probs: the reference's probabilities after temperature scaling (the `calibrated`
        criterion, only when given)."""
        rows = np.arange(len(coded_top1))
        reference_top1 = reference_probs.argmax(1)
        labelled = np.array([bool(s) for s in labels])
        right_ref = np.array([t in s for t, s in zip(reference_top1, labels, strict=True)], dtype=float)
        right_coded = np.array([t in s for t, s in zip(coded_top1, labels, strict=True)], dtype=float)
        flips = (coded_top1 != reference_top1).astype(float)
        confident = reference_probs[rows, reference_top1] >= CONFIDENT
        return cls({
            "accuracy": np.where(labelled, right_ref - right_coded, np.nan),
            "expected": reference_probs[rows, reference_top1] - reference_probs[rows, coded_top1],

            "agreement": flips,
            "agreement_confident": np.where(confident, flips, np.nan),
            **({} if calibrated_probs is None else
               {"calibrated": calibrated_probs[rows, reference_top1] - calibrated_probs[rows, coded_top1]}),
        })


def summarise(view_losses: ViewLosses, photos: np.ndarray, keep: np.ndarray, seed: int = 0,
              resamples: int = BOOTSTRAP) -> dict[str, dict]:
    """criterion -> {pts, lo, hi, views, photos} over the views in `keep`: the mean loss in points and
    its 95% percentile interval from resampling photos with replacement."""
    rng = np.random.default_rng(seed)
    out = {}
    for criterion, loss in view_losses.losses.items():
        use = keep & ~np.isnan(loss)
        units, index = np.unique(photos[use], return_inverse=True)
        if len(units) == 0:
            out[criterion] = {"pts": None, "lo": None, "hi": None, "views": 0, "photos": 0}
            continue
        sums = np.bincount(index, weights=loss[use], minlength=len(units))
        counts = np.bincount(index, minlength=len(units)).astype(float)
        weights = rng.multinomial(len(units), np.full(len(units), 1 / len(units)), size=resamples)
        stats = 100 * (weights @ sums) / np.maximum(weights @ counts, 1)
        out[criterion] = {"pts": float(100 * sums.sum() / counts.sum()), "lo": float(np.percentile(stats, 2.5)),
                          "hi": float(np.percentile(stats, 97.5)), "views": int(counts.sum()), "photos": len(units)}
    return out


def calibration(reference_probs: np.ndarray, labels: list[tuple[int, ...]], bins: int = 10) -> dict:
    """How well the reference's confidence matches its labelled accuracy: mean confidence, accuracy,
    and the expected calibration error (10 equal-width bins), on the labelled views."""
    labelled = np.array([bool(s) for s in labels], dtype=bool)
    if not labelled.any():
        return {"views": 0, "accuracy_pct": None, "mean_confidence_pct": None, "ece_pts": None}
    top1 = reference_probs.argmax(1)[labelled]
    confidence = reference_probs.max(1)[labelled]
    right = np.array([t in s for t, s in zip(top1, [s for s in labels if s], strict=True)], dtype=float)
    edges = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = sum(abs(right[edges == b].mean() - confidence[edges == b].mean()) * (edges == b).mean()
              for b in range(bins) if (edges == b).any())
    return {"views": int(labelled.sum()), "accuracy_pct": float(100 * right.mean()),
            "mean_confidence_pct": float(100 * confidence.mean()), "ece_pts": float(100 * ece)}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def label_nll(logits: np.ndarray, labels: list[tuple[int, ...]], temperature: float) -> float:
    """Mean negative log-likelihood of the labelled views, a view's likelihood being the probability
    of its set of acceptable classes."""
    probs = softmax(logits, temperature)
    return float(-np.mean([np.log(max(probs[i, list(s)].sum(), 1e-300)) for i, s in enumerate(labels)]))


def fit_temperature(logits: np.ndarray, labels: list[tuple[int, ...]], low: float = 0.05, high: float = 20.0) -> float:
    """The temperature that maximises the labelled views' likelihood (unlabelled views are skipped):
    a grid over log T, then golden-section search around its best point. ValueError without labels."""
    keep = [i for i, s in enumerate(labels) if s]
    if not keep:
        raise ValueError("no labelled view to fit a temperature on")
    logits, labels = logits[keep], [labels[i] for i in keep]
    grid = np.exp(np.linspace(np.log(low), np.log(high), 61))
    best = int(np.argmin([label_nll(logits, labels, t) for t in grid]))
    a, b = np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if label_nll(logits, labels, np.exp(c)) < label_nll(logits, labels, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))
