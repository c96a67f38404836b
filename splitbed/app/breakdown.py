"""The columns of requests.csv, defined once: the edge writes them, the summary reads them, the README
table is generated from them (python -m splitbed.app.breakdown)."""

from __future__ import annotations

import csv
from pathlib import Path

from splitbed.errors import UserError

STAGES = ["edge_compute_ms", "encode_ms", "uplink_ms", "server_queue_ms", "decode_ms", "server_compute_ms",
          "downlink_ms"]
COLUMNS: list[tuple[str, str]] = [
    ("request_id", "sequence number of the request on its edge node (warm-up requests are not written)"),
    ("node", "edge node name (e1, e2, ...)"),
    ("method", "the plan or baseline that served the request"),
    ("start_s", "send time, seconds since the run started (kernel monotonic clock)"),
    ("split", "split point: the edge ran the model up to and including it"),
    ("codec", "feature codec on the wire"),
    ("codec_params", "codec parameters, JSON"),
    ("raw_bytes", "fp32 size of the tensor at the split"),
    ("wire_bytes", "bytes of the request frame on the wire (protocol header + codec message)"),
    ("edge_compute_ms", "head of the model on the edge (with the plan's decision, well under 1 ms)"),
    ("encode_ms", "encoding on the edge"),
    ("uplink_ms", "from the edge's send to the server having the whole request"),
    ("server_queue_ms", "waiting for the server's model (other clients)"),
    ("decode_ms", "decoding on the server"),
    ("server_compute_ms", "tail of the model on the server"),
    ("downlink_ms", "from the server's reply to the edge having it"),
    ("e2e_ms", "end to end: the sum of the seven stage columns"),
    ("wall_ms", "end to end by a second clock (perf_counter), read apart from the stages: e2e_ms should match it"),
    ("server_wall_ms", "the server's turn by its second clock, receive to reply: queue + decode + compute should match it"),
    ("edge_rss_mb", "the edge program's resident memory after the request (VmRSS; empty on a container node, whose /proc is the container's)"),
    ("edge_anon_mb", "... of which anonymous (allocated, not library pages): what its memory limit holds"),
    ("trace_rate_mbps", "the uplink trace's rate at send time (empty for a fixed link)"),
    ("estimate_mbps", "the uplink rate the planner planned with (the oracle: the trace's at decision time; empty for fixed plans)"),
    ("predicted_ms", "the latency model's predicted e2e for the chosen option (empty for fixed plans)"),
    ("predicted_mj", "the energy model's predicted edge_energy_mj for the chosen option (empty for fixed plans and without the device's power)"),
    ("send_window_segments", "TCP window the request's send started with, segments (after Linux's restart after idle)"),
    ("model_ms", "the latency model's e2e for the option run, told the link's true rate and delay and the message's size (every method)"),
    ("model_head_ms", "... its head stage (compare edge_compute_ms)"),
    ("model_encode_ms", "... its encode stage (compare encode_ms)"),
    ("model_transfer_ms", "... its transfer stage (compare uplink_ms + downlink_ms)"),
    ("model_decode_ms", "... its decode stage (compare decode_ms)"),
    ("model_tail_ms", "... its tail stage (compare server_compute_ms; server queueing is modelled as zero)"),
    ("edge_compute_mj", "the edge board's energy over the request, mJ: busy through head and encode, idle through the rest and until the next request (workload.interval_s) (empty when the device's power is not published, and on failed requests)"),
    ("radio_mj", "the edge radio's energy, mJ: its transfers, the connected time around them and after the request, promotion from idle, and probes before it (empty without links.uplink.radio)"),
    ("edge_energy_mj", "edge_compute_mj + radio_mj (empty when either is)"),
    ("label", "ground-truth class (empty when the input has none)"),
    ("prediction", "the server's top-1 class"),
    ("correct", "prediction == label (empty without a label)"),
    ("agrees_with_reference", "prediction == the uncompressed model's top-1 on the same input"),
    ("status", "ok, or failed: reason"),
]
NAMES = [name for name, _ in COLUMNS]
ENERGY = ("edge_compute_mj", "radio_mj", "edge_energy_mj")
ADDED_LATER = (*ENERGY, "predicted_mj")  # columns that runs written before them lack: they read as empty


def read_rows(path: Path) -> list[dict]:
    """Rows of a requests.csv; a missing column is an error that names it."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [name for name in NAMES if name not in (reader.fieldnames or []) and name not in ADDED_LATER]
            if missing:
                raise UserError(f"missing column(s) {', '.join(missing)}", where=str(path),
                                fix="was it written by another splitbed version?")
            return [{**dict.fromkeys(ADDED_LATER, ""), **row} for row in reader]
    except OSError as err:
        raise UserError(f"cannot read: {err.strerror}", where=str(path)) from err


def markdown_table() -> str:
    return "\n".join(["| column | meaning |", "|---|---|", *(f"| `{n}` | {m} |" for n, m in COLUMNS)])


if __name__ == "__main__":
    print(markdown_table())
