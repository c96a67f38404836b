"""AGLOP's inputs: for every option (split point, codec setting), what it costs and what it loses.

Two tables, both cached under ~/.cache/splitbed/aglop/ and rebuilt on request:
- the codec table, the same on every machine: wire bytes (mean and p90) and the loss under each
  criterion of codecs/criteria.py (calibrated and plain expected accuracy drop, labelled accuracy drop,
  top-1 agreement) on the tuning half of the photo evaluation set for ImageNet models (models/photos.py;
  the reporting half is left for benchmarks), the first test images for Fashion-MNIST; never the DISC
  calibration images.
  A plan picks its criterion (`criterion:`, default DEFAULT_CRITERION);
- the timing table per (model, edge device, machine): head and encode ms measured inside a cgroup at the
  device's calibrated, governed quota (splitbed.aglop.measure), decode and tail ms on the server node's cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from splitbed.codecs import CalibrationStore, get_codec, wire
from splitbed.codecs.criteria import ViewLosses, fit_temperature, softmax
from splitbed.codecs.disc_calibration import CALIBRATION_VERSION
from splitbed.codecs.evaluation import measure
from splitbed.devices.calibration import CACHE_FORMAT as DEVICE_CALIBRATION_FORMAT
from splitbed.devices.calibration import machine_key, server_threads
from splitbed.devices.governor import limit_cpu
from splitbed.host.cache import cache_root
from splitbed.models.datasets import calibration_samples, evaluation_samples, photo_views
from splitbed.models.partition import EDGE_ONLY, SERVER_ONLY, SplitModel, batched

TABLE_VERSION = 3  # 3: the calibrated criterion and the temperature it used
# The criteria a plan may budget, and the default: the calibrated drop (the expected drop at the
# temperature the table's labelled views fit) tracks the labelled drop on held-out photos where the
# plain expected drop understates it, and resolves one point where the labelled drop (about 100
# labelled photos per half) cannot (docs/codecs.md)
PLAN_CRITERIA = ("calibrated", "expected", "accuracy", "agreement")
DEFAULT_CRITERION = "calibrated"
DEFAULT_BUDGET_PTS = 1.0  # the loss a plan may spend, in points of its criterion
DISC_STEPS = (0.15, 0.2, 0.3, 0.4)  # the DISC settings AGLOP may choose from, per split (alpha 1.0)
JPEG_QUALITIES = (75, 85, 95)  # server-only: the input image as a JPEG
MAX_EVALUATION_ITEMS = 1000
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Option:
    """One thing the edge can do with a request: cut at `split`, send with `codec` and `params`."""

    split: str
    codec: str  # "" for edge-only: nothing is sent
    params: dict = field(default_factory=dict)
    bytes_mean: float = 0.0  # codec message bytes (the protocol header comes on top)
    bytes_p90: float = 0.0
    drop_pts: float = 0.0  # loss under the plan's criterion, points (load_options picks it from `drops`)
    drops: dict = field(default_factory=dict)  # criterion -> loss in points
    head_ms: float = 0.0  # on the emulated edge device
    encode_ms: float = 0.0  # on the emulated edge device
    decode_ms: float = 0.0  # on the server
    tail_ms: float = 0.0  # on the server

    @classmethod
    def from_dict(cls, data: dict) -> Option:
        return cls(**data)

    @property
    def key(self) -> str:
        return f"{self.split}|{self.codec}|{json.dumps(self.params, sort_keys=True)}"

    @property
    def offloads(self) -> bool:
        return self.split != EDGE_ONLY


def candidate_options(model: SplitModel) -> list[Option]:
    """The discrete space: raw fp32 at every split (Neurosurgeon's space), the input image as JPEG,
    DISC wherever the activation is smaller than the input (elsewhere server-only is never worse),
    and edge-only."""
    input_values = int(np.prod(model.input_shape))
    rgb = model.input_shape[0] == 3
    options = [Option(SERVER_ONLY, "raw")]
    options += [Option(SERVER_ONLY, "jpeg", {"quality": q, "rgb": rgb}) for q in JPEG_QUALITIES]
    with torch.no_grad():
        shapes = {k: v.shape[1:] for k, v in model.activations(torch.zeros(1, *model.input_shape)).items()}
    for split in model.split_points[1:-1]:
        options.append(Option(split, "raw"))
        if int(np.prod(shapes[split])) < input_values:
            options += [Option(split, "disc", {"step": s, "alpha": 1.0}) for s in DISC_STEPS]
    options.append(Option(EDGE_ONLY, ""))
    return options


def cache_dir() -> Path:
    return cache_root() / "aglop"


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def ensure_calibrations(model: SplitModel, options: list[Option], store: CalibrationStore, say=print) -> str:
    """Fit the DISC calibrations the options need; return a digest of them (the codec table's key)."""
    calibrations = store.ensure_splits(model, (o.split for o in options if o.codec == "disc"),
                                       lambda: torch.stack([s.tensor for s in calibration_samples(model)]), say)
    prints = [c.fingerprint for c in calibrations]
    text = json.dumps([TABLE_VERSION, [o.key for o in options], prints])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def profile_views(model: SplitModel) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
    """The inputs the codec table is measured on, with their acceptable labels."""
    if model.default_dataset == "imagenet-samples":
        views = photo_views(model, half="tune")
        return torch.stack([v.tensor for v in views]), [v.labels for v in views]
    samples = list(evaluation_samples(model))[:MAX_EVALUATION_ITEMS]
    return torch.stack([s.tensor for s in samples]), [() if s.label is None else (s.label,) for s in samples]


def reference_probabilities(logits: np.ndarray, labels: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray, float]:
    """The reference's probabilities, as they are and recalibrated by the temperature its labelled views
    fit (1 where none is labelled: the calibrated criterion is then the expected one)."""
    try:
        temperature = fit_temperature(logits, labels)
    except ValueError:
        temperature = 1.0
    return softmax(logits), softmax(logits, temperature), temperature


def criterion_drops(losses: ViewLosses) -> dict[str, float]:
    """criterion -> mean loss in points (the accuracy criterion over labelled views only)."""
    return {c: float(100 * np.nanmean(losses.losses[c])) if not np.isnan(losses.losses[c]).all() else 0.0
            for c in PLAN_CRITERIA}


@torch.no_grad()
def codec_table(model: SplitModel, options: list[Option], store: CalibrationStore, rebuild: bool = False,
                say=print, progress: bool = True) -> dict[str, dict]:
    """option key -> {bytes_mean, bytes_p90, drops, n_items}; measured once, cached by digest (minutes on
    a fresh 2-core machine: a progress bar counts the options, with the rate and the time left).

    One pass through the network: the activations at each split are carried on to the next (a head
    from the input per split would run the early stages once per split), in the channels-last copy."""
    digest = ensure_calibrations(model, options, store, say)
    path = cache_dir() / f"codecs-{model.name.replace('/', '_')}-{digest}.json"
    if path.exists() and not rebuild:
        return json.loads(path.read_text())["options"]
    say(f"measuring sizes and accuracy of {len(options)} options for {model.name} (once, cached)")
    acts, labels = profile_views(model)  # the inputs, then the tensor at each split in turn
    n_items, at, fast = len(acts), SERVER_ONLY, model.for_batches()
    predictions, sizes = {}, {}  # option key -> top-1 per view; option key -> (mean, p90) message bytes
    bar = tqdm(total=len(options), desc="options measured", unit="option", disable=not progress)
    for split in sorted(dict.fromkeys(o.split for o in options), key=model.index):
        acts, at = batched(fast.segment(at, split), acts), split
        for option in (o for o in options if o.split == split):
            bar.update(1)
            if option.codec == "":  # edge-only: nothing sent, nothing lost
                sizes[option.key] = (0.0, 0.0)
            elif option.codec == "raw":  # lossless: its size is fixed and it changes no prediction
                size = len(get_codec("raw").encode(acts[:1]))
                sizes[option.key] = (size, size)
            else:
                extra = {"calibration": store.get(model.name, split)} if option.codec == "disc" else {}
                rebuilt, row = measure(get_codec(option.codec, **option.params, **extra), acts.numpy(), store,
                                       timing_items=1)
                sizes[option.key] = (row["wire_bytes"], row["wire_bytes_p90"])
                predictions[option.key] = batched(fast.tail(split), torch.from_numpy(rebuilt)).argmax(1).numpy()
    bar.close()
    logits = batched(fast.segment(at, EDGE_ONLY), acts).numpy().astype(np.float64)
    reference, calibrated, temperature = reference_probabilities(logits, labels)
    table = {}
    for option in options:
        drops = ({c: 0.0 for c in PLAN_CRITERIA} if option.key not in predictions
                 else criterion_drops(ViewLosses.of(reference, predictions[option.key], labels, calibrated)))
        table[option.key] = {"bytes_mean": sizes[option.key][0], "bytes_p90": sizes[option.key][1], "drops": drops,
                             "n_items": n_items}
    write_json(path, {"model": model.name, "version": TABLE_VERSION, "temperature": temperature, "options": table})
    return table


def measure_times(side: str, model: SplitModel, options: list[Option], threads: int, group=None) -> dict:
    """Run splitbed.aglop.measure for one side: inside `group` (the edge, at its quota) or free (server)."""
    spec = cache_dir() / f"options-{os.getpid()}.json"
    write_json(spec, [asdict(o) for o in options])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, "-m", "splitbed.aglop.measure", side, "--model", model.name, "--threads", str(threads),
            "--options", str(spec)]
    try:
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                              cwd=REPO) as process:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {side} timing program did not start")
            if group is not None:
                group.add(process.pid)
            process.stdin.write("go\n")
            process.stdin.flush()
            line = process.stdout.readline()
            process.stdin.close()
            if process.wait(60) != 0 or not line:
                raise RuntimeError(f"the {side} timing program failed (exit {process.returncode})")
            return json.loads(line)
    finally:
        spec.unlink(missing_ok=True)


