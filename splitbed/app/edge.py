"""The edge program: per request, asks its plan what to do, runs the head, encodes, sends, waits for the
answer, and writes one CSV row.

    python -m splitbed.app.edge --config JSON_FILE --node e1

The config (an EdgeConfig, written by the runner) names the server, model, dataset, plans, workload,
the path's facts and the CSV path.
The program loads everything, then runs the plans one after another: for each it prints
{"ready": PLAN} and waits for "go RUN_START_NS" on stdin, so that every plan starts with the trace
replay at its beginning. Rows are appended and flushed one by one: an interrupted run keeps them.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import random
import socket
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from splitbed.aglop.energy import EdgeEnergy
from splitbed.aglop.online import KnownPath, ModelJudge, make_policy, probe_bytes
from splitbed.aglop.planner import STAGES as MODEL_STAGES
from splitbed.aglop.profile import Option
from splitbed.app import protocol
from splitbed.app.breakdown import NAMES, STAGES
from splitbed.app.edge_config import EdgeConfig
from splitbed.app.plans import plan_groups
from splitbed.codecs import CalibrationStore, get_codec
from splitbed.host.memory import MIB, resident_bytes
from splitbed.models import get_model
from splitbed.models.datasets import load_dataset
from splitbed.models.split_costs import WARMUP_PASSES, pass_times_ms
from splitbed.network.radio import RADIOS, RadioTimeline, on_air_bits
from splitbed.network.tcp_window import (
    congestion_control,
    connect,
    min_rtt_ms,
    send_window,
    slow_start_after_idle,
)
from splitbed.network.traces import Trace, load_link_trace


def ms(a: int, b: int) -> float:
    return (b - a) / 1e6


def memory_columns() -> dict:
    """The edge program's resident memory now; empty on a container node, whose /proc belongs to the
    container's PID namespace, which the program does not enter: no row is lost for want of it."""
    try:
        resident = resident_bytes()
    except OSError:
        return {"edge_rss_mb": "", "edge_anon_mb": ""}
    return {"edge_rss_mb": round(resident["total"] / MIB, 1), "edge_anon_mb": round(resident["anon"] / MIB, 1)}


