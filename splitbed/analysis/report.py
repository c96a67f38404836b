"""`python -m splitbed.analysis report RUN_DIR` (also run at the end of every scenario) and
`python -m splitbed.analysis compare RUN_DIR ... --out DIR`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from splitbed.analysis import plots  # noqa: E402
from splitbed.analysis.capture import goodput_series, join, read_segments, write_joined  # noqa: E402
from splitbed.analysis.summary import summarise, write_summaries  # noqa: E402
from splitbed.app.breakdown import read_rows  # noqa: E402
from splitbed.errors import UserError  # noqa: E402


def read_manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_context(run_dir: Path) -> tuple[str, str]:
    """(title, footer) from the manifest: scenario name and how the link and CPU were emulated."""
    manifest = read_manifest(run_dir)
    name = manifest.get("scenario", {}).get("name", run_dir.name)
    backend = manifest.get("link_backend") or "unknown"
    note = {"htb+nfqueue": "rate by HTB; delay/loss by a receiver-side NFQUEUE stage (no netem here)",
            "netem": "rate by HTB; delay/loss by netem"}.get(backend, f"link backend {backend}")
    device = (manifest.get("edge_device") or {}).get("device", "?")
    return name, f"{run_dir.name} | {note} | edge CPU: {device} via {manifest.get('cpu_backend', '?')}"


def memory_notes(manifest: dict) -> list[str]:
    """The edge's predicted memory against its device's, each node's measured peak, and any node that died."""
    notes = []
    predicted = manifest.get("edge_memory")
    if predicted:
        limit = predicted.get("limit_mb")
        notes.append(f"Edge memory predicted before the run: {predicted['total_mb']} MB"
                     + (f" of the device's {limit} MB" if limit else "") + ".")
    peaks = {node: m["peak_mb"] for node, m in (manifest.get("node_memory") or {}).items()
             if isinstance(m, dict) and m.get("peak_mb") is not None}
    if peaks:
        notes.append("Peak memory per node (cgroup): " + ", ".join(f"{n} {mb} MB" for n, mb in peaks.items()) + ".")
    for failure in manifest.get("node_failures", []):
        at = f" {failure['at_s']} s into the replay" if failure.get("at_s") is not None else " before the replay"
        notes.append(f"Edge {failure['node']} died{at}: {failure['reason']}; its rows so far are kept.")
    return notes


def memory_table(run_dirs: list[Path]) -> str:
    """A markdown row per run: device, status, the edge's predicted memory, its limit, the node's cgroup
    peak, the largest anonymous and resident memory any request saw, and any node that died."""
    lines = ["| run | device | status | predicted MB | limit MB | node peak MB | max anon MB | max RSS MB | died |",
             "|---|---|---|---|---|---|---|---|---|"]
    for run_dir in run_dirs:
        manifest = read_manifest(run_dir)
        try:
            rows = [r for r in read_rows(run_dir / "requests.csv") if r["edge_anon_mb"]]
        except UserError:
            rows = []
        predicted = manifest.get("edge_memory") or {}
        peaks = [m.get("peak_mb") for node, m in (manifest.get("node_memory") or {}).items()
                 if isinstance(m, dict) and node != "srv"]
        died = "; ".join(f"{f['node']} at {f.get('at_s')} s: {f['reason']}" for f in manifest.get("node_failures", []))
        lines.append(f"| {run_dir.name} | {(manifest.get('edge_device') or {}).get('device', '?')} | "
                     f"{manifest.get('status', '?')[:40]} | {predicted.get('total_mb', '')} | {predicted.get('limit_mb', '')} | "
                     f"{max((p for p in peaks if p is not None), default='')} | "
                     f"{max((float(r['edge_anon_mb']) for r in rows), default='')} | "
                     f"{max((float(r['edge_rss_mb']) for r in rows), default='')} | {died or '-'} |")
    return "\n".join(lines)


