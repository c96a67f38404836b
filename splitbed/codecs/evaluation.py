"""Measuring a codec on a set of activations: sizes, symbol entropy, timings, and the top-1 loss its
reconstruction causes. Shared by the codec benchmark and AGLOP's profile tables."""

from __future__ import annotations

import statistics
import time

import numpy as np

from splitbed.codecs.base import decode
from splitbed.codecs.disc import quantised_symbols

NEAR_TIE_LOGITS = 0.1  # items whose top-2 logits are this close flip at almost any coding noise


def near_ties(logits) -> np.ndarray:
    """Per item (rows of a logits tensor), whether its top-2 logits are within NEAR_TIE_LOGITS."""
    top2 = logits.topk(2, dim=1).values
    return ((top2[:, 0] - top2[:, 1]) < NEAR_TIE_LOGITS).numpy()


def order0_entropy(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def symbols_of(codec, x: np.ndarray) -> np.ndarray | None:
    if codec.name == "disc":
        return quantised_symbols(codec, x)
    if codec.name == "int8":
        lo, hi = x.min(axis=(0, 2, 3), keepdims=True), x.max(axis=(0, 2, 3), keepdims=True)
        return np.round((x - lo) / np.where(hi > lo, (hi - lo) / 255, 1))
    return None


def measure(codec, acts: np.ndarray, store, timing_items: int, head=None) -> tuple[np.ndarray, dict]:
    """Encode and decode every tensor on its own; time a subset. With `head` (item index -> runs the
    model's head on that item), the head is timed right before each timed encode, so the codec's
    share of the head's time compares two timings taken under the same host conditions."""
    sizes, rebuilt, entropies, enc_ms, dec_ms, head_ms = [], [], [], [], [], []
    for i in range(len(acts)):
        x = acts[i : i + 1]
        timed = i < timing_items
        if timed and head is not None:
            start = time.perf_counter_ns()
            head(i)
            head_ms.append((time.perf_counter_ns() - start) / 1e6)
        start = time.perf_counter_ns()
        message = codec.encode(x)
        middle = time.perf_counter_ns()
        rebuilt.append(decode(message, store))
        end = time.perf_counter_ns()
        if timed:
            enc_ms.append((middle - start) / 1e6)
            dec_ms.append((end - middle) / 1e6)
            symbols = symbols_of(codec, x)
            if symbols is not None:
                entropies.append(order0_entropy(symbols))
        sizes.append(len(message))
    values = acts[0].size
    mean_bytes = float(np.mean(sizes))
    row = {
        "wire_bytes": mean_bytes,
        "wire_bytes_p90": float(np.percentile(sizes, 90)),
        "fp32_bytes": values * 4,
        "reduction_pct": 100 * (1 - mean_bytes / (values * 4)),
        "bits_per_value": mean_bytes * 8 / values,
        "order0_entropy_bits": float(np.mean(entropies)) if entropies else None,
        "encode_ms": statistics.median(enc_ms),
        "decode_ms": statistics.median(dec_ms),
        "item_bytes": sizes,  # per tensor, for numbers over a subset (a held-out half); not for the JSON
    }
    if head_ms:
        row["head_ms"] = statistics.median(head_ms)
        row["codec_share_pct"] = 100 * statistics.median(
            (e + d) / h for e, d, h in zip(enc_ms, dec_ms, head_ms, strict=True))
    return np.concatenate(rebuilt), row


def scores(predictions: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    """(agreement drop in points, labelled accuracy drop in points)."""
    agreement_drop = 100 * (1 - float((predictions == reference).mean()))
    labelled = labels >= 0
    if not labelled.any():
        return agreement_drop, None
    base = float((reference[labelled] == labels[labelled]).mean())
    now = float((predictions[labelled] == labels[labelled]).mean())
    return agreement_drop, 100 * (base - now)