def build_profile(model: SplitModel, device: dict, cgroups, store: CalibrationStore | None = None,
                  rebuild: bool = False, say=print, progress: bool = True) -> dict:
    """The full profile for this model on this calibrated edge device (the runner's device dict:
    device, quota_cores, threads): options with sizes, losses and times. Cached per machine."""
    store = store or CalibrationStore()
    options = candidate_options(model)
    table = codec_table(model, options, store, rebuild, say, progress)
    path = cache_dir() / f"times-{model.name.replace('/', '_')}-{device['device']}-{machine_key()}.json"
    times = None if rebuild or not path.exists() else json.loads(path.read_text())
    # the same option keys time differently once the codecs' implementation or the device emulation changes
    versions = [wire.VERSION, CALIBRATION_VERSION, DEVICE_CALIBRATION_FORMAT, f"server threads {server_threads()}"]
    if times is None or times.get("keys") != [o.key for o in options] or times.get("codec_versions") != versions:
        say(f"timing every split and codec on {device['device']} and on the server (once, cached)")
        group = cgroups.create("aglop-profile") if device.get("quota_cores") else None
        try:
            with limit_cpu(group, device) if group else contextlib.nullcontext():
                edge = measure_times("edge", model, options, device.get("threads") or 1, group)
        finally:
            if group is not None:
                cgroups.discard(group)
        server = measure_times("server", model, options, server_threads())
        times = {"keys": [o.key for o in options], "codec_versions": versions, "device": device, "edge": edge,
                 "server": server}
        write_json(path, times)
    for option in options:
        entry = table[option.key]
        option.bytes_mean, option.bytes_p90, option.drops = (entry[k] for k in ("bytes_mean", "bytes_p90", "drops"))
        option.drop_pts = option.drops[DEFAULT_CRITERION]
        option.head_ms = times["edge"]["head_ms"][option.split]
        option.encode_ms = times["edge"]["encode_ms"].get(option.key, 0.0)
        option.decode_ms = times["server"]["decode_ms"].get(option.key, 0.0)
        option.tail_ms = times["server"]["tail_ms"][option.split] if option.offloads else 0.0
    return {"model": model.name, "device": device["device"], "machine": machine_key(),
            "timed_with": times["device"], "options": [asdict(o) for o in options]}


def load_options(profile: dict, criterion: str = DEFAULT_CRITERION) -> list[Option]:
    """The profile's options, each with `drop_pts` under `criterion` (a profile written by hand may give
    `drop_pts` alone: it then counts for every criterion)."""
    options = [Option.from_dict(o) for o in profile["options"]]
    for option in options:
        option.drop_pts = option.drops.get(criterion, option.drop_pts)
    return options
