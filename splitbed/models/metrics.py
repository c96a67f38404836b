"""Accuracy on labelled inputs and agreement with the uncompressed model on any input.

The two are never mixed: top-1/top-5 count only labelled samples; agreement compares a prediction
with the reference model's top-1 on the same input, label or not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Scores:
    n_items: int = 0
    n_labelled: int = 0
    top1_hits: int = 0
    top5_hits: int = 0
    agreements: int = 0
    n_compared: int = 0
    flips: list[str] = field(default_factory=list)  # ids whose top-1 differs from the reference

    def add(self, logits: torch.Tensor, labels: list[int | None], ids: list[str],
            reference_top1: torch.Tensor | None = None) -> None:
        top5 = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        top1 = top5[:, 0]
        self.n_items += len(ids)
        for i, label in enumerate(labels):
            if label is not None:
                self.n_labelled += 1
                self.top1_hits += int(top1[i].item() == label)
                self.top5_hits += int(label in top5[i].tolist())
        if reference_top1 is not None:
            same = (top1 == reference_top1).tolist()
            self.n_compared += len(same)
            self.agreements += sum(same)
            self.flips += [ids[i] for i, ok in enumerate(same) if not ok]

    @property
    def top1(self) -> float | None:
        return self.top1_hits / self.n_labelled if self.n_labelled else None

    @property
    def top5(self) -> float | None:
        return self.top5_hits / self.n_labelled if self.n_labelled else None

    @property
    def agreement(self) -> float | None:
        return self.agreements / self.n_compared if self.n_compared else None

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("flips")
        return {**data, "top1": self.top1, "top5": self.top5, "agreement": self.agreement}
