"""A study's tidy table: one row per run x method, the swept values as columns, then the run's numbers.

study.csv (pandas reads it with no options), study.md, and plots/p50_e2e.png: p50 end-to-end latency
per method along the first swept field, one panel per value of the second.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from splitbed.analysis.plots import finish, legend  # noqa: E402
from splitbed.analysis.summary import SUMMARY_COLUMNS, summarise  # noqa: E402
from splitbed.app.breakdown import read_rows  # noqa: E402
from splitbed.errors import UserError  # noqa: E402

RUN_COLUMNS = ["run_id", "run_status", "run_folder"]


def table_rows(runs: list[dict], swept: list[str]) -> list[dict]:
    """runs: {run_id, values (swept field -> value), status, folder (relative to the study folder), dir}."""
    rows = []
    for run in runs:
        base = {**{field: run["values"][field] for field in swept}, "run_id": run["run_id"],
                "run_status": run["status"], "run_folder": run["folder"]}
        requests = Path(run["dir"]) / "requests.csv"
        try:
            summary = summarise(read_rows(requests)) if requests.exists() else []
        except UserError:
            summary = []
        if not summary:  # a run that failed before any request still has its row, with its reason
            rows.append({**base, **dict.fromkeys(SUMMARY_COLUMNS, ""), "method": ""})
        rows += [{**base, **row} for row in summary]
    return rows


def write_table(folder: Path, rows: list[dict], swept: list[str], title: str) -> None:
    columns = [*swept, *SUMMARY_COLUMNS, *RUN_COLUMNS]
    with (folder / "study.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = [*swept, "method", "requests", "failed", "p50_e2e_ms", "p90_e2e_ms", "mean_e2e_ms", "mean_wire_bytes",
             "agreement", "peak_edge_rss_mb", "mean_edge_energy_mj", "run_status"]
    lines = [f"# {title}", "", f"{len({r['run_id'] for r in rows})} runs, {len(rows)} rows; every column is in "
             "study.csv.", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in shown) + " |" for r in rows]
    (folder / "study.md").write_text("\n".join(lines) + "\n")
    plot_p50(folder / "plots" / "p50_e2e.png", rows, swept, title)


def plot_p50(path: Path, rows: list[dict], swept: list[str], title: str) -> int:
    """p50 e2e per method along swept[0], one panel per value of swept[1] (if any); returns points drawn."""
    rows = [r for r in rows if r["method"] and r["p50_e2e_ms"] not in ("", None)]
    if not rows or not swept:
        return 0
    path.parent.mkdir(exist_ok=True)
    x_field, panel_field = swept[0], (swept[1] if len(swept) > 1 else None)
    panels = list(dict.fromkeys(str(r[panel_field]) for r in rows)) if panel_field else [""]
    xs = list(dict.fromkeys(str(r[x_field]) for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False, sharey=True)
    drawn = 0
    for ax, panel in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if not panel_field or str(r[panel_field]) == panel]
        for method in dict.fromkeys(r["method"] for r in mine):
            points = {}
            for r in mine:
                if r["method"] == method:  # several runs per x (other swept fields): their median
                    points.setdefault(str(r[x_field]), []).append(float(r["p50_e2e_ms"]))
            ys = [sorted(points[x])[len(points[x]) // 2] if x in points else float("nan") for x in xs]
            ax.plot(range(len(xs)), ys, marker="o", label=method)
            drawn += len(points)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([Path(x).name for x in xs], rotation=20, fontsize=8)
        ax.set_xlabel(x_field)
        ax.set_title(f"{panel_field} = {panel}" if panel_field else title, fontsize=9)
        ax.set_yscale("log")
    axes[0][0].set_ylabel("p50 end-to-end ms (log)")
    legend(axes[0][-1], 7)
    finish(fig, path, f"{title}: median over runs that share the x value and panel")
    return drawn
