"""One scenario run, start to finish: check, calibrate, build the network, start the programs in their
nodes, replay the trace, collect the rows, summarise, and remove exactly what was created.

Results go to OUTPUT/<name>-<UTC time>/: manifest.json first (scenario, resolved settings, versions,
capabilities, backends, calibration), requests.csv as rows arrive, then summary.csv and summary.md.
Ctrl-C or a crash still runs the cleanup; the rows stay and the manifest says the run was interrupted.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from splitbed import __version__
from splitbed.aglop.profile import DEFAULT_BUDGET_PTS, DEFAULT_CRITERION, build_profile
from splitbed.analysis.report import report
from splitbed.app.breakdown import NAMES
from splitbed.app.edge_config import EdgeConfig, PathFacts, Workload
from splitbed.app.footprint import edge_footprint
from splitbed.app.plans import plan_groups
from splitbed.app.server import read_start
from splitbed.codecs import CalibrationStore, get_codec
from splitbed.devices.calibration import HEADROOM, CalibrationCache, node_settings, server_threads
from splitbed.devices.catalog import BoardPower, get_profile
from splitbed.devices.cgroups import CgroupManager
from splitbed.devices.governor import constrain_node
from splitbed.errors import RunFailed, Terminated, UserError
from splitbed.host.cache import cache_root
from splitbed.host.capabilities import probe
from splitbed.host.containers import Container, ImageInfo, check_daemon, inspect_image
from splitbed.host.images import source_digest
from splitbed.host.memory import MIB
from splitbed.host.state import EmulationLock, RunState, cleanup_dead_runs
from splitbed.models import get_model
from splitbed.models.datasets import FASHION_MNIST_DIR, batches, calibration_samples, load_dataset
from splitbed.models.partition import EDGE_ONLY
from splitbed.network.links import LinkSpec
from splitbed.network.radio import RADIOS
from splitbed.network.tcp_window import check_congestion_control
from splitbed.network.topology import EmulatedNetwork, NetworkSpec
from splitbed.network.traces import LINK_TRACE_FIELDS, Trace, load_link_trace
from splitbed.scenarios.schema import Scenario

REPO = Path(__file__).resolve().parents[2]
RESERVE_CORES = 0.3  # the server's tail and the runner, besides the edges
RESERVE_CORES_PER_EDGE = 0.05  # each edge's governor (a canary every 50 ms) and its share of the delay stages
PORT = 7700
MAX_INPUTS = 128  # distinct inputs per run (requests beyond cycle): 77 MB of Lite0 inputs, in a 512 MB Pi Zero


def link_spec(link: dict, trace: Trace | None) -> LinkSpec:
    """A scenario link as a LinkSpec. A traced link starts at its trace's first non-zero rate (the replay
    sets the rest, outages included, once the edges are ready) and has outages when its trace does."""
    rate = link.get("rate_mbit")
    rate_bps = (float(trace.rate_bps[trace.rate_bps > 0][0]) if trace is not None
                else (rate * 1e6 if rate else None))
    return LinkSpec(rate_bps, link.get("delay_ms", 0.0), link.get("jitter_ms", 0.0), link.get("loss_pct", 0.0),
                    link.get("queue_packets", 100), outages=bool(trace is not None and trace.outages()))


def with_budget(plan: dict) -> dict:
    """A re-planning plan with its accuracy budget and criterion written out, defaults included, so the
    manifest says what the run budgeted whatever the defaults become."""
    if plan["type"] == "fixed":
        return plan
    return {**plan, "criterion": plan.get("criterion", DEFAULT_CRITERION), "budget_pts": plan.get("budget_pts", DEFAULT_BUDGET_PTS)}


class Run:
    def __init__(self, scenario: Scenario, quick: bool = False, quiet: bool = False, out: Path | None = None,
                 oversubscribe: bool = False, extra_manifest: dict | None = None):
        self.scenario, self.quick, self.quiet = scenario, quick, quiet
        self.oversubscribe, self.extra_manifest = oversubscribe, extra_manifest or {}
        data = scenario.data
        self.plans = [with_budget({"name": data["plan"].get("name", "plan"), "type": "fixed", **data["plan"]})] + [
            with_budget({"name": b.get("name", f"baseline{i + 1}"), "type": "fixed", **b})
            for i, b in enumerate(data["baselines"])]
        self.workload = dict(data["workload"])
        if quick:
            self.workload["requests"] = min(self.workload["requests"], 10)
            self.workload["warmup"] = min(self.workload["warmup"], 1)
        self.caps = probe()
        self.backend = self.choose_backend(data["backend"])
        self.traces = {name: load_link_trace(link) for name, link in data["links"].items() if "trace" in link}
        links = {name: link_spec(link, self.traces.get(name)) for name, link in data["links"].items()}
        self.network_spec = NetworkSpec(data["topology"]["kind"], data["topology"]["edges"],
                                        **links, slow_start_after_idle=data["tcp"]["slow_start_after_idle"])
        self.network_spec.check(self.backend)  # before anything starts
        self.congestion = data["tcp"]["congestion_control"]
        check_congestion_control(self.congestion, f"{scenario.path}: tcp.congestion_control")
        if self.caps.problems:
            raise UserError("this machine cannot run a scenario: " + "; ".join(self.caps.problems))
        self.model = get_model(data["model"])
        for plan in self.plans:
            if plan["type"] == "fixed":
                self.model.index(plan["split"])
                if plan["split"] != EDGE_ONLY:
                    get_codec(plan["codec"], **plan.get("params", {}))  # parameters checked now, not mid-run
        self.edge_profile = get_profile(data["nodes"]["edge"]["device"])
        self.edge_memory_mb = data["nodes"]["edge"].get("memory_mb", self.edge_profile.memory_mb)
        self.server_profile = get_profile(data["nodes"]["server"]["device"])
        self.images = self.check_images()
        self.containers: dict[str, Container] = {}
        stamp = self.started_utc = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        output = Path(data["output"])
        output = output if output.is_absolute() else REPO / output
        self.dir = Path(out) if out else unique_folder(output / f"{data['name']}-{stamp}")
        if self.dir.exists() and any(self.dir.iterdir()):
            raise UserError(f"run folder {self.dir} exists and is not empty", fix="name a new folder with --out")
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

    def check_images(self) -> dict[str, ImageInfo]:
        """The images nodes name: the daemon answers, each exists and runs the node programs; checked
        before anything starts. An image built from other sources than this checkout is a warning only."""
        wanted = {role: node["image"] for role, node in self.scenario["nodes"].items() if "image" in node}
        if not wanted:
            return {}
        check_daemon()
        found: dict[str, ImageInfo] = {}
        for role, image in wanted.items():
            found[role] = next((info for info in found.values() if info.name == image), None) or \
                inspect_image(image, where=f"{self.scenario.path}: nodes.{role}.image")
        current = source_digest()
        for info in {info.name: info for info in found.values()}.values():
            if info.splitbed != __version__ or (info.source and info.source != current):
                print(f"warning: image {info.name} was not built from this checkout (splitbed {info.splitbed}, "
                      f"sources {info.source or 'unlabelled'}; here {__version__}, {current}): its programs may speak "
                      f"another protocol (rebuild: sudo make image)", file=sys.stderr)
        return found

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
        with EmulationLock():  # fixed host and interface names: one emulation per machine at a time
            leftovers = cleanup_dead_runs()  # what killed runs left (by their ids), before names are reused
            if leftovers:
                self.say(f"removed {len(leftovers)} item(s) left by killed runs")
            return self.execute_locked()

    def execute_locked(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_manifest(
            scenario_file=str(self.scenario.path), scenario=self.scenario.data, quick=self.quick,
            workload=self.workload, plans=self.plans, started_utc=self.started_utc, host=platform.node(),
            versions={"splitbed": __version__, "python": platform.python_version(), "torch": torch.__version__,
                      "kernel": platform.release()},
            capabilities=self.caps.to_dict(), link_backend=self.backend, cpu_backend=self.caps.cpu_backend,
            trace_outages={name: trace.outages() for name, trace in self.traces.items()}, status="starting",
            **self.extra_manifest)
        with (self.dir / "requests.csv").open("w", newline="") as f:
            f.write(",".join(NAMES) + "\n")
        state = RunState(self.run_id)
        network = None
        cgroups = CgroupManager(f"splitbed-{self.run_id}", state=state)
        server = None
        captures = []
        status = "interrupted"
        try:
            self.check_memory(None, full=False)  # what is known without calibrations: refused at once
            device = self.calibrate_device(cgroups)
            self.check_capacity(device)
            self.calibrate_codecs()
            profile = self.aglop_profile(device, cgroups)
            self.check_memory(profile, threads=device.get("threads") or 1)
            self.say(f"network: {self.network_spec.kind}, link backend {self.backend}")
            network = EmulatedNetwork(self.network_spec, self.backend, state)
            network.containers = self.start_containers(network, state)
            network.start()
            server = self.start_server(network, cgroups, state)
            if self.scenario["capture"]:
                captures = self.start_captures(network, state)
            self.run_plans(network, cgroups, state, device, profile)
            status = "complete"
        except KeyboardInterrupt as err:
            status = f"interrupted ({'SIGTERM' if isinstance(err, Terminated) else 'Ctrl-C'})"
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
        steps += [(f"remove container {c.name}", c.remove) for c in self.containers.values()]
        usage: dict = {}

        memory: dict = {}

        def account():
            for group in cgroups.groups:
                try:
                    usage[group.name] = group.cpu_usage_s()
                    peak = group.memory_peak_bytes()
                    memory[group.name] = {"peak_mb": None if peak is None else round(peak / MIB, 1),
                                          "oom_kills": group.oom_kills()}
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
        self.write_manifest(status=status, node_cpu_seconds=usage, node_memory=memory, teardown_problems=problems,
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
        if profile.constrained:
            cached = CalibrationCache().get(profile.key)
            how = "refined from this machine's cache" if cached and not cached.warning else "once, cached"
            self.say(f"calibrating the CPU quota for {profile.name} ({how})")
        result = node_settings(profile, cgroups)
        self.write_manifest(edge_device=result, memory_mb=self.edge_memory_mb)
        return result

    def check_capacity(self, device: dict) -> None:
        """The edges' calibrated quotas, with the calibration's HEADROOM each for the governors to make up
        the host's slow moments, plus a reserve for the server, delay stages and governors, must fit this
        machine's cores; otherwise the edges would run slower than their device. Refused (exit 2), or
        run and recorded as oversubscribed when asked to."""
        quota = device.get("quota_cores")
        if not quota:
            return
        edges = self.network_spec.edges
        needed = edges * quota * HEADROOM + RESERVE_CORES + RESERVE_CORES_PER_EDGE * edges
        cores = os.cpu_count() or 1
        fits = needed <= cores
        self.write_manifest(capacity={"cores": cores, "needed_cores": round(needed, 2), "edges": edges,
                                      "quota_cores": round(quota, 3), "headroom": HEADROOM,
                                      "reserve_cores": RESERVE_CORES + RESERVE_CORES_PER_EDGE * edges},
                            oversubscribed=not fits)
        if fits:
            return
        message = (f"{edges} x {device['device']} need {needed:.2f} cores ({edges} x {quota:.2f} quota x {HEADROOM} "
                   f"headroom + {RESERVE_CORES + RESERVE_CORES_PER_EDGE * edges:.2f} reserve), this machine has "
                   f"{cores}: the edges would run slower than the device")
        if not self.oversubscribe:
            raise UserError(message, where=str(self.scenario.path),
                            fix="fewer edges, a slower device, a larger machine, or --oversubscribe to run anyway")
        self.say(f"warning: {message}; running anyway (--oversubscribe), recorded in the manifest")

    def edge_inputs(self) -> int:
        return min(self.workload["requests"] + self.workload["warmup"], MAX_INPUTS)

    def check_memory(self, profile: Path | None, full: bool = True, threads: int = 1) -> None:
        """The edge program's memory, predicted from the model, the options it may run and its inputs
        (splitbed.app.footprint), stated and recorded before any node starts; refused (exit 2) when it
        exceeds the device's memory, where the node would be killed at its limit mid-run. full=False:
        without the codecs' state (before calibrations), a first check that costs nothing to fail."""
        options = [(p["split"], p.get("codec", "") if p["split"] != EDGE_ONLY else "", p.get("params", {}))
                   for p in self.plans if p["type"] == "fixed"] if full else []
        if profile is not None:
            options += [(o["split"], o["codec"], o["params"]) for o in json.loads(profile.read_text())["options"]]
        # once each, by their full settings: a plan's {step: 0.4} is the profile's {step: 0.4, alpha: 1.0}
        options = list({(split, codec, json.dumps(get_codec(codec, **params).params if codec else {}, sort_keys=True)):
                        (split, codec, params) for split, codec, params in options}.values())
        uplink = self.traces.get("uplink")
        footprint = edge_footprint(self.model, options, self.edge_inputs(), CalibrationStore(),
                                   len(uplink.start_s) if uplink is not None else 0, threads)
        limit_mb = self.edge_memory_mb
        self.write_manifest(edge_memory={**footprint.to_dict(), "limit_mb": limit_mb})
        if full:
            self.say(f"edge memory: {footprint.describe()} predicted"
                     + (f", of the device's {limit_mb} MB" if limit_mb else ""))
        if limit_mb and footprint.total > limit_mb * MIB:
            raise UserError(f"the edge program needs {footprint.describe()}, more than the node's {limit_mb} MB "
                            f"({self.edge_profile.name}): it would be killed at its memory limit",
                            where=str(self.scenario.path),
                            fix="fewer distinct inputs (workload.requests), fewer DISC options (fixed plans "
                                "instead of a planner), or a device with more memory")

    def calibrate_codecs(self) -> None:
        splits = [plan["split"] for plan in self.plans if plan.get("codec") == "disc"]
        CalibrationStore().ensure_splits(
            self.model, splits, lambda: torch.stack([s.tensor for s in calibration_samples(self.model)]), self.say)

    def aglop_profile(self, device: dict, cgroups: CgroupManager) -> Path | None:
        """The planners' profile (sizes, losses, times on this device), when a plan re-plans."""
        if all(plan["type"] == "fixed" for plan in self.plans):
            return None
        profile = build_profile(self.model, device, cgroups, say=self.say, progress=not self.quiet)
        path = self.dir / "aglop-profile.json"
        path.write_text(json.dumps(profile, indent=1))
        return path

    @torch.no_grad()
    def references(self, count: int) -> list[int]:
        """The uncompressed model's top-1 for the inputs the edges will send, computed here, outside
        the nodes, so that the edges' emulated CPUs spend no time on it."""
        samples = itertools.islice(load_dataset(self.scenario["dataset"], self.model, self.scenario["seed"]), count)
        full = self.model.full()
        out = []
        for batch, _, _ in batches(samples, 32):
            out += full(batch).argmax(1).tolist()
        return out

    def start_containers(self, network: EmulatedNetwork, state: RunState) -> dict[str, Container]:
        """A container for each node whose role names an image. It sees the run folder (read-write) and,
        read-only, the caches, the traces and the Fashion-MNIST folder, at the same paths as here."""
        roles = {name: "edge" for name in network.edge_names} | {network.server_name: "server"}
        traces = [Path(self.scenario["links"][name]["trace"]) for name in self.traces]
        mounts = [(self.dir, True)] + [(path, False) for path in [cache_root(), FASHION_MNIST_DIR, *traces]
                                       if path.exists()]
        safe_id = "".join(c if c.isalnum() or c in "_.-" else "_" for c in self.run_id)
        for name, role in roles.items():
            if role in self.images:
                self.say(f"node {name}: container from image {self.images[role].name}")
                self.containers[name] = Container(f"splitbed-{safe_id}-{name}", self.images[role], mounts,
                                                  hostname=name).start(state)
        self.write_manifest(node_images={name: {**c.image.to_dict(), "container": c.name, "container_id": c.id}
                                         for name, c in self.containers.items()})
        return self.containers

    def python_in(self, network: EmulatedNetwork, host: str, module: str, *args: str) -> list[str]:
        """The node's Python running `module`: this machine's, or inside the node's container the image's."""
        container = self.containers.get(host)
        if container is not None:
            return [*container.prefix(), "env", f"SPLITBED_CACHE={cache_root()}", "OMP_NUM_THREADS=1",
                    container.image.python, "-m", module, *args]
        return [*network.prefix(host), "env", f"PYTHONPATH={REPO}", "OMP_NUM_THREADS=1", sys.executable, "-m",
                module, *args]

    def start_server(self, network: EmulatedNetwork, cgroups: CgroupManager, state: RunState):
        group = cgroups.create(network.server_name)
        argv = self.python_in(network, network.server_name, "splitbed.app.server", "--port", str(PORT),
                              "--model", self.model.name, "--threads", str(server_threads()),
                              "--congestion-control", self.congestion)
        process = group.popen(argv, stdout=subprocess.PIPE, text=True)
        state.process(process.pid)
        started = read_start(process.stdout)
        if started is None:
            raise RuntimeError("the server program did not start")
        self.write_manifest(server_pid=process.pid, server_warmup_ms=started["warmup_ms"])
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

    def path_facts(self) -> PathFacts:
        """Each direction's delay between an edge and the server (its WAN hop's included in edge-cloud),
        and the WAN uplink's rate: the truth the oracle plans on and the model's judge predicts with."""
        links = self.scenario["links"]
        hops = {"up": ["uplink"], "down": ["downlink"]}
        if self.network_spec.kind == "edge-cloud":
            hops = {"up": ["uplink", "wan_up"], "down": ["downlink", "wan_down"]}
        delay = {way: sum(links.get(name, {}).get("delay_ms", 0.0) for name in names) for way, names in hops.items()}
        wan_rate = links.get("wan_up", {}).get("rate_mbit") if self.network_spec.kind == "edge-cloud" else None
        return PathFacts(delay["up"], delay["down"], wan_rate * 1e6 if wan_rate else None)

    def energy_facts(self) -> tuple[BoardPower | None, str | None]:
        """The edge's board power (busy with the threads its reference latency ran on) and its radio
        model, written into the manifest with their sources; None where not modelled."""
        profile, radio = self.edge_profile, self.scenario["links"].get("uplink", {}).get("radio", "none")
        power = None
        if profile.power and profile.target:
            power = profile.power.with_threads(profile.target.threads, profile.cores)
        radio = None if radio == "none" else radio
        self.write_manifest(energy_model={
            "board": None if power is None else {**asdict(profile.power), "busy_w": power.busy_w,
                                                 "busy_threads": profile.target.threads, "cores": profile.cores},
            "radio": None if radio is None else asdict(RADIOS[radio])})
        return power, radio

    def start_edges(self, network: EmulatedNetwork, cgroups: CgroupManager, state: RunState, device: dict,
                    profile: Path | None, governors: dict) -> list:
        """One edge program per edge node, in its cgroups at the device's CPU (its governor goes into
        `governors`); each runs every plan in turn."""
        uplink = self.scenario["links"].get("uplink", {})
        references = self.references(self.edge_inputs())
        power, radio = self.energy_facts()
        edges = []
        for name in network.edge_names:
            config = EdgeConfig(
                server=network.server_ip(), port=PORT, model=self.model.name, dataset=self.scenario["dataset"],
                seed=self.scenario["seed"], plans=self.plans, csv=str(self.dir / "requests.csv"),
                workload=Workload.from_scenario(self.workload),
                trace={k: uplink[k] for k in LINK_TRACE_FIELDS if k in uplink} if "trace" in uplink else None,
                uplink_rate_bps=uplink["rate_mbit"] * 1e6 if "rate_mbit" in uplink else None,
                path=self.path_facts(), tcp_congestion_control=self.congestion,
                profile=str(profile) if profile else None, threads=device["threads"] or 1,
                max_inputs=len(references), references=references, power=power, radio=radio)
            path = self.dir / f"edge-{name}.json"
            config.write(path)
            group = next((g for g in cgroups.groups if g.name == name), None) or cgroups.create(name)
            governor = constrain_node(group, device, self.edge_memory_mb, index=len(edges))
            if governor is not None:
                state.process(governor.pid)
                governors[name] = governor
            argv = self.python_in(network, name, "splitbed.app.edge", "--config", str(path), "--node", name)
            process = group.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            state.process(process.pid)
            edges.append(process)
        return edges

    def run_plans(self, network: EmulatedNetwork, cgroups: CgroupManager, state: RunState, device: dict,
                  profile: Path | None) -> None:
        """Every plan on the same trace: the replay restarts from its beginning when all edges are ready."""
        governors: dict = {}
        try:
            self.run_edges(network, cgroups, state, device, profile, governors)
        finally:
            report = {}
            for name, governor in governors.items():
                try:
                    report[name] = governor.stats()
                except (OSError, ValueError) as err:
                    report[name] = f"unreadable: {err}"
                governor.close()
            self.write_manifest(edge_cpu_governors=report)

    def run_edges(self, network: EmulatedNetwork, cgroups: CgroupManager, state: RunState, device: dict,
                  profile: Path | None, governors: dict) -> None:
        edges = self.start_edges(network, cgroups, state, device, profile, governors)
        finished = []
        try:
            for group in plan_groups(self.plans):
                for name, process in zip(network.edge_names, edges, strict=True):
                    self.expect_from(name, process, "ready", cgroups)
                label = "+".join(plan["name"] for plan in group)
                for plan in group:
                    self.say(f"plan {plan['name']}: " + (
                        f"split {plan['split']}, codec {plan.get('codec', '-')} {plan.get('params', {})}"
                        if plan["type"] == "fixed" else f"{plan['type']} (re-planned per request)")
                        + (" (in turn with the others of its group)" if len(group) > 1 else ""))
                replayer = network.replay(self.traces)  # every traced link from its start, on one clock
                try:
                    run_start = replayer.start() if replayer else time.monotonic()
                    self.write_manifest(run_start_ns={**self.manifest.get("run_start_ns", {}),
                                                      **{plan["name"]: int(run_start * 1e9) for plan in group}})
                    for process in edges:
                        process.stdin.write(f"go {int(run_start * 1e9)}\n")
                        process.stdin.flush()
                    with self.progress_bar(label, len(edges) * len(group), run_start) as advance:
                        for name, process in zip(network.edge_names, edges, strict=True):
                            finished += self.expect_from(name, process, "finished", cgroups, advance, run_start)
                finally:
                    if replayer:
                        replayer.stop()
                        replayer.close()
                        self.write_manifest(**{f"trace_applied_{label}": replayer.applied[:2000]})
                self.write_manifest(edge_plans=finished)
            for process in edges:
                process.stdin.close()
                process.wait(30)
        finally:
            for process in edges:
                if process.poll() is None:
                    process.terminate()

    @contextlib.contextmanager
    def progress_bar(self, label: str, plans: int, started: float):
        """Requests done of all; for a duration-bound workload, seconds elapsed of its duration, with the
        requests so far beside them (the request count is then only a cap)."""
        duration, per_plan = self.workload.get("duration_s"), self.workload["requests"] + self.workload["warmup"]
        total = round(duration) if duration else plans * per_plan
        with tqdm(total=total, desc=label, unit="s" if duration else "req", disable=self.quiet) as bar:
            done = 0

            def advance(count: int) -> None:
                nonlocal done
                done += count
                if not duration:
                    bar.update(count)
                    return
                bar.n = min(round(time.monotonic() - started, 1), total)
                bar.set_postfix_str(f"{done} requests ({done / plans:.0f} per plan)", refresh=True)

            yield advance

    def expect_from(self, node: str, process, key: str, cgroups: CgroupManager, progress=lambda n: None,
                    run_start: float | None = None):
        """expect(), and when the edge program stops first: which node, when and why, in the manifest
        (node_failures) and in the error; the kernel's OOM kill is read from the node's cgroup."""
        try:
            return self.expect(process, key, progress)
        except EdgeStopped as err:
            group = next((g for g in cgroups.groups if g.name == node), None)
            at_s = None if run_start is None else round(time.monotonic() - run_start, 1)
            failure = describe_stop(node, key, err.code, group, self.edge_memory_mb, at_s)
            self.write_manifest(node_failures=[*self.manifest.get("node_failures", []), failure])
            at = "" if at_s is None else f" {at_s} s into the replay"
            raise RunFailed(f"edge {node} stopped{at} before saying {key!r}: {failure['reason']}"
                            + (f" (peak {failure['peak_mb']} MB)" if failure["peak_mb"] else ""),
                            where=str(self.dir), fix="its rows so far and the reason are in the run folder") from None

    @staticmethod
    def expect(process, key: str, progress=lambda n: None):
        """Read the edge program's JSON lines until one has `key`; progress lines advance the bar."""
        for line in process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if key in message:
                return message[key]
            progress(1)
        code = process.wait()
        raise EdgeStopped(code)


def describe_stop(node: str, key: str, code: int, group, limit_mb: int | None, at_s: float | None) -> dict:
    """Why a node's program stopped, for the manifest: the kernel's OOM kills and the memory peak come
    from its cgroup (a SIGKILL alone could be anything)."""
    kills = group.oom_kills() if group is not None else None
    peak = group.memory_peak_bytes() if group is not None else None
    reason = f"killed by the kernel's OOM killer at its {limit_mb} MB memory limit" if kills else f"exit {code}"
    return {"node": node, "waiting_for": key, "exit": code, "reason": reason, "oom_kills": kills,
            "peak_mb": None if peak is None else round(peak / MIB, 1), "at_s": at_s}


class EdgeStopped(RuntimeError):
    def __init__(self, code: int):
        super().__init__(f"an edge program stopped (exit {code})")
        self.code = code


def unique_folder(path: Path) -> Path:
    """path, or path-2, path-3, ...: two runs started in the same second get folders of their own."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def run_scenario(scenario: Scenario, quick: bool = False, quiet: bool = False, out: Path | None = None) -> Path:
    return Run(scenario, quick, quiet, out).execute()
