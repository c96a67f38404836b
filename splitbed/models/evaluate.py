"""Evaluate a model (optionally with a transform applied at a split point) on a dataset."""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm import tqdm

from splitbed.models.datasets import batches, load_dataset
from splitbed.models.metrics import Scores
from splitbed.models.partition import SplitModel


@torch.no_grad()
def evaluate(model: SplitModel, dataset: str, batch_size: int = 64, limit: int | None = None,
             split: str | None = None, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             quiet: bool = False) -> Scores:
    """Top-1/5 on labelled samples; with `transform` at `split`, also agreement with the plain model."""
    scores = Scores()
    full = model.full()
    head = tail = None
    if transform is not None:
        head, tail = model.head(split), model.tail(split)
    samples = load_dataset(dataset, model)
    progress = tqdm(total=limit, desc=f"eval {model.name}", unit="img", disable=quiet, leave=False)
    seen = 0
    for x, labels, ids in batches(samples, batch_size):
        if limit is not None and seen >= limit:
            break
        if limit is not None and seen + len(ids) > limit:
            keep = limit - seen
            x, labels, ids = x[:keep], labels[:keep], ids[:keep]
        if transform is None:
            scores.add(full(x), labels, ids)
        else:
            reference = full(x).argmax(-1)
            scores.add(tail(transform(head(x))), labels, ids, reference)
        seen += len(ids)
        progress.update(len(ids))
    progress.close()
    return scores
