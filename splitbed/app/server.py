"""The server program: accepts edge clients, decodes, runs the tail, answers with its timestamps.

    python -m splitbed.app.server --port P --model NAME [--cal-dir DIR] [--threads N]

One thread per client reads and answers; every decode and tail runs on one model thread, one request
at a time, so time spent waiting for it is the request's server queueing, and the thread that was
warmed is the one that answers (a new thread's first passes run slow). All timestamps are
time.monotonic_ns(): every Mininet host shares the kernel's CLOCK_MONOTONIC, so the edge can subtract
them from its own.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from splitbed.app import protocol
from splitbed.codecs import CalibrationStore, WireFormatError, decode, rans
from splitbed.errors import UserError
from splitbed.models import get_model
from splitbed.models.split_costs import WARMUP_PASSES, pass_times_ms
from splitbed.network.tcp_window import use_congestion_control


class Server:
    def __init__(self, model_name: str, cal_dir: str | None):
        self.model = get_model(model_name)
        self.store = CalibrationStore(cal_dir)
        self.tails: dict[str, torch.nn.Module] = {}
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.warmup_ms = self.model_thread.submit(self.warm_up).result()

    def warm_up(self) -> list[float]:
        """Cold passes are for no request to meet: a slow first answer makes a planner shun the option
        that met it. One full pass warms every tail, as they share its modules."""
        rans.warm_up()  # DISC's coder compiles on first use
        x = torch.zeros(1, *self.model.input_shape)
        return [round(ms, 1) for ms in pass_times_ms(self.model.full(), x, WARMUP_PASSES)]

    def tail(self, split: str):
        if split not in self.tails:
            self.tails[split] = self.model.tail(split)
        return self.tails[split]

    def answer(self, body: bytes, received_ns: int) -> dict:
        header, message = protocol.parse_request(body)
        split = str(header.get("split", ""))
        self.model.index(split)  # unknown split: a UserError, answered as an error
        answer = self.model_thread.submit(self.run_model, split, message).result()
        return {"id": header.get("id"), "prediction": answer["prediction"], "t_received": received_ns, **answer["times"]}

    @torch.no_grad()
    def run_model(self, split: str, message: bytes) -> dict:
        dequeued_ns = time.monotonic_ns()
        tensor = torch.from_numpy(decode(message, self.store))
        decoded_ns = time.monotonic_ns()
        logits = self.tail(split)(tensor if tensor.dim() > 1 else tensor[None])
        prediction = int(logits.reshape(logits.shape[0], -1).argmax(1)[0])
        return {"prediction": prediction,
                "times": {"t_dequeued": dequeued_ns, "t_decoded": decoded_ns, "t_computed": time.monotonic_ns()}}

    def serve_client(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    kind, body = protocol.recv_frame(conn)
                    received_ns, wall_started = time.monotonic_ns(), time.perf_counter_ns()
                    if kind == protocol.PROBE:
                        reply = {"t_received": received_ns}
                    elif kind == protocol.REQUEST:
                        reply = self.answer(body, received_ns)
                    else:
                        raise protocol.ProtocolError(f"expected a request or a probe, got frame type {kind}")
                    # a second clock over the server's whole turn, independent of its stage stamps
                    reply["server_wall_ns"] = time.perf_counter_ns() - wall_started
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

    def serve(self, port: int, congestion: str | None = None) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        use_congestion_control(listener, congestion)
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
    parser.add_argument("--congestion-control", help="TCP congestion control of the answers' connections")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    Server(args.model, args.cal_dir).serve(args.port, args.congestion_control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