class Edge:
    def __init__(self, config: EdgeConfig, node: str):
        self.config, self.node = config, node
        torch.set_num_threads(config.threads)
        self.model = get_model(config.model)
        self.store = CalibrationStore()
        self.samples = list(itertools.islice(load_dataset(config.dataset, self.model, config.seed), config.max_inputs))
        self.references = config.references  # the uncompressed model's top-1 per sample (runner-computed)
        self.trace = load_link_trace(config.trace) if config.trace else None  # the uplink's, for rows
        # the path's truth for the oracle and the model's judge: the uplink's trace (or its fixed rate),
        # each direction's delay and a WAN uplink's rate
        uplink = self.trace or Trace(np.zeros(1), np.array([config.uplink_rate_bps or 1e9]), 1.0)
        self.path = KnownPath(uplink, config.path.up_ms, config.path.down_ms, config.path.wan_up_bps)
        self.profile = json.loads(Path(config.profile).read_text()) if config.profile else None
        self.heads: dict[str, torch.nn.Module] = {}
        self.run_start_ns = 0
        self.slow_start_after_idle = slow_start_after_idle()  # this node's namespace's setting
        self.warm_up()

    @torch.no_grad()
    def warm_up(self) -> None:
        """First calls allocate (torch) and build tables (DISC): do them before any request is timed.
        The heads share the full model's stage modules, so full passes warm them all."""
        x = self.samples[0].tensor[None]
        pass_times_ms(self.model.full(), x, WARMUP_PASSES - 1)
        activations = self.model.activations(x)
        options = [Option(p["split"], p.get("codec", ""), p.get("params", {})) for p in self.config.plans
                   if p["type"] == "fixed"]
        if self.profile:
            options += [Option.from_dict(o) for o in self.profile["options"]]
        for option in options:
            if option.offloads:
                self.codec(option).encode(activations[option.split])

    def head(self, split: str) -> torch.nn.Module:
        if split not in self.heads:
            self.heads[split] = self.model.head(split)
        return self.heads[split]

    def codec(self, option: Option):
        """A codec object per use: its state (DISC's calibration and plans) lives in caches bounded in bytes."""
        extra = {"calibration": self.store.get(self.model.name, option.split)} if option.codec == "disc" else {}
        return get_codec(option.codec, **option.params, **extra)

    def connect(self) -> socket.socket:
        sock = connect(self.config.server, self.config.port, 10, self.config.tcp_congestion_control)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.config.workload.deadline_s)
        return sock

    def since_start_s(self, ns: int) -> float:
        return (ns - self.run_start_ns) / 1e9

    def row(self, index: int, method: str, option: Option, started_ns: int) -> dict:
        """The fields every row has, whatever happened to the request."""
        row = dict.fromkeys(NAMES, "")
        start_s = self.since_start_s(started_ns)
        row.update({"request_id": index, "node": self.node, "method": method, "start_s": round(start_s, 4),
                    "split": option.split, "codec": option.codec,
                    "codec_params": json.dumps(option.params, sort_keys=True),
                    "trace_rate_mbps": round(self.trace.rate_at(start_s) / 1e6, 4) if self.trace else ""})
        return row

    @torch.no_grad()
    def request(self, sock: socket.socket | None, index: int, option: Option, t0: int,
                wall_started: int) -> tuple[list[float], dict]:
        """One request from the head on (t0: when the plan was asked; wall_started: the same moment by
        perf_counter, the second clock that checks the stages); returns (stage times, fields)."""
        sample = self.samples[index % len(self.samples)]
        activation = self.head(option.split)(sample.tensor[None])
        t1 = time.monotonic_ns()
        if not option.offloads:  # edge-only: the answer is already here
            prediction = int(activation.reshape(1, -1).argmax(1)[0])
            stages, wire_bytes, server_wall, reply_bytes = [ms(t0, t1), 0, 0, 0, 0, 0, 0], 0, "", 0
        else:
            message = self.codec(option).encode(activation)
            body = protocol.request_body({"id": index, "split": option.split}, message)
            t2 = time.monotonic_ns()
            protocol.send_frame(sock, protocol.REQUEST, body)
            kind, reply_body = protocol.recv_frame(sock)
            t7 = time.monotonic_ns()
            reply = protocol.parse_json(reply_body)
            server_wall = round(int(reply.get("server_wall_ns", 0)) / 1e6, 4)
            if kind == protocol.ERROR:
                raise RuntimeError(f"server error: {reply.get('error')}")
            t3, t4, t5, t6 = (int(reply[k]) for k in ("t_received", "t_dequeued", "t_decoded", "t_computed"))
            reply_bytes = len(reply_body) + protocol.HEADER.size
            stages = [ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4), ms(t4, t5), ms(t5, t6), ms(t6, t7)]
            prediction, wire_bytes = int(reply["prediction"]), len(body) + protocol.HEADER.size
        wall_ms = (time.perf_counter_ns() - wall_started) / 1e6
        reference = self.references[index % len(self.references)]
        return stages, {
            "raw_bytes": int(activation.numel() * 4), "wire_bytes": wire_bytes, "reply_bytes": reply_bytes,
            **{name: round(value, 4) for name, value in zip(STAGES, stages, strict=True)},
            "e2e_ms": round(sum(stages), 4), "wall_ms": round(wall_ms, 4), "server_wall_ms": server_wall,
            **memory_columns(),
            "label": "" if sample.label is None else sample.label,
            "prediction": prediction, "correct": "" if sample.label is None else int(prediction == sample.label),
            "agrees_with_reference": int(prediction == reference), "status": "ok"}

    def probe(self, sock: socket.socket, policy) -> tuple[int, float, int, float]:
        """A transfer between requests (probe_bytes: up to PROBE_BYTES, within the send window), to keep
        the bandwidth estimate fresh; returns (bytes up, ms up, bytes down, ms down) for its energy."""
        window = send_window(sock, self.slow_start_after_idle)
        size = probe_bytes(window, protocol.HEADER.size)
        sent = time.monotonic_ns()
        protocol.send_frame(sock, protocol.PROBE, bytes(size))
        kind, body = protocol.recv_frame(sock)
        back = time.monotonic_ns()
        reply = protocol.parse_json(body)
        if kind != protocol.RESPONSE:
            raise RuntimeError(f"server error: {reply.get('error')}")
        received, replied = int(reply["t_received"]), int(reply["t_sent"])
        policy.observe(size + protocol.HEADER.size, ms(sent, received), ms(replied, back),
                       self.since_start_s(back), window, min_rtt_ms(sock))
        return size + protocol.HEADER.size, ms(sent, received), len(body) + protocol.HEADER.size, ms(replied, back)

    def run(self) -> int:
        with Path(self.config.csv).open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=NAMES)
            for group in plan_groups(self.config.plans):
                runs: list[PlanRun] = []
                runs += [PlanRun(self, plan, runs) for plan in group]
                for run in runs:  # connected before the replay starts: the trace's first second counts
                    run.connect()
                print(json.dumps({"ready": [plan["name"] for plan in group]}), flush=True)
                command = sys.stdin.readline().split()
                if len(command) != 2 or command[0] != "go":
                    return 1
                self.run_start_ns = int(command[1])
                order = random.Random(self.config.seed)
                while not all(run.done for run in runs):  # one plan alone, or several in turn
                    # a fresh (seeded) order each round: no plan always follows the same other one
                    # (a request that loads the server's cores leaves the caches cold for the next)
                    for run in order.sample(runs, len(runs)):
                        begun = time.monotonic_ns()
                        row = None if run.done else run.step()
                        run.own_ns += time.monotonic_ns() - begun
                        if row is not None:
                            writer.writerow(row)
                            f.flush()
                print(json.dumps({"finished": [run.summary() for run in runs]}), flush=True)
        return 0


