"""Per-split profiles: what crosses the network at each split point and what each side costs.

For every split point: activation shape, dtype, fp32 bytes per input, sparsity (fraction of exact
zeros) and value range over sample inputs, and head/tail latency (median of N timed runs, batch 1,
at a given torch thread count). AGLOP plans from these.
"""

from __future__ import annotations

import statistics
import time

import torch

from splitbed.models.datasets import batches, load_dataset
from splitbed.models.partition import SplitModel

# A thread's first passes through a model run slow (allocator arenas, kernels): Lite0 on one core here
# 40-121, 30-50, 24-37 ms, then 22-27; and a new thread starts cold again (80 ms) in a warm process.
WARMUP_PASSES = 5


def pass_times_ms(fn, x: torch.Tensor, runs: int) -> list[float]:
    """The time of each of `runs` calls fn(x), without gradients, in ms."""
    times = []
    with torch.no_grad():
        for _ in range(runs):
            start = time.perf_counter_ns()
            fn(x)
            times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def median_ms(fn, x: torch.Tensor, runs: int) -> float:
    pass_times_ms(fn, x, 1)  # warm-up: first calls allocate
    return statistics.median(pass_times_ms(fn, x, runs))


def sample_inputs(model: SplitModel, count: int, dataset: str | None = None) -> torch.Tensor:
    samples = load_dataset(dataset or model.default_dataset, model)
    batch, _, _ = next(batches(samples, count))
    return batch


def profile_model(model: SplitModel, threads: int = 1, runs: int = 10, samples: int = 8,
                  dataset: str | None = None) -> dict:
    torch.set_num_threads(threads)
    inputs = sample_inputs(model, samples, dataset)
    acts = model.activations(inputs)
    one = inputs[:1]
    rows = []
    for split in model.split_points:
        act = acts[split]
        head, tail = model.head(split), model.tail(split)
        with torch.no_grad():
            boundary = head(one)
        rows.append({
            "name": split,
            "index": model.index(split),
            "shape": list(act.shape[1:]),
            "dtype": str(act.dtype).replace("torch.", ""),
            "fp32_bytes": int(act[0].numel() * 4),
            "sparsity": float((act == 0).float().mean()),
            "min": float(act.min()),
            "max": float(act.max()),
            "std": float(act.float().std()),
            "head_ms": median_ms(head, one, runs) if model.index(split) > 0 else 0.0,
            "tail_ms": median_ms(tail, boundary, runs) if split != model.split_points[-1] else 0.0,
        })
    return {
        "model": model.name,
        "threads": threads,
        "runs": runs,
        "samples": int(inputs.shape[0]),
        "input_shape": list(model.input_shape),
        "splits": rows,
    }


def format_profile(profile: dict) -> str:
    header = f"{'split':<12} {'shape':<16} {'fp32 KiB':>9} {'zeros':>6} {'min':>8} {'max':>8} {'head ms':>8} {'tail ms':>8}"
    lines = [f"{profile['model']}: {profile['threads']} thread(s), median of {profile['runs']}", header]
    for row in profile["splits"]:
        shape = "x".join(map(str, row["shape"]))
        lines.append(f"{row['name']:<12} {shape:<16} {row['fp32_bytes'] / 1024:>9.1f} {row['sparsity']:>6.1%} "
                     f"{row['min']:>8.2f} {row['max']:>8.2f} {row['head_ms']:>8.2f} {row['tail_ms']:>8.2f}")
    return "\n".join(lines)