def report(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError("run folder not found", where=str(run_dir))
    rows = read_rows(run_dir / "requests.csv")
    title, footer = run_context(run_dir)
    manifest = read_manifest(run_dir)
    capacity = manifest.get("capacity", {})
    notes = ([f"Oversubscribed: the edges needed {capacity.get('needed_cores')} of {capacity.get('cores')} cores; "
              "they may have run slower than their device."] if manifest.get("oversubscribed") else [])
    notes += memory_notes(manifest)
    write_summaries(run_dir, title, footer.split(" | ")[1], notes)
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    drawn = {
        "timeline": plots.timeline(rows, out / "timeline.png", title, footer),
        "breakdown": plots.breakdown(rows, out / "breakdown.png", title, footer),
        "cdf": plots.cdf(rows, out / "cdf.png", title, footer),
        "bytes": plots.wire_bytes(rows, out / "bytes.png", title, footer),
        "memory": plots.memory(rows, out / "memory.png", title, footer, (manifest.get("edge_memory") or {}).get(
            "limit_mb"), (manifest.get("edge_memory") or {}).get("total_mb")),
    }
    if any(r["edge_energy_mj"] not in ("", None) for r in rows):
        drawn["energy"] = plots.energy(rows, out / "energy.png", title, footer)
    if len({r["node"] for r in rows}) > 1:
        drawn["nodes"] = plots.breakdown(rows, out / "nodes.png", title, footer, key="node")
    if list(run_dir.glob("capture-*.pcap")):
        drawn["goodput"] = capture_view(run_dir, rows, out / "goodput.png", title, footer)
    (out / "plots.json").write_text(json.dumps({"rows": len(rows), "points": drawn}, indent=1) + "\n")
    return drawn


def capture_view(run_dir: Path, rows: list[dict], plot_path: Path, title: str, footer: str) -> int:
    """requests_capture.csv (rows joined with what the pcap saw) and the uplink goodput plot."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    offset, starts, port = manifest["clock_offset_ns"], manifest["run_start_ns"], manifest["server_port"]
    joined, series = [], {}
    for pcap in sorted(run_dir.glob("capture-*.pcap")):
        node = pcap.stem.split("-", 1)[1]
        segments = read_segments(pcap, port, offset)
        joined += join(rows, segments, starts, node)
        series[node] = goodput_series(segments, min(starts.values()))
    write_joined(run_dir / "requests_capture.csv", joined, list(rows[0]) if rows else [])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for node, (t, mbps) in series.items():
        ax.step(t, mbps, where="post", label=f"{node}: uplink goodput from the capture (per 100 ms)")
    rates = sorted((float(r["start_s"]), float(r["trace_rate_mbps"])) for r in rows if r["trace_rate_mbps"])
    if rates:
        ax.plot(*zip(*rates, strict=True), "k.", label="trace rate at each request's send time")
    ax.set_xlabel("time since the first plan started (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_title(f"{title}: achieved uplink goodput next to the trace")
    plots.legend(ax, 8)
    plots.finish(fig, plot_path, footer)
    return sum(len(t) for t, _ in series.values())


def compare(run_dirs: list[str], out: str) -> list[dict]:
    """One table (compare.csv, compare.md) and one figure across runs, a row per run and method."""
    table = []
    for run_dir in map(Path, run_dirs):
        title, _ = run_context(run_dir)
        for row in summarise(read_rows(run_dir / "requests.csv")):
            table.append({"run": run_dir.name, "scenario": title, "method": row["method"],
                          "requests": row["requests"], "failed": row["failed"], "p50_e2e_ms": row["p50_e2e_ms"],
                          "p90_e2e_ms": row["p90_e2e_ms"], "accuracy": row["accuracy"],
                          "agreement": row["agreement"], "mean_wire_bytes": row["mean_wire_bytes"]})
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "compare.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    lines = ["| " + " | ".join(table[0]) + " |", "|---" * len(table[0]) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row.values()) + " |" for row in table]
    (folder / "compare.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(table) + 3), 5))
    labels = [f"{r['scenario']}\n{r['method']}" for r in table]
    ax.bar(labels, [r["p90_e2e_ms"] for r in table], color="lightsteelblue", label="p90")
    ax.bar(labels, [r["p50_e2e_ms"] for r in table], color="steelblue", label="p50")
    ax.set_yscale("log")
    ax.set_ylabel("end-to-end latency (ms, log)")
    ax.set_title("runs compared: p50 and p90 end-to-end latency")
    ax.legend()
    plt.setp(ax.get_xticklabels(), fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "compare.png", dpi=100)
    plt.close(fig)
    return table
