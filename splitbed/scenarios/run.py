"""One scenario run, start to finish: check, calibrate, build the network, start the programs in their
nodes, replay the trace, collect the rows, summarise, and remove exactly what was created.

Results go to OUTPUT/<name>-<UTC time>/: manifest.json first (scenario, resolved settings, versions,
capabilities, backends, calibration), requests.csv as rows arrive, then summary.csv and summary.md.
Ctrl-C or a crash still runs the cleanup; the rows stay and the manifest says the run was interrupted.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from splitbed import __version__
from splitbed.analysis.report import report
from splitbed.analysis.schema import NAMES
from splitbed.codecs import CalibrationStore, get_codec
from splitbed.errors import UserError
from splitbed.models import get_model
from splitbed.models.datasets import calibration_samples
from splitbed.nodes.calibration import CalibrationCache, calibrated
from splitbed.nodes.cgroups import CgroupManager
from splitbed.nodes.devices import get_profile
from splitbed.scenarios.schema import Scenario
from splitbed.scenarios.traces import load_trace
from splitbed.topologies.capabilities import probe
from splitbed.topologies.links import LinkSpec
from splitbed.topologies.network import EmulatedNetwork, NetworkSpec
from splitbed.topologies.shaping import TcBatch, TraceReplayer
from splitbed.topologies.state import RunState

REPO = Path(__file__).resolve().parents[2]
PORT = 7700


def link_spec(link: dict, trace_start_bps: float | None) -> LinkSpec:
    rate = link.get("rate_mbit")
    rate_bps = trace_start_bps if trace_start_bps is not None else (rate * 1e6 if rate else None)
    return LinkSpec(rate_bps, link.get("delay_ms", 0.0), link.get("jitter_ms", 0.0), link.get("loss_pct", 0.0),
                    link.get("queue_packets", 100))


class Run:
    def __init__(self, scenario: Scenario, quick: bool = False, quiet: bool = False):
        self.scenario, self.quick, self.quiet = scenario, quick, quiet
        data = scenario.data
        self.plans = [{"name": data["plan"].get("name", "plan"), **data["plan"]}] + [
            {"name": b.get("name", f"baseline{i + 1}"), **b} for i, b in enumerate(data["baselines"])]
        self.workload = dict(data["workload"])
        if quick:
            self.workload["requests"] = min(self.workload["requests"], 10)
            self.workload["warmup"] = min(self.workload["warmup"], 1)
        self.caps = probe()
        self.backend = self.choose_backend(data["backend"])
        self.traces = {}
        for name, link in data["links"].items():
            if "trace" in link:
                trace = load_trace(link["trace"]).scaled(link.get("trace_scale", 1.0))
                self.traces[name] = trace.offset(link.get("trace_offset_s", 0.0))
        links = {name: link_spec(link, self.traces[name].rate_at(0) if name in self.traces else None)
                 for name, link in data["links"].items()}
        self.network_spec = NetworkSpec(data["topology"]["kind"], data["topology"]["edges"],
                                        **links)
        self.network_spec.check(self.backend)  # before anything starts
        if self.caps.problems:
            raise UserError("this machine cannot run a scenario: " + "; ".join(self.caps.problems))
        self.model = get_model(data["model"])
        for plan in self.plans:
            self.model.index(plan["split"])
            get_codec(plan["codec"], **plan.get("params", {}))  # parameters checked now, not mid-run
        self.edge_profile = get_profile(data["nodes"]["edge"]["device"])
        self.server_profile = get_profile(data["nodes"]["server"]["device"])
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        output = Path(data["output"])
        output = output if output.is_absolute() else REPO / output
        self.dir = output / f"{data['name']}-{stamp}"
        self.run_id = f"{data['name']}-{stamp}-{os.getpid()}"
        self.manifest: dict = {}

    def choose_backend(self, wanted: str) -> str | None:
        """auto: what the probe chose. netem / htb+nfqueue only where this machine has them; htb:
        rate only (a scenario asking it for delay or loss then fails before anything starts)."""
        available = {"netem": bool(self.caps.netem), "htb+nfqueue": self.caps.link_backend == "htb+nfqueue",
                     "htb": bool(self.caps.htb)}
        if wanted == "auto":
            return self.caps.link_backend
        if wanted not in available:
            raise UserError(f"unknown link backend {wanted!r}", where=f"{self.scenario.path}: backend",
                            fix="auto, netem, htb+nfqueue or htb")
        if not available[wanted]:
            raise UserError(f"link backend {wanted!r} is not available on this machine",
                            where=f"{self.scenario.path}: backend", fix="see 'sudo python run_scenario.py --check'")
        return wanted

    # --- records -----------------------------------------------------------------------------------
    def write_manifest(self, **updates) -> None:
        self.manifest.update(updates)
        tmp = self.dir / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1, default=str) + "\n")
        os.replace(tmp, self.dir / "manifest.json")

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # --- the run -----------------------------------------------------------------------------------
    def execute(self) -> Path:
        self.dir.mkdir(parents=True)
        self.write_manifest(
            scenario_file=str(self.scenario.path), scenario=self.scenario.data, quick=self.quick,
            workload=self.workload, plans=self.plans, started_utc=self.dir.name.rsplit("-", 1)[-1],
            versions={"splitbed": __version__, "python": platform.python_version(), "torch": torch.__version__,
                      "kernel": platform.release()},
            capabilities=self.caps.to_dict(), link_backend=self.backend, cpu_backend=self.caps.cpu_backend,
            status="starting")
        with (self.dir / "requests.csv").open("w", newline="") as f:
            f.write(",".join(NAMES) + "\n")
        state = RunState(self.run_id)
        network = None
        cgroups = CgroupManager(f"splitbed-{self.run_id}", state=state)
        server = None
        captures = []
        status = "interrupted"
        try:
            device = self.calibrate_device(cgroups)
            self.calibrate_codecs()
            self.say(f"network: {self.network_spec.kind}, link backend {self.backend}")
            network = EmulatedNetwork(self.network_spec, self.backend, state).start()
            server = self.start_server(network, cgroups, state)
            if self.scenario["capture"]:
                captures = self.start_captures(network, state)
            for plan in self.plans:
                self.run_plan(plan, network, cgroups, state, device)
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted (Ctrl-C)"
            raise
        except BaseException as err:
            status = f"failed: {type(err).__name__}: {err}"
            raise
        finally:
            self.teardown(captures, server, network, cgroups, state, status)
        self.say(f"results: {self.dir}")
        return self.dir

    def teardown(self, captures: list, server, network, cgroups: CgroupManager, state: RunState, status: str) -> None:
        """Undo the run, each step on its own: one failing must not leave the others' objects behind."""
        steps = [("stop a packet capture", lambda c=c: (c.terminate(), c.wait(10))) for c in captures]
        if server is not None:
            steps.append(("stop the server", lambda: server.poll() is None and (server.terminate(), server.wait(10))))
        if network is not None:
            steps.append(("stop the network", network.stop))
        usage: dict = {}

        def account():
            for group in cgroups.groups:
                try:
                    usage[group.name] = group.cpu_usage_s()
                except OSError as err:
                    usage[group.name] = f"unreadable: {err}"

        steps += [("read CPU accounting", account), ("remove cgroups", cgroups.remove_all),
                  ("remove recorded objects", state.cleanup)]
        problems = []
        for name, step in steps:
            try:
                step()
            except Exception as err:  # keep going: the state file still lists what is left for --cleanup
                problems.append(f"{name}: {type(err).__name__}: {err}")
        self.write_manifest(status=status, node_cpu_seconds=usage, teardown_problems=problems,
                            finished_utc=datetime.datetime.now(datetime.timezone.utc).isoformat())
        for problem in problems:
            print(f"warning: {problem} (then: sudo python run_scenario.py --cleanup)", file=sys.stderr)
        try:
            report(self.dir)
        except Exception as err:  # the rows are safe on disk; a failed plot must not hide the run's own error
            print(f"warning: report failed ({type(err).__name__}: {err}); "
                  f"rerun: python -m splitbed.analysis report {self.dir}", file=sys.stderr)

    def calibrate_device(self, cgroups: CgroupManager) -> dict:
        profile = self.edge_profile
        if not profile.constrained:
            result = {"device": profile.key, "quota_cores": None, "threads": os.cpu_count()}
        else:
            self.say(f"calibrating the CPU quota for {profile.name} (refined from this machine's cache)")
            cal = calibrated(profile, cgroups, CalibrationCache())
            if cal.warning:
                raise UserError(cal.warning, fix="choose a slower device profile on this machine")
            result = {"device": profile.key, "quota_cores": cal.quota_cores, "threads": cal.threads,
                      "calibration": cal.__dict__}
        self.write_manifest(edge_device=result, memory_mb=profile.memory_mb)
        return result

    def calibrate_codecs(self) -> None:
        store = CalibrationStore()
        inputs = None
        for plan in self.plans:
            if plan["codec"] == "disc":
                if inputs is None:
                    inputs = torch.stack([s.tensor for s in calibration_samples(self.model)])
                self.say(f"DISC calibration for {self.model.name} at {plan['split']} (cached)")
                store.ensure(self.model, plan["split"], lambda batch=inputs: batch)

    def python_in(self, network: EmulatedNetwork, host: str, module: str, *args: str) -> list[str]:
        return [*network.prefix(host), "env", f"PYTHONPATH={REPO}", "OMP_NUM_THREADS=1", sys.executable, "-m",
                module, *args]

    def start_server(self, network: EmulatedNetwork, cgroups: CgroupManager, state: RunState):
        group = cgroups.create(network.server_name)
        argv = self.python_in(network, network.server_name, "splitbed.nodes.server", "--port", str(PORT),
                              "--model", self.model.name, "--threads", str(os.cpu_count()))
        process = group.popen(argv, stdout=subprocess.PIPE, text=True)
        state.process(process.pid)
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the server program did not start")
        self.write_manifest(server_pid=process.pid)
        return process

    def start_captures(self, network: EmulatedNetwork, state: RunState) -> list:
        """tcpdump on each edge's interface, inside its namespace, headers only (snaplen 128); immediate
        mode, or packets still in the ring buffer at the end of a short run are never written."""
        self.write_manifest(clock_offset_ns=time.time_ns() - time.monotonic_ns(), server_port=PORT)
        captures = []
        for name in network.edge_names:
            argv = [*network.prefix(name), "tcpdump", "--immediate-mode", "-i", f"{name}-eth0", "-s", "128", "-U", "-w",
                    str(self.dir / f"capture-{name}.pcap"), "tcp", "port", str(PORT)]
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            state.process(process.pid)
            process.stderr.readline()  # "listening on ...": capturing from here on
            captures.append(process)
        return captures

    def run_plan(self, plan: dict, network: EmulatedNetwork, cgroups: CgroupManager, state: RunState,
                 device: dict) -> None:
        self.say(f"plan {plan['name']}: split {plan['split']}, codec {plan['codec']} {plan.get('params', {})}")
        replayer = batch = None
        uplink = network.directions.get("uplink")
        if "uplink" in self.traces and uplink is not None and uplink.shaper is not None:
            batch = TcBatch(uplink.sender.prefix)
            replayer = TraceReplayer([uplink.shaper], [self.traces["uplink"]], batch)
        edges = []
        try:
            run_start = replayer.start() if replayer else time.monotonic()
            self.write_manifest(run_start_ns={**self.manifest.get("run_start_ns", {}),
                                              plan["name"]: int(run_start * 1e9)})
            for name in network.edge_names:
                config = {"server": network.server_ip(), "port": PORT, "model": self.model.name,
                          "dataset": self.scenario["dataset"], "seed": self.scenario["seed"], "plan": plan,
                          "method": plan["name"], "workload": self.workload, "csv": str(self.dir / "requests.csv"),
                          "trace": self.scenario["links"].get("uplink", {}).get("trace"),
                          "threads": device["threads"] or 1, "run_start_ns": int(run_start * 1e9),
                          "max_inputs": self.workload["requests"] + self.workload["warmup"]}
                path = self.dir / f"edge-{name}-{plan['name']}.json"
                path.write_text(json.dumps(config))
                group = next((g for g in cgroups.groups if g.name == name), None) or cgroups.create(name)
                if device["quota_cores"]:
                    group.set_cpu(device["quota_cores"])
                if self.edge_profile.memory_mb:
                    group.set_memory(self.edge_profile.memory_mb << 20)
                argv = self.python_in(network, name, "splitbed.nodes.edge", "--config", str(path), "--node", name)
                process = group.popen(argv, stdout=subprocess.PIPE, text=True)
                state.process(process.pid)
                edges.append(process)
            total = len(edges) * (self.workload["requests"] + self.workload["warmup"])
            with tqdm(total=total, desc=plan["name"], unit="req", disable=self.quiet) as bar:
                for process in edges:
                    for _line in process.stdout:
                        bar.update(1)
                    process.wait()
        finally:
            for process in edges:
                if process.poll() is None:
                    process.terminate()
            if replayer:
                replayer.stop()
                self.write_manifest(**{f"trace_applied_{plan['name']}": replayer.applied[:2000]})
            if batch:
                batch.close()


def run_scenario(scenario: Scenario, quick: bool = False, quiet: bool = False) -> Path:
    return Run(scenario, quick, quiet).execute()
