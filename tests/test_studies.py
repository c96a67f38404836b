"""Studies: a grid of scenarios resolved before anything runs, on the local engine and on a real Dask
cluster on this machine (one `emulator` resource: never two emulations at once), resumable, into one
tidy table."""

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from splitbed.errors import UserError
from splitbed.scenarios.study import load_study
from tests.conftest import REPO

RUN = [sys.executable, str(REPO / "run_scenario.py")]
EXAMPLE = REPO / "studies" / "example.yaml"
TINY_BASE = """name: tiny
topology: {kind: single, edges: 1}
nodes: {edge: {device: server}, server: {device: server}}
links:
  uplink: {rate_mbit: 20, delay_ms: 2}
  downlink: {rate_mbit: 20, delay_ms: 2}
model: fmnist_cnn
dataset: fashion-mnist-test
workload: {requests: 4, warmup: 1, interval_s: 0.1}
plan: {name: raw-conv1, type: fixed, split: conv1, codec: raw}
baselines: [{name: edge-only, type: fixed, split: edge-only}]
"""


def tiny_study(tmp_path, delays=(2, 10), slow_s=None):
    (tmp_path / "tiny.yaml").write_text(TINY_BASE if slow_s is None else
                                        TINY_BASE.replace("requests: 4", f"requests: 1000, duration_s: {slow_s}"))
    path = tmp_path / "study.yaml"
    path.write_text(f"name: tiny\nscenario: {tmp_path / 'tiny.yaml'}\n"
                    f"grid:\n  links.uplink.delay_ms: [{', '.join(map(str, delays))}]\n")
    return path


def table(folder):
    with (folder / "study.csv").open() as f:
        return list(csv.DictReader(f))


def test_the_example_grid_resolves_with_zip_and_exclude(tmp_path):
    study = load_study(EXAMPLE)
    assert len(study.runs) == 8 and len({r.run_id for r in study.runs}) == 8
    assert study.swept == ["links.uplink.trace", "nodes.edge.device", "links.uplink.delay_ms",
                           "links.downlink.delay_ms"]
    assert all(r.values["links.uplink.delay_ms"] == r.values["links.downlink.delay_ms"] for r in study.runs)
    assert [r.run_id for r in load_study(EXAMPLE).runs] == [r.run_id for r in study.runs]  # stable ids
    excluded = tmp_path / "x.yaml"
    excluded.write_text(EXAMPLE.read_text() + "exclude:\n  - {nodes.edge.device: rpi3bplus, links.uplink.delay_ms: 20}\n")
    assert len(load_study(excluded).runs) == 6


