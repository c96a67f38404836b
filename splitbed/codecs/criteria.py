"""What a lossy codec costs in accuracy, three ways, with bootstrap intervals over photos.

- accuracy: labelled top-1 accuracy of the uncompressed model minus that of the coded one, on views
  with an honest label (a set of acceptable classes: a view is right if its top-1 is in the set);
- expected: the reference model's own probability of its answer minus its probability of the coded
  answer, on every view: a label-free estimate of the labelled accuracy drop, as good as the
  reference is calibrated (`calibration` checks that on the labelled views);
- agreement: the share of views whose top-1 changes (every flip counts, near ties too), on all views
  and on the confident ones (reference top-1 probability >= CONFIDENT).
All in points (percent). A photo is the unit: its views are resampled together, so the interval says
what another set of photos would show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CRITERIA = ("accuracy", "expected", "agreement", "agreement_confident")
CONFIDENT = 0.5
BOOTSTRAP = 1000


@dataclass
class ViewLosses:
    """Per view: the loss under each criterion (NaN where the criterion does not apply)."""

    losses: dict[str, np.ndarray]

    @classmethod
    def of(cls, reference_probs: np.ndarray, coded_top1: np.ndarray, labels: list[tuple[int, ...]]) -> ViewLosses:
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
    labelled = np.array([bool(s) for s in labels])
    top1 = reference_probs.argmax(1)[labelled]
    confidence = reference_probs.max(1)[labelled]
    right = np.array([t in s for t, s in zip(top1, [s for s in labels if s], strict=True)], dtype=float)
    edges = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = sum(abs(right[edges == b].mean() - confidence[edges == b].mean()) * (edges == b).mean()
              for b in range(bins) if (edges == b).any())
    return {"views": int(labelled.sum()), "accuracy_pct": float(100 * right.mean()),
            "mean_confidence_pct": float(100 * confidence.mean()), "ece_pts": float(100 * ece)}
