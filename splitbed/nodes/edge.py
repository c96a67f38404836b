"""The edge program: runs the head, encodes, sends, waits for the answer, writes one CSV row each.

    python -m splitbed.nodes.edge --config JSON_FILE --node e1

The config (written by the runner) names the server, model, dataset, plan, workload and the CSV path.
Rows are appended and flushed one by one, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import socket
import sys
import time
from pathlib import Path

import torch

from splitbed.analysis.schema import NAMES, STAGES
from splitbed.codecs import CalibrationStore, get_codec
from splitbed.models import get_model
from splitbed.models.datasets import load_dataset
from splitbed.nodes import protocol
from splitbed.scenarios.traces import load_trace


def ms(a: int, b: int) -> float:
    return (b - a) / 1e6


class Edge:
    def __init__(self, config: dict, node: str):
        self.config, self.node = config, node
        torch.set_num_threads(config.get("threads", 1))
        self.model = get_model(config["model"])
        plan = config["plan"]
        self.split, self.codec_name, self.params = plan["split"], plan["codec"], plan.get("params", {})
        store = CalibrationStore(config.get("cal_dir"))
        extra = {"calibration": store.get(self.model.name, self.split)} if self.codec_name == "disc" else {}
        self.codec = get_codec(self.codec_name, **self.params, **extra)
        self.head = self.model.head(self.split)
        self.full = self.model.full()
        self.samples = list(itertools.islice(load_dataset(config["dataset"], self.model, config.get("seed", 0)),
                                             config.get("max_inputs", 512)))
        self.trace = load_trace(config["trace"]) if config.get("trace") else None
        self.run_start_ns = int(config["run_start_ns"])

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.config["server"], self.config["port"]), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.config.get("deadline_s", 10))
        return sock

    @torch.no_grad()
    def request(self, sock: socket.socket, index: int) -> dict:
        sample = self.samples[index % len(self.samples)]
        x = sample.tensor[None]
        reference = int(self.full(x).argmax(1)[0])  # not timed: what the uncompressed model says
        t0 = time.monotonic_ns()
        activation = self.head(x)
        t1 = time.monotonic_ns()
        message = self.codec.encode(activation)
        body = protocol.request_body({"id": index, "split": self.split}, message)
        t2 = time.monotonic_ns()
        protocol.send_frame(sock, protocol.REQUEST, body)
        kind, reply_body = protocol.recv_frame(sock)
        t7 = time.monotonic_ns()
        reply = protocol.parse_json(reply_body)
        if kind == protocol.ERROR:
            raise RuntimeError(f"server error: {reply.get('error')}")
        t3, t4, t5, t6 = (int(reply[k]) for k in ("t_received", "t_dequeued", "t_decoded", "t_computed"))
        stages = [ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4), ms(t4, t5), ms(t5, t6), ms(t6, t7)]
        start_s = (t2 - self.run_start_ns) / 1e9
        prediction = int(reply["prediction"])
        return {
            "request_id": index, "node": self.node, "method": self.config.get("method", "fixed"),
            "start_s": round(start_s, 4), "split": self.split, "codec": self.codec_name,
            "codec_params": json.dumps(self.params, sort_keys=True), "raw_bytes": int(activation.numel() * 4),
            "wire_bytes": len(body) + protocol.HEADER.size,
            **{name: round(value, 4) for name, value in zip(STAGES, stages, strict=True)},
            "e2e_ms": round(ms(t0, t7), 4),
            "trace_rate_mbps": round(self.trace.rate_at(start_s) / 1e6, 4) if self.trace else "",
            "estimate_mbps": "", "label": "" if sample.label is None else sample.label,
            "prediction": prediction, "correct": "" if sample.label is None else int(prediction == sample.label),
            "agrees_with_reference": int(prediction == reference), "status": "ok",
        }

    def failed(self, index: int, reason: str, started_ns: int) -> dict:
        row = dict.fromkeys(NAMES, "")
        row.update({"request_id": index, "node": self.node, "method": self.config.get("method", "fixed"),
                    "start_s": round((started_ns - self.run_start_ns) / 1e9, 4), "split": self.split,
                    "codec": self.codec_name, "codec_params": json.dumps(self.params, sort_keys=True),
                    "e2e_ms": round(ms(started_ns, time.monotonic_ns()), 4), "status": f"failed: {reason}"})
        return row

    def run(self) -> int:
        workload = self.config["workload"]
        total, warmup = workload["requests"], workload.get("warmup", 0)
        path = Path(self.config["csv"])
        duration = workload.get("duration_s")  # optional: ends the run before `requests` when reached
        measured_from = None
        sock = None
        with path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=NAMES)
            for index in range(total + warmup):
                started = time.monotonic_ns()
                if index == warmup:
                    measured_from = started
                if duration and measured_from and (started - measured_from) / 1e9 >= duration:
                    break
                try:
                    sock = sock or self.connect()
                    row = self.request(sock, index)
                except (OSError, ConnectionError, RuntimeError, protocol.ProtocolError) as err:
                    row = self.failed(index, f"{type(err).__name__}: {err}"[:200], started)
                    if sock is not None:
                        sock.close()
                    sock = None
                    time.sleep(min(1.0, workload.get("deadline_s", 10) / 10))
                if index >= warmup:
                    row["request_id"] = index - warmup
                    writer.writerow(row)
                    f.flush()
                print(json.dumps({"done": index + 1, "of": total + warmup, "status": row["status"][:6]}),
                      flush=True)
                interval = workload.get("interval_s", 0)
                if interval:
                    time.sleep(max(0.0, interval - (time.monotonic_ns() - started) / 1e9))
        return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    return Edge(json.loads(Path(args.config).read_text()), args.node).run()


if __name__ == "__main__":
    sys.exit(main())
