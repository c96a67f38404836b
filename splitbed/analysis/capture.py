"""Packet-level view of a run: the edge uplink's pcap read with scapy, joined to requests.csv.

For each request, the TCP segments from the edge to the server's port sent between the request's
send time and the server having all of it: bytes on the wire (frames, headers included), payload
bytes, segments and retransmissions (a sequence number seen twice). Also the achieved uplink goodput
per 100 ms, to draw next to the trace. pcap timestamps are wall-clock; the run's rows are monotonic,
so the manifest's clock offset converts between them.
"""

from __future__ import annotations

import csv
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from pathlib import Path

CAPTURE_COLUMNS = ["capture_frame_bytes", "capture_payload_bytes", "capture_segments", "capture_retransmissions"]
MARGIN_NS = 5_000_000  # pcap stamps (wall clock, converted once per run) and the rows (monotonic) drift by ms


@dataclass
class Segment:
    t_ns: int  # monotonic, converted
    frame_bytes: int
    payload_bytes: int
    seq: int
    flow: tuple


def read_segments(pcap: Path, server_port: int, clock_offset_ns: int) -> list[Segment]:
    """Edge -> server TCP segments carrying payload, in time order."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import RawPcapReader

    segments = []
    for data, meta in RawPcapReader(str(pcap)):
        frame = Ether(data)
        if IP not in frame or TCP not in frame or frame[TCP].dport != server_port:
            continue
        ip, tcp = frame[IP], frame[TCP]
        payload = ip.len - ip.ihl * 4 - tcp.dataofs * 4
        if payload <= 0:
            continue
        t_ns = (meta.sec * 1_000_000_000 + meta.usec * 1000) - clock_offset_ns
        segments.append(Segment(t_ns, meta.wirelen, payload, tcp.seq, (ip.src, tcp.sport)))
    segments.sort(key=lambda s: s.t_ns)
    return segments


def join(rows: list[dict], segments: list[Segment], run_start_ns: dict[str, int], node: str) -> list[dict]:
    """Per ok row of `node`: what the capture saw between its send and the server's receipt."""
    times = [s.t_ns for s in segments]
    joined = []
    for row in rows:
        if row["node"] != node or row["status"] != "ok":
            continue
        # start_s is when the request began (before the head ran); it is on the wire after head + encode
        sent = run_start_ns[row["method"]] + int(float(row["start_s"]) * 1e9)
        received = sent + int((float(row["edge_compute_ms"]) + float(row["encode_ms"]) + float(row["uplink_ms"])) * 1e6)
        window = segments[bisect_left(times, sent - MARGIN_NS):bisect_right(times, received + MARGIN_NS)]
        seen, retransmissions = set(), 0
        for segment in window:
            key = (segment.flow, segment.seq)
            retransmissions += key in seen
            seen.add(key)
        joined.append({**row, "capture_frame_bytes": sum(s.frame_bytes for s in window),
                       "capture_payload_bytes": sum(s.payload_bytes for s in window),
                       "capture_segments": len(window), "capture_retransmissions": retransmissions})
    return joined


def goodput_series(segments: list[Segment], origin_ns: int, step_s: float = 0.1) -> tuple[list[float], list[float]]:
    """(time since origin, Mbit/s of TCP payload) per step."""
    if not segments:
        return [], []
    step_ns = int(step_s * 1e9)
    bins: dict[int, int] = {}
    for segment in segments:
        k = (segment.t_ns - origin_ns) // step_ns
        bins[k] = bins.get(k, 0) + segment.payload_bytes
    keys = range(min(bins), max(bins) + 1)
    return [k * step_s for k in keys], [bins.get(k, 0) * 8 / step_s / 1e6 for k in keys]


def write_joined(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames + CAPTURE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
