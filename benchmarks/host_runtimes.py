#!/usr/bin/env python3
"""Does the devices' own runtime, run on this machine, predict their published times better than PyTorch?

    .venv/bin/python -m benchmarks.host_runtimes [--json PATH]    # needs: .venv/bin/pip install -e '.[runtimes]'

A node's device time for a network is predicted from that network's time on this machine (one scale per
device, fitted on the fit half: benchmarks/device_models.py). The published tables come from ncnn on ARM;
the node runs PyTorch on x86. If much of the per-network miss came from the runtime (ncnn fuses batch
norm and activations into convolutions, picks Winograd or im2col per layer), ncnn's own time here would
predict the ARM times better. Each architecture is converted from the same PyTorch module by pnnx and
timed in ncnn (fp32, as on these ARMv8.0 cores; one thread, light mode) and in PyTorch, alternately, on
one pinned core, ROUNDS times RUN_S each; per device and runtime: the fit half's scale, the held-out
networks' predicted / published, and the smallest worst miss any one scale reaches on them in hindsight.
No emulation: nothing here needs cgroups.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.device_models import FIT_HALF, HELD_OUT, best_scale_worst, fit_half_scale, spread
from splitbed.devices.calibration import cpu_model
from splitbed.devices.catalog import load_profiles
from splitbed.devices.governor import node_cpus
from splitbed.devices.layer_costs import median_ms
from splitbed.devices.workload import build
from splitbed.errors import UserError, check_output_path, run_reporting_user_errors
from splitbed.testing.results_page import Page, table

RUNTIMES = ("pytorch", "ncnn")
ROUNDS, RUN_S = 2, 3.0
INSTALL = ".venv/bin/pip install -e '.[runtimes]'"


def ncnn_forward(model, x, folder: Path):
    """The module converted by pnnx (traced, fp32) and loaded into ncnn, checked to compute the module's
    output on a random input: a call runs one forward pass on x."""
    import ncnn
    import numpy as np
    import pnnx
    import torch

    traced = folder / "net.pt"
    torch.jit.trace(model, x).save(str(traced))
    done = subprocess.run([pnnx.EXEC_PATH, str(traced), f"inputshape=[{','.join(map(str, x.shape))}]", "fp16=0"],
                          cwd=folder, capture_output=True, text=True)
    if done.returncode or not (folder / "net.ncnn.param").exists():
        raise RuntimeError(f"pnnx could not convert it (exit {done.returncode}): {done.stderr[-300:]}")
    net = ncnn.Net()
    net.opt.num_threads, net.opt.lightmode = 1, True
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.load_param(str(folder / "net.ncnn.param"))
    net.load_model(str(folder / "net.ncnn.bin"))

    def run(image):
        extractor = net.create_extractor()
        extractor.input("in0", image)
        status, out = extractor.extract("out0")
        if status:
            raise RuntimeError(f"ncnn returned {status}")
        return out

    probe = torch.rand_like(x)  # the converted network must compute what the module does
    expected, got = model(probe).flatten().numpy(), np.array(run(ncnn.Mat(probe[0].numpy()))).ravel()
    if got.shape != expected.shape or np.abs(got - expected).max() > 1e-3 * np.abs(expected).max():
        raise RuntimeError(f"ncnn's output differs from PyTorch's: {np.abs(got - expected).max():.3g}")
    image = ncnn.Mat(x[0].numpy())
    return functools.partial(run, image)


def host_times(models: list[str]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Each network's one-thread ms in each runtime, on the core a one-thread node runs on, the runtimes
    taking turns (and the first turn alternating); and the networks that could not be converted, why."""
    import torch

    torch.set_num_threads(1)
    os.sched_setaffinity(0, {int(node_cpus(1))})
    times, skipped = {r: {} for r in RUNTIMES}, {}
    for model_name in models:
        model, x = build(model_name)
        with tempfile.TemporaryDirectory(prefix="splitbed-ncnn-") as folder, torch.no_grad():
            try:
                calls = {"pytorch": functools.partial(model, x), "ncnn": ncnn_forward(model, x, Path(folder))}
            except RuntimeError as err:  # this network is lost, not the others
                skipped[model_name] = str(err)
                print(f"  {model_name:<20} skipped: {err}", flush=True)
                continue
            rounds = {r: [] for r in RUNTIMES}
            for turn in range(ROUNDS):
                for runtime in RUNTIMES[::-1] if turn % 2 else RUNTIMES:
                    rounds[runtime].append(median_ms(calls[runtime], RUN_S))
        for runtime in RUNTIMES:
            times[runtime][model_name] = statistics.mean(rounds[runtime])
        print(f"  {model_name:<20} pytorch {times['pytorch'][model_name]:7.2f} ms   ncnn {times['ncnn'][model_name]:7.2f} ms",
              flush=True)
    return times, skipped


