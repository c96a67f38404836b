"""summary.csv and summary.md of a run: per method, count, failures, p50/p90/p99 e2e, mean per stage,
bytes on the wire, accuracy and agreement, the edge program's peak resident memory, and the edge's
mean energy per request (board, radio, both; empty where not modelled)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from splitbed.app.breakdown import ENERGY, STAGES, read_rows

SUMMARY_COLUMNS = ["method", "requests", "failed", "p50_e2e_ms", "p90_e2e_ms", "p99_e2e_ms", "mean_e2e_ms",
                   *[f"mean_{s}" for s in STAGES], "mean_wire_bytes", "accuracy", "n_labelled", "agreement",
                   "peak_edge_rss_mb", *[f"mean_{e}" for e in ENERGY]]


def summarise(rows: list[dict], key: str = "method") -> list[dict]:
    """One row per method (or per node, with key="node")."""
    out = []
    for method in dict.fromkeys(r[key] for r in rows):
        mine = [r for r in rows if r[key] == method]
        ok = [r for r in mine if r["status"] == "ok"]
        e2e = np.array([float(r["e2e_ms"]) for r in ok]) if ok else np.array([np.nan])
        labelled = [r for r in ok if r["correct"] != ""]
        row = {"method": method, "requests": len(mine), "failed": len(mine) - len(ok),
               "p50_e2e_ms": np.percentile(e2e, 50), "p90_e2e_ms": np.percentile(e2e, 90),
               "p99_e2e_ms": np.percentile(e2e, 99), "mean_e2e_ms": float(np.mean(e2e)),
               **{f"mean_{s}": float(np.mean([float(r[s]) for r in ok])) if ok else np.nan for s in STAGES},
               "mean_wire_bytes": float(np.mean([float(r["wire_bytes"]) for r in ok])) if ok else np.nan,
               "accuracy": float(np.mean([int(r["correct"]) for r in labelled])) if labelled else "",
               "n_labelled": len(labelled),
               "agreement": float(np.mean([int(r["agrees_with_reference"]) for r in ok])) if ok else "",
               "peak_edge_rss_mb": max((float(r["edge_rss_mb"]) for r in mine if r["edge_rss_mb"]), default=""),
               **{f"mean_{e}": mean_known(ok, e) for e in ENERGY}}
        out.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    return out


def mean_known(rows: list[dict], column: str) -> float | str:
    """The column's mean over the rows that have it; empty when none does (not modelled)."""
    values = [float(r[column]) for r in rows if r[column] != ""]
    return float(np.mean(values)) if values else ""


def write_summaries(run_dir: Path, scenario_name: str, backend: str | None, notes: list[str] = ()) -> list[dict]:
    rows = read_rows(run_dir / "requests.csv")
    summary = summarise(rows)
    with (run_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(summary)
    lines = [f"# {scenario_name}", "", f"Link backend: {backend}. Run folder: `{run_dir.name}`.", "",
             *(f"**{note}**" for note in notes), *([""] if notes else []), *markdown_table(summary, "method")]
    if len({r["node"] for r in rows}) > 1:
        lines += ["", "## Per edge node", "", *markdown_table(summarise(rows, key="node"), "node")]
    (run_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return summary


def markdown_table(summary: list[dict], key: str) -> list[str]:
    lines = [f"| {key} | requests | failed | p50 e2e ms | p90 | p99 | " + " | ".join(STAGES) +
             " | wire bytes | accuracy (n) | agreement | peak edge RSS MB | energy mJ (board + radio) |",
             "|---" * (11 + len(STAGES)) + "|"]
    for s in summary:
        lines.append(f"| {s['method']} | {s['requests']} | {s['failed']} | {s['p50_e2e_ms']} | {s['p90_e2e_ms']} | "
                     f"{s['p99_e2e_ms']} | " + " | ".join(str(s[f'mean_{x}']) for x in STAGES) +
                     f" | {s['mean_wire_bytes']} | {s['accuracy']} ({s['n_labelled']}) | {s['agreement']} | "
                     f"{s['peak_edge_rss_mb']} | {energy_cell(s)} |")
    return lines


def energy_cell(s: dict) -> str:
    board, radio, total = (s[f"mean_{e}"] for e in ENERGY)
    if total != "":
        return f"{total} ({board} + {radio})"
    return "-" if board == "" and radio == "" else f"board {board or '-'}, radio {radio or '-'}"
