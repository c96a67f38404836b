"""The run's pictures: timeline, stacked breakdown, e2e CDF, bytes per request, per-node breakdown, the
edge's memory over time, and the edge's energy against latency.

Each function draws from the rows it is given and returns how many data points it drew, so a test
can tell a plot of the run's data from an empty frame. Every figure carries a footer: the scenario
and how the link was emulated.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from splitbed.app.breakdown import STAGES  # noqa: E402

STAGE_LABELS = ["edge compute", "encode", "uplink", "server queue", "decode", "server compute", "downlink"]


def ok_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["status"] == "ok"]


def methods_of(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in rows))


def legend(ax, fontsize: int) -> None:
    """A legend only where something is labelled: a run with no answered requests still gets its plots."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=fontsize)


def finish(fig, path: Path, footer: str) -> None:
    fig.text(0.01, 0.005, footer, fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def timeline(rows: list[dict], path: Path, title: str, footer: str) -> int:
    """Trace rate and the planner's estimate, the split, and e2e latency per request over time."""
    fig, (ax_rate, ax_split, ax_e2e) = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    points = 0
    for method in methods_of(rows):
        mine = [r for r in rows if r["method"] == method]
        t = [float(r["start_s"]) for r in mine]
        rates = [(float(r["start_s"]), float(r["trace_rate_mbps"])) for r in mine if r["trace_rate_mbps"]]
        if rates:
            ax_rate.plot(*zip(*rates, strict=True), ".", label=f"trace rate ({method})")
        estimates = [(float(r["start_s"]), float(r["estimate_mbps"])) for r in mine if r["estimate_mbps"]]
        if estimates:
            ax_rate.plot(*zip(*estimates, strict=True), "x", label=f"planner estimate ({method})")
        ax_split.plot(t, [r["split"] for r in mine], ".", label=method)
        e2e = [float(r["e2e_ms"]) if r["status"] == "ok" else np.nan for r in mine]
        ax_e2e.plot(t, e2e, ".", label=method)
        failed = [float(r["start_s"]) for r in mine if r["status"] != "ok"]
        if failed:
            ax_e2e.plot(failed, [0] * len(failed), "rx", label=f"failed ({method})")
        points += len(mine)
    ax_rate.set_ylabel("uplink Mbit/s")
    ax_rate.set_title(f"{title}: timeline")
    if ax_rate.lines:
        ax_rate.legend(fontsize=7)
    else:
        ax_rate.text(0.5, 0.5, "fixed-rate link (no trace)", ha="center", transform=ax_rate.transAxes)
    ax_split.set_ylabel("split point")
    ax_e2e.set_ylabel("end-to-end ms")
    ax_e2e.set_xlabel("time since the run started (s)")
    legend(ax_e2e, 7)
    finish(fig, path, footer)
    return points


def breakdown(rows: list[dict], path: Path, title: str, footer: str, key: str = "method") -> int:
    """Mean time per stage, stacked, one bar per method (or per node)."""
    groups = list(dict.fromkeys(r[key] for r in ok_rows(rows)))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 3), 5))
    bottom = np.zeros(len(groups))
    for stage, label in zip(STAGES, STAGE_LABELS, strict=True):
        means = np.array([np.mean([float(r[stage]) for r in ok_rows(rows) if r[key] == g]) for g in groups])
        ax.bar(groups, means, bottom=bottom, label=label)
        bottom += means
    ax.set_ylabel("mean time per request (ms)")
    ax.set_title(f"{title}: where the time goes, per {key}")
    legend(ax, 8)
    finish(fig, path, footer)
    return len(groups)


def cdf(rows: list[dict], path: Path, title: str, footer: str) -> int:
    fig, ax = plt.subplots(figsize=(7, 5))
    points = 0
    for method in methods_of(rows):
        e2e = np.sort([float(r["e2e_ms"]) for r in ok_rows(rows) if r["method"] == method])
        if len(e2e):
            ax.step(e2e, np.arange(1, len(e2e) + 1) / len(e2e), where="post", label=method)
            points += len(e2e)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (ms, log)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{title}: latency CDF")
    legend(ax, 8)
    finish(fig, path, footer)
    return points


def wire_bytes(rows: list[dict], path: Path, title: str, footer: str) -> int:
    fig, ax = plt.subplots(figsize=(9, 4.5))
    points = 0
    for method in methods_of(rows):
        mine = [r for r in ok_rows(rows) if r["method"] == method]
        ax.plot([float(r["start_s"]) for r in mine], [float(r["wire_bytes"]) / 1024 for r in mine], ".",
                label=method)
        points += len(mine)
    ax.set_yscale("log")
    ax.set_xlabel("time since the run started (s)")
    ax.set_ylabel("bytes on the wire per request (KiB, log)")
    ax.set_title(f"{title}: request size")
    legend(ax, 8)
    finish(fig, path, footer)
    return points


def energy(rows: list[dict], path: Path, title: str, footer: str) -> int:
    """Each answered request's edge energy against its latency, per method, with the method's mean
    marked: where a plan sits between fast and frugal."""
    fig, ax = plt.subplots(figsize=(7, 5))
    points = 0
    for method in methods_of(rows):
        mine = [r for r in ok_rows(rows) if r["method"] == method and r["edge_energy_mj"] not in ("", None)]
        if not mine:
            continue
        e2e, mj = (np.array([float(r[c]) for r in mine]) for c in ("e2e_ms", "edge_energy_mj"))
        dots = ax.plot(e2e, mj, ".", alpha=0.3, markersize=3)[0]
        ax.plot(e2e.mean(), mj.mean(), "o", color=dots.get_color(), markersize=9, markeredgecolor="black", label=method)
        points += len(mine)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("end-to-end latency (ms, log)")
    ax.set_ylabel("edge energy per request, board + radio (mJ, log)")
    ax.set_title(f"{title}: energy against latency (large: the method's mean)")
    legend(ax, 8)
    finish(fig, path, footer)
    return points


def memory(rows: list[dict], path: Path, title: str, footer: str, limit_mb: float | None = None,
           predicted_mb: float | None = None) -> int:
    """The edge program's resident memory (and its anonymous part) per request over time, per node,
    against the node's limit and the memory predicted before the run."""
    fig, ax = plt.subplots(figsize=(10, 4))
    points = 0
    for node in dict.fromkeys(r["node"] for r in rows):
        mine = sorted((float(r["start_s"]), float(r["edge_rss_mb"]), float(r["edge_anon_mb"]))
                      for r in rows if r["node"] == node and r["edge_rss_mb"])
        if mine:
            t, rss, anon = zip(*mine, strict=True)
            ax.plot(t, rss, ".", markersize=3, label=f"{node}: resident (VmRSS, with shared library pages)")
            ax.plot(t, anon, ".", markersize=3, label=f"{node}: anonymous (what the limit holds)")
            points += len(mine)
    for value, style, label in ((limit_mb, "r-", "the node's memory limit"),
                                (predicted_mb, "k--", "predicted before the run (anonymous)")):
        if value:
            ax.axhline(value, color=style[0], linestyle=style[1:], linewidth=1, label=label)
    ax.set_xlabel("time since the first plan started (s)")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{title}: the edge program's memory")
    legend(ax, 8)
    finish(fig, path, footer)
    return points