@pytest.mark.parametrize("grid,says", [
    ("links.uplnk.delay_ms: [1, 2]", "did you mean 'uplink'"),
    ("links.uplink.delay_ms: [1, .nan]", "out of range"),
    ("nodes.edge.device: [rpi4, rpi44]", "unknown device 'rpi44'"),
    ("links.uplink.delay_ms: 5", "non-empty list"),
])
def test_a_bad_grid_fails_before_anything_starts_naming_the_line(tmp_path, grid, says):
    path = tmp_path / "bad.yaml"
    path.write_text(f"scenario: {REPO / 'studies' / 'example-base.yaml'}\ngrid:\n  {grid}\n")
    with pytest.raises(UserError) as err:
        load_study(path)
    assert says in err.value.render() and f"{path}:3" in err.value.render()
    done = subprocess.run([*RUN, "--study", str(path), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2 and not (tmp_path / "out").exists()


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_example_study_local_then_rerun_skips_complete_runs(tmp_path):
    out = tmp_path / "local"
    done = subprocess.run([*RUN, "--study", str(EXAMPLE), "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr + done.stdout
    rows = table(out)
    assert len(rows) == 8 * 3 and {r["method"] for r in rows} == {"edge-only", "disc-block5", "server-only"}
    assert all(r["run_status"] == "complete" and float(r["p50_e2e_ms"]) > 0 for r in rows)
    assert {r["nodes.edge.device"] for r in rows} == {"rpi3bplus", "pi_zero_2w"}
    assert (out / "study.md").exists() and (out / "plots" / "p50_e2e.png").exists()
    again = subprocess.run([*RUN, "--study", str(EXAMPLE), "--quick", "--out", str(out)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "8 already complete, 0 not repeated, 0 to run" in again.stdout
    assert table(out) == rows


@pytest.fixture
def dask_cluster():
    """A real Dask cluster on this machine: one worker process with one `emulator` resource."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"emulator": 1},
                           dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_the_same_study_on_dask_gives_the_same_runs_and_columns(tmp_path, dask_cluster):
    study = tiny_study(tmp_path)
    local, remote = tmp_path / "local", tmp_path / "dask"
    for out, engine in ((local, []), (remote, ["--engine", "dask", "--address", dask_cluster.scheduler_address])):
        done = subprocess.run([*RUN, "--study", str(study), "--out", str(out), *engine], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr + done.stdout
    a, b = table(local), table(remote)
    assert list(a[0]) == list(b[0])
    assert sorted((r["run_id"], r["method"]) for r in a) == sorted((r["run_id"], r["method"]) for r in b)
    assert all(r["run_status"] == "complete" and r["requests"] == "4" for r in b)
    assert (remote / "runs" / b[0]["run_id"] / "requests.csv").exists()


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_a_worker_killed_mid_study_gives_a_retried_or_failed_run_and_keeps_the_rest(tmp_path, dask_cluster):
    study = tiny_study(tmp_path, delays=(2, 5, 10), slow_s=6)
    out = tmp_path / "dask"
    client_side = subprocess.Popen([*RUN, "--study", str(study), "--out", str(out), "--engine", "dask", "--address",
                                    dask_cluster.scheduler_address, "--retries", "1"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    from distributed import Client

    with Client(dask_cluster.scheduler_address) as client:
        worker_pids = list(client.run(os.getpid).values())
    killed = []

    def kill_the_worker_while_it_emulates():
        deadline = time.time() + 120
        while time.time() < deadline and not any_run_started():
            time.sleep(0.5)
        time.sleep(3)  # inside the emulation
        for pid in worker_pids:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    def any_run_started():
        listing = subprocess.run(["pgrep", "-f", "splitbed-run-"], capture_output=True, text=True).stdout
        return bool(listing.strip())

    killer = threading.Thread(target=kill_the_worker_while_it_emulates)
    killer.start()
    stdout, stderr = client_side.communicate(timeout=900)
    killer.join()
    assert killed, "the worker was never seen running an emulation"
    assert client_side.returncode == 0, stderr + stdout
    rows = table(out)
    statuses = {r["run_id"]: r["run_status"] for r in rows}
    assert len(statuses) == 3
    assert sum(s == "complete" for s in statuses.values()) >= 2  # the others kept
    assert all(s == "complete" or s.startswith("failed: ") for s in statuses.values())


@pytest.mark.root
def test_the_capacity_check_refuses_edges_that_do_not_fit_this_machine(tmp_path, monkeypatch):
    """Three Pi 4 nodes at 0.55 cores each, x1.4 headroom, and the server's 0.45-core reserve need 2.76
    cores: on 2 cores the run is refused before any node starts, --oversubscribe runs it and records
    so, and 3 cores fit. The quota and the core count are given, not calibrated or read from this
    machine, so the rule is checked on any machine."""
    from splitbed.scenarios import run
    from splitbed.scenarios.schema import load_scenario

    rpi4 = {"device": "rpi4", "quota_cores": 0.55, "period_us": 5000, "threads": 1, "gain": 1.0}
    monkeypatch.setattr(run, "node_settings", lambda profile, cgroups: {**rpi4, "device": profile.key})
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    three_edges = run.Run(load_scenario(REPO / "scenarios" / "three-edges.yaml"), quick=True, quiet=True,
                          out=tmp_path / "run")
    with pytest.raises(UserError) as refused:  # without the emulation lock: a refusal creates no network
        three_edges.execute_locked()
    assert "3 x rpi4 need 2.76 cores" in str(refused.value) and "this machine has 2" in str(refused.value)
    assert "--oversubscribe" in str(refused.value)
    assert (tmp_path / "run" / "requests.csv").read_text().count("\n") == 1  # the header, no row
    assert three_edges.manifest["oversubscribed"] and three_edges.manifest["capacity"]["needed_cores"] == 2.76
    assert three_edges.manifest["status"].startswith("failed: UserError")
    assert "node_images" not in three_edges.manifest and "server_pid" not in three_edges.manifest  # nothing started
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    three_edges.check_capacity(rpi4)  # fits
    assert not three_edges.manifest["oversubscribed"] and three_edges.manifest["capacity"]["cores"] == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    three_edges.oversubscribe = True
    three_edges.check_capacity(rpi4)  # does not fit, runs anyway, recorded
    assert three_edges.manifest["oversubscribed"] and three_edges.manifest["capacity"]["cores"] == 2