class PlanRun:
    """One plan's requests, on its own connection, with its own policy (and bandwidth estimate)."""

    def __init__(self, edge: Edge, plan: dict, group: list[PlanRun]):
        self.edge, self.plan, self.group = edge, plan, group
        self.workload = edge.config.workload
        radio = edge.config.radio
        self.policy = make_policy(plan, edge.profile, edge.path,
                                  EdgeEnergy(edge.config.power, RADIOS[radio] if radio else None,
                                             self.workload.interval_s * 1e3))
        self.judge = ModelJudge(edge.profile, edge.path, self.workload.deadline_s)
        self.radio = RadioTimeline(RADIOS[radio], self.workload.interval_s * 1e3) if radio else None
        self.probe_mj = 0.0  # the radio's energy of probes since the last request, charged to the next
        # Plans taking turns are each charged as if alone (RadioTimeline), so a probe is charged only
        # when the plan alone would have sent it: when its own clock (the time its own steps took)
        # has run a probe interval since its last link sample. Its other probes are there because the
        # other plans' turns passed on the wall clock; they still inform its estimate.
        self.own_ns = 0
        self.sampled_own_s: float | None = None
        self.sock: socket.socket | None = None
        self.index, self.probes, self.probes_charged = 0, 0, 0
        self.measured_from: int | None = None
        self.done = False

    def connect(self) -> None:
        """Open the plan's connection now; a failure is met again at the first request."""
        try:
            self.sock = self.edge.connect()
        except OSError:
            self.sock = None

    def step(self) -> dict | None:
        """One request (after a probe, when the policy wants one); returns its row, or None when there
        is nothing to write (a warm-up request, or the plan has ended: then done is set)."""
        edge, workload, index = self.edge, self.workload, self.index
        total, warmup, duration = workload.requests, workload.warmup, workload.duration_s
        started = time.monotonic_ns()
        if index == warmup:
            self.measured_from = started
        # plans taking turns share one clock: the duration runs from the first measured request of any
        measured_from = min((run.measured_from for run in self.group if run.measured_from), default=None)
        if index >= total + warmup or (duration and measured_from and (started - measured_from) / 1e9 >= duration):
            self.done = True
            return None
        choice, wire_bytes, judged = None, 0, None
        try:
            if self.sock is None:  # connected (and probed) before the request's clock starts
                self.sock = edge.connect()
            alone = self.alone_would_probe(started)
            # where the radio is charged, the plan also probes when alone it would have (its own clock
            # can come due between two probes due on the wall clock); elsewhere probes follow the wall
            if self.policy.probe_due(edge.since_start_s(started)) or (alone and self.radio and len(self.group) > 1):
                sampled = self.policy.last_sample_s
                up_bytes, up_ms, down_bytes, down_ms = edge.probe(self.sock, self.policy)
                self.probes += 1
                if alone:
                    self.probes_charged += 1
                    self.note_sample(sampled)  # a probe cut short by the window is no sample
                    if self.radio:
                        self.probe_mj += self.radio.probe_mj(on_air_bits(up_bytes), up_ms, on_air_bits(down_bytes),
                                                             down_ms)
            window = send_window(self.sock, edge.slow_start_after_idle)
            started, wall_started = time.monotonic_ns(), time.perf_counter_ns()
            choice = self.policy.choose(edge.since_start_s(started), window)
            stages, fields = edge.request(self.sock, index, choice.option, started, wall_started)
            wire_bytes = fields["wire_bytes"]
            if choice.option.offloads:
                sampled = self.policy.last_sample_s
                self.policy.observe(wire_bytes, stages[2], stages[6], edge.since_start_s(time.monotonic_ns()), window,
                                    min_rtt_ms(self.sock))
                self.note_sample(sampled)
            # judged after the request (off its clock) but before this request's times update the drift
            sent_s = edge.since_start_s(started) + (stages[0] + stages[1]) / 1e3  # after the head and encode
            judged = self.judge.stages(choice.option, sent_s, self.policy.drift, window, wire_bytes)
            self.policy.observe_answer(choice.option, {"head": stages[0], "encode": stages[1], "decode": stages[4],
                                                       "tail": stages[5]}, wire_bytes)
            row = edge.row(index, self.plan["name"], choice.option, started)
            reply_bytes = fields.pop("reply_bytes")
            row.update(fields, send_window_segments="" if window is None else window)
            row.update(self.energy(stages, wire_bytes, reply_bytes))
        except (OSError, ConnectionError, RuntimeError, protocol.ProtocolError) as err:
            option = choice.option if choice else Option(self.plan.get("split", ""), self.plan.get("codec", ""))
            row = edge.row(index, self.plan["name"], option, started)
            now = time.monotonic_ns()
            reason = (f"no answer within the {workload.deadline_s} s deadline"
                      if isinstance(err, TimeoutError) else f"{type(err).__name__}: {err}")
            row.update({"e2e_ms": round(ms(started, now), 4), "status": f"failed: {reason}"[:200]})
            sampled = self.policy.last_sample_s
            self.policy.observe_failure(wire_bytes, ms(started, now), edge.since_start_s(now))
            self.note_sample(sampled)
            if self.radio and choice is not None and choice.option.offloads:
                self.radio.since_last_ms = 0.0  # it tried to send until now: connected, no promotion next
            if self.sock is not None:
                self.sock.close()
            self.sock = None
            time.sleep(min(1.0, workload.deadline_s / 10))
        if choice is not None and choice.predicted_ms is not None:
            row["predicted_ms"] = round(choice.predicted_ms, 4)
        if choice is not None and choice.predicted_mj is not None:
            row["predicted_mj"] = round(choice.predicted_mj, 4)
        if choice is not None and choice.estimate_bps is not None:
            row["estimate_mbps"] = round(choice.estimate_bps / 1e6, 4)
        if judged is not None:
            row.update({f"model_{stage}_ms": round(judged[stage], 4) for stage in MODEL_STAGES},
                       model_ms=round(sum(judged.values()), 4))
        row["request_id"] = index - warmup
        self.index += 1
        print(json.dumps({"done": index + 1, "of": total + warmup, "status": row["status"][:6]}), flush=True)
        interval = workload.interval_s
        if interval:
            time.sleep(max(0.0, interval - (time.monotonic_ns() - started) / 1e9))
        return row if index >= warmup else None

    def own_s(self, now_ns: int) -> float:
        """The plan's own clock: the run's time less the other plans' turns."""
        others = sum(run.own_ns for run in self.group if run is not self)
        return self.edge.since_start_s(now_ns) - others / 1e9

    def note_sample(self, before: float | None) -> None:
        """Set the own clock of the plan's last link sample to now if its estimator took one since `before`."""
        if self.policy.last_sample_s != before:
            self.sampled_own_s = self.own_s(time.monotonic_ns())

    def alone_would_probe(self, now_ns: int) -> bool:
        """Whether the plan, alone, would probe now: always when it is alone; else when its own clock
        has run a probe interval since its last link sample (never for a plan that does not probe)."""
        interval = self.policy.probe_interval_s
        if interval is None:
            return False
        if len(self.group) == 1 or self.sampled_own_s is None:
            return True
        return self.own_s(now_ns) - self.sampled_own_s >= interval

    def energy(self, stages: list[float], wire_bytes: int, reply_bytes: int) -> dict:
        """The device's energy over an answered request, mJ: the board busy through head and encode and
        idle through the rest (edge_compute_mj), the radio over the request, the quiet time after it and
        any probes before it (radio_mj), and their sum; empty where the scenario's device or link does
        not model it (docs/energy.md)."""
        power, out = self.edge.config.power, {}
        if power:
            busy = stages[0] + stages[1]
            gap = max(0.0, self.workload.interval_s * 1e3 - sum(stages))  # idle until the next request, as the radio
            out["edge_compute_mj"] = round(power.request_mj(busy, sum(stages) - busy + gap), 4)
        if self.radio:
            radio = self.probe_mj + self.radio.request_mj(
                stages[0], stages[1], stages[2], stages[3] + stages[4] + stages[5], stages[6],
                on_air_bits(wire_bytes), on_air_bits(reply_bytes))  # 0 bytes (edge-only): 0 bits
            self.probe_mj = 0.0
            out["radio_mj"] = round(radio, 4)
        if power and self.radio:
            out["edge_energy_mj"] = round(out["edge_compute_mj"] + out["radio_mj"], 4)
        return out

    def summary(self) -> dict:
        congestion = congestion_control(self.sock)
        if self.sock is not None:
            self.sock.close()
        decisions = getattr(self.policy, "decision_ms", [])
        return {"plan": self.plan["name"], "node": self.edge.node, "requests": self.index, "probes": self.probes,
                "probes_charged": self.probes_charged,
                "decision_ms_median": round(statistics.median(decisions), 4) if decisions else None,
                "decision_ms_max": round(self.policy.decision_ms_max, 4) if decisions else None,
                "tcp_slow_start_after_idle": self.edge.slow_start_after_idle, "tcp_congestion_control": congestion}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args()
    return Edge(EdgeConfig.read(Path(args.config)), args.node).run()


if __name__ == "__main__":
    sys.exit(main())
