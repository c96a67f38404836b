"""The server program: accepts edge clients, decodes, runs the tail, answers with its timestamps.

    python -m splitbed.app.server --port P --model NAME [--cal-dir DIR] [--threads N]

One thread per client; the model runs one request at a time (a lock), so time spent waiting for it
is the request's server queueing. All timestamps are time.monotonic_ns(): every Mininet host shares
the kernel's CLOCK_MONOTONIC, so the edge can subtract them from its own.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

import torch

from splitbed.app import protocol
from splitbed.codecs import CalibrationStore, WireFormatError, decode, rans
from splitbed.errors import UserError
from splitbed.models import get_model

WARMUP_PASSES = 5


class Server:
    def __init__(self, model_name: str, cal_dir: str | None):
        self.model = get_model(model_name)
        self.store = CalibrationStore(cal_dir)
        self.tails: dict[str, torch.nn.Module] = {}
        self.lock = threading.Lock()
        rans.warm_up()  # DISC's coder compiles on first use: not inside the first timed request
        self.warmup_ms = self.warm_up()

    @torch.no_grad()
    def warm_up(self) -> list[float]:
        """A new process's first passes run slow (allocator, kernels: 121, 50, 37 then 26-27 ms for Lite0
        on one thread here), which no request should meet: a cold first answer makes a planner shun
        the option that met it. One full pass warms every tail, as they share its modules."""
        full, x, times = self.model.full(), torch.zeros(1, *self.model.input_shape), []
        for _ in range(WARMUP_PASSES):
            started = time.perf_counter_ns()
            full(x)
            times.append(round((time.perf_counter_ns() - started) / 1e6, 1))
        return times

    def tail(self, split: str):
        if split not in self.tails:
            self.tails[split] = self.model.tail(split)
        return self.tails[split]

    @torch.no_grad()
    def answer(self, body: bytes, received_ns: int) -> dict:
        header, message = protocol.parse_request(body)
        split = str(header.get("split", ""))
        self.model.index(split)  # unknown split: a UserError, answered as an error
        with self.lock:
            dequeued_ns = time.monotonic_ns()
            tensor = torch.from_numpy(decode(message, self.store))
            decoded_ns = time.monotonic_ns()
            logits = self.tail(split)(tensor if tensor.dim() > 1 else tensor[None])
            prediction = int(logits.reshape(logits.shape[0], -1).argmax(1)[0])
            done_ns = time.monotonic_ns()
        return {"id": header.get("id"), "prediction": prediction, "t_received": received_ns,
                "t_dequeued": dequeued_ns, "t_decoded": decoded_ns, "t_computed": done_ns}

    def serve_client(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    kind, body = protocol.recv_frame(conn)
                    received_ns = time.monotonic_ns()
                    if kind == protocol.PROBE:
                        reply = {"t_received": received_ns}
                    elif kind == protocol.REQUEST:
                        reply = self.answer(body, received_ns)
                    else:
                        raise protocol.ProtocolError(f"expected a request or a probe, got frame type {kind}")
                    reply["t_sent"] = time.monotonic_ns()
                    protocol.send_frame(conn, protocol.RESPONSE, protocol.json_body(reply))
                except (protocol.ProtocolError, WireFormatError, UserError) as err:
                    try:  # a bad frame gets an error reply; a desynchronised stream is then closed
                        protocol.send_frame(conn, protocol.ERROR, protocol.json_body({"error": str(err)}))
                    except OSError:
                        return
                    if isinstance(err, protocol.ProtocolError):
                        return
                except (ConnectionError, OSError):
                    return

    def serve(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(64)
        print(json.dumps({"warmup_ms": self.warmup_ms}), flush=True)
        print("ready", flush=True)
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve_client, args=(conn,), daemon=True).start()


def read_start(stdout) -> dict | None:
    """The server's start-up report ({"warmup_ms": [...]}) once it printed "ready"; None if it ended first."""
    try:
        report = json.loads(stdout.readline())
    except ValueError:
        return None
    return report if stdout.readline().strip() == "ready" else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--cal-dir")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    Server(args.model, args.cal_dir).serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