def device_entry(profile, times: dict[str, dict[str, float]]) -> dict:
    published = {m: t for m, t in profile.published.ms.items() if m in times["pytorch"]}  # converted ones
    entry = {"name": profile.key, "published_ms": published}
    for runtime in RUNTIMES:
        scale = fit_half_scale(published, times[runtime])
        ratios = {m: scale * times[runtime][m] / published[m] for m in published}
        entry[runtime] = {"scale": scale, "ratios": ratios, "held_out": spread(ratios, HELD_OUT),
                          "floor_held_out": best_scale_worst({m: published[m] for m in published if m in HELD_OUT},
                                                             times[runtime]),
                          "floor_fit_half": best_scale_worst({m: published[m] for m in published if m in FIT_HALF},
                                                             times[runtime])}
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    args = parser.parse_args()
    check_output_path(args.json, "--json")
    try:
        import ncnn  # noqa: F401
        import pnnx  # noqa: F401
    except ImportError as err:
        raise UserError(f"this benchmark needs ncnn and pnnx ({err})", where="benchmarks.host_runtimes",
                        fix=f"install them: {INSTALL}") from None
    profiles = [p for p in load_profiles().values() if p.constrained and p.published]
    times, skipped = host_times(list(dict.fromkeys(m for p in profiles for m in p.published.ms)))
    data = {"cpu_model": cpu_model(), "rounds": ROUNDS, "run_s": RUN_S, "fit_half": FIT_HALF, "held_out": HELD_OUT,
            "host_ms": times, "skipped": skipped, "devices": [device_entry(p, times) for p in profiles]}
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(section(data, {})))
    return 0


def section(data: dict, found: dict) -> list[str]:
    models = sorted(data["host_ms"]["pytorch"], key=lambda m: (m not in data["fit_half"], m))
    lines = [f"One-thread ms on this machine ({data['cpu_model']}), mean of {data['rounds']} medians of "
             f"{data['run_s']:.0f} s per runtime, taken alternately; ncnn from pnnx's conversion of the same module, "
             "fp32. Fit half: " + ", ".join(data["fit_half"]) + ".", ""]
    lines += table(["model", "PyTorch ms", "ncnn ms", "ncnn / PyTorch"],
                   [[m + ("" if m in data["fit_half"] else " (held out)"), f"{data['host_ms']['pytorch'][m]:.2f}",
                     f"{data['host_ms']['ncnn'][m]:.2f}", f"{data['host_ms']['ncnn'][m] / data['host_ms']['pytorch'][m]:.2f}"]
                    for m in models])
    lines += ["Per device: the held-out networks' time predicted from the fit half's one scale, / published (median, "
              "worst); and the smallest worst miss any one scale reaches, chosen knowing the published times.", ""]
    rows = []
    for d in data["devices"]:
        for runtime in RUNTIMES:
            entry = d[runtime]
            held = entry["held_out"]
            rows.append([d["name"], runtime, f"{held['median_ratio']:.2f}x", f"{held['worst_ratio']:.2f}x ({held['worst_model']})",
                         f"{entry['floor_held_out']:.2f}x", f"{entry['floor_fit_half']:.2f}x"])
    lines += table(["device", "runtime here", "held out: median", "held out: worst", "best one scale: held out",
                    "best one scale: fit half"], rows)
    return lines + [f"- {m}: not converted, {why}" for m, why in data.get("skipped", {}).items()]


def headline(data: dict, found: dict) -> list[list[str]]:
    """Per runtime here: the held-out networks' predicted / published, medians' and worst misses' range."""
    def spans(runtime: str) -> str:
        held = [d[runtime]["held_out"] for d in data["devices"]]
        medians, worst = [h["median_ratio"] for h in held], [h["worst_ratio"] for h in held]
        return (f"{min(medians):.2f}-{max(medians):.2f}x (worst {min(worst):.2f}x to {max(worst):.2f}x)")
    return [["device times predicted from this machine's one-thread times (held out, median)",
             f"PyTorch {spans('pytorch')}; ncnn {spans('ncnn')}"]]


PAGES = [Page("host_runtimes", "Devices: predicting from ncnn or PyTorch on this machine", order=62,
              argv=["-m", "benchmarks.host_runtimes"], section=section, headline=headline, headline_order=22)]


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors(main))
