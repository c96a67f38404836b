import csv
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splitbed.app import protocol
from splitbed.app.breakdown import NAMES, STAGES
from splitbed.app.server import WARMUP_PASSES, read_start
from splitbed.errors import UserError
from splitbed.scenarios.schema import PLAN_TYPES, load_scenario
from tests.conftest import REPO

RUN = [sys.executable, str(REPO / "run_scenario.py")]
FAST = """name: {name}
topology: {{kind: single, edges: 1}}
nodes: {{edge: {{device: server}}, server: {{device: server}}}}
links:
  uplink: {{rate_mbit: {rate}, delay_ms: 5}}
  downlink: {{rate_mbit: 20, delay_ms: 5}}
model: fmnist_cnn
dataset: fashion-mnist-test
workload: {{requests: {requests}, warmup: 1, interval_s: {interval}, deadline_s: 2}}
plan: {{name: raw-conv1, type: fixed, split: conv1, codec: raw}}
output: {output}
capture: {capture}
"""


def write(tmp_path, text, name="s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def our_processes_and_namespaces() -> tuple[str, str]:
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    bridges = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    return netns, bridges


@pytest.mark.parametrize("all_scenarios", sorted((REPO / "scenarios").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_scenarios_validate(all_scenarios):
    scenario = load_scenario(all_scenarios)
    for plan in [scenario["plan"], *scenario["baselines"]]:
        assert plan.get("type", "fixed") in PLAN_TYPES
        assert plan["split"] if plan.get("type", "fixed") == "fixed" else "split" not in plan


def test_misspelt_key_exits_2_naming_key_and_line_and_starts_nothing(tmp_path):
    before = our_processes_and_namespaces()
    path = write(tmp_path, "name: x\nworkload: {requests: 3}\nplan: {type: fixed, split: conv1, codec: raw}\n"
                           "lnks:\n  uplink: {rate_mbit: 5}\n")
    done = subprocess.run([*RUN, str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{path}:4" in done.stderr and "'lnks'" in done.stderr and "links" in done.stderr
    assert "Traceback" not in done.stderr
    assert our_processes_and_namespaces() == before


def test_missing_trace_file_exits_2_naming_it(tmp_path):
    path = write(tmp_path, "plan: {type: fixed, split: block5, codec: raw}\nlinks:\n"
                           "  uplink: {trace: traces/nope.txt}\n")
    done = subprocess.run([*RUN, str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "traces/nope.txt" in done.stderr and f"{path}:3" in done.stderr


def test_wrong_types_and_impossible_values(tmp_path):
    with pytest.raises(UserError, match="workload.requests: expected an integer"):
        load_scenario(write(tmp_path, "plan: {type: fixed, split: a, codec: raw}\nworkload: {requests: many}\n"))
    with pytest.raises(UserError, match="loss_pct"):
        load_scenario(write(tmp_path, "plan: {type: fixed, split: a, codec: raw}\n"
                                      "links: {uplink: {loss_pct: 150}}\n"))


def test_server_survives_garbage_and_answers_the_next_request(tmp_path):
    port = 17000 + os.getpid() % 1000
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "splitbed.app.server", "--port", str(port), "--model",
                               "fmnist_cnn"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        started = read_start(server.stdout)  # warmed before it listens: no request meets a cold model
        assert started is not None and len(started["warmup_ms"]) == WARMUP_PASSES
        assert all(ms > 0 for ms in started["warmup_ms"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(os.urandom(300))
            kind, body = protocol.recv_frame(s)
            assert kind == protocol.ERROR and "magic" in json.loads(body)["error"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(struct.pack(">2sBBI", b"SQ", 1, 1, 0xFFFFFFFF))  # a 4 GiB length prefix
            kind, body = protocol.recv_frame(s)
            assert kind == protocol.ERROR and "exceeds" in json.loads(body)["error"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # a bad tensor message
            protocol.send_frame(s, protocol.REQUEST, protocol.request_body({"id": 1, "split": "conv1"}, b"junk"))
            kind, _ = protocol.recv_frame(s)
            assert kind == protocol.ERROR
            import numpy as np

            from splitbed.codecs import get_codec
            x = np.zeros((1, 32, 14, 14), np.float32)  # the same connection still serves a valid request
            protocol.send_frame(s, protocol.REQUEST, protocol.request_body({"id": 2, "split": "conv1"},
                                                                           get_codec("raw").encode(x)))
            kind, body = protocol.recv_frame(s)
            reply = json.loads(body)
            assert kind == protocol.RESPONSE and reply["id"] == 2 and 0 <= reply["prediction"] < 10
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()


def rows_of(run_dir: Path) -> list[dict]:
    with (run_dir / "requests.csv").open() as f:
        return list(csv.DictReader(f))


def run_with_rows(tmp_path, name: str, count: int, timeout_s: float = 120) -> Path:
    """Wait until a running scenario's folder has `count` rows; returns the folder."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        runs = list((tmp_path / "results").glob(f"{name}-*"))
        if runs and (runs[0] / "requests.csv").exists() and len(rows_of(runs[0])) >= count:
            return runs[0]
        time.sleep(0.2)
    raise AssertionError(f"no {count} rows from {name} within {timeout_s} s")


def run_fast(tmp_path, name, rate, requests=8, interval=0.0, capture=False) -> Path:
    path = write(tmp_path, FAST.format(name=name, rate=rate, requests=requests, interval=interval,
                                       output=tmp_path / "results", capture=str(capture).lower()), f"{name}.yaml")
    done = subprocess.run([*RUN, str(path), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return next((tmp_path / "results").glob(f"{name}-*"))


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_uplink_time_grows_when_the_rate_shrinks(tmp_path):
    fast, slow = run_fast(tmp_path, "fast", 20), run_fast(tmp_path, "slow", 2)
    up_fast = sorted(float(r["uplink_ms"]) for r in rows_of(fast))
    up_slow = sorted(float(r["uplink_ms"]) for r in rows_of(slow))
    # 25 KB of fp32 at conv1: ~10 ms at 20 Mbit/s, ~100 ms at 2 Mbit/s (plus 5 ms delay)
    assert up_slow[len(up_slow) // 2] > 4 * up_fast[len(up_fast) // 2]
    for run_dir in (fast, slow):
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["link_backend"]
        rows = rows_of(run_dir)
        assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
        assert list(rows[0]) == NAMES
        for r in rows:  # the stages against a second clock read apart from them, on both nodes
            assert abs(sum(float(r[s]) for s in STAGES) - float(r["wall_ms"])) <= 0.5 + 0.01 * float(r["wall_ms"])
            server = sum(float(r[s]) for s in ("server_queue_ms", "decode_ms", "server_compute_ms"))
            assert 0 <= float(r["server_wall_ms"]) - server <= 0.5 + 0.01 * server
            assert 30 < float(r["edge_anon_mb"]) <= float(r["edge_rss_mb"])
        assert (run_dir / "summary.md").exists() and (run_dir / "summary.csv").exists()
        # the report ran at the end: five plots for a single edge, each drawn from this run's rows
        drawn = json.loads((run_dir / "plots" / "plots.json").read_text())
        assert drawn["rows"] == len(rows) and drawn["points"]["timeline"] == len(rows)
        assert drawn["points"]["cdf"] == drawn["points"]["bytes"] == drawn["points"]["memory"] == len(rows)
        assert "nodes" not in drawn["points"]
        for name in ("timeline", "breakdown", "cdf", "bytes", "memory"):
            assert (run_dir / "plots" / f"{name}.png").stat().st_size > 10_000
    out = tmp_path / "compared"
    done = subprocess.run([sys.executable, "-m", "splitbed.analysis", "compare", str(fast), str(slow), "--out",
                           str(out)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    with (out / "compare.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [(r["run"], r["method"]) for r in table] == [(fast.name, "raw-conv1"), (slow.name, "raw-conv1")]
    assert (out / "compare.png").stat().st_size > 10_000


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_killing_the_server_mid_run_gives_failed_rows_and_a_clean_exit(tmp_path):
    path = write(tmp_path, FAST.format(name="kill", rate=20, requests=40, interval=0.1,
                                       output=tmp_path / "results", capture="false"))
    runner = subprocess.Popen([*RUN, str(path), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        run_dir = run_with_rows(tmp_path, "kill", 5)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        os.kill(manifest["server_pid"], signal.SIGKILL)
        _, err = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, err
    rows = rows_of(run_dir)
    failed = [r for r in rows if r["status"].startswith("failed")]
    assert len(rows) == 40 and failed and all(len(r["status"]) > len("failed: ") for r in failed)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.root
def test_delay_on_a_rate_only_backend_exits_2_before_anything_starts(tmp_path):
    before = our_processes_and_namespaces()
    path = write(tmp_path, "backend: htb\nplan: {type: fixed, split: conv1, codec: raw}\nmodel: fmnist_cnn\n"
                           "links: {uplink: {rate_mbit: 5, delay_ms: 20}}\n")
    done = subprocess.run([*RUN, str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "cannot emulate" in done.stderr and "links.uplink" in done.stderr
    assert our_processes_and_namespaces() == before
    assert not list((REPO / "results").glob("s-*"))  # no run folder either


def test_a_csv_with_a_column_removed_fails_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    names = [n for n in NAMES if n != "uplink_ms"]
    (run_dir / "requests.csv").write_text(",".join(names) + "\n")
    done = subprocess.run([sys.executable, "-m", "splitbed.analysis", "report", str(run_dir)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "uplink_ms" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_capture_counts_each_requests_bytes_on_the_wire(tmp_path):
    run_dir = run_fast(tmp_path, "cap", 10, requests=6, interval=0.05, capture=True)
    with (run_dir / "requests_capture.csv").open() as f:
        joined = list(csv.DictReader(f))
    assert len(joined) == 6
    for row in joined:
        payload, frames = int(row["wire_bytes"]), int(row["capture_frame_bytes"])
        headers = int(row["capture_segments"]) * (14 + 20 + 32)  # Ethernet + IPv4 + TCP with timestamps
        assert int(row["capture_payload_bytes"]) >= payload
        assert frames >= payload and abs(frames - (payload + headers)) <= 0.1 * (payload + headers)
    assert (run_dir / "plots" / "goodput.png").stat().st_size > 10_000


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_duration_ends_a_run_before_its_request_count(tmp_path):
    text = FAST.format(name="dur", rate=20, requests=1000, interval=0.1, output=tmp_path / "results",
                       capture="false").replace("deadline_s: 2}", "deadline_s: 2, duration_s: 1.5}")
    done = subprocess.run([*RUN, str(write(tmp_path, text)), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = rows_of(next((tmp_path / "results").glob("dur-*")))
    assert 10 <= len(rows) <= 16  # 1.5 s at one request per 0.1 s


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_ctrl_c_keeps_rows_marks_the_manifest_and_cleans_up(tmp_path):
    before = our_processes_and_namespaces()
    path = write(tmp_path, FAST.format(name="intr", rate=20, requests=400, interval=0.05, output=tmp_path / "results",
                                       capture="false"))
    # Ctrl-C as at a terminal, even where this suite runs in a background job (which ignores SIGINT)
    runner = subprocess.Popen([*RUN, str(path), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run_dir = run_with_rows(tmp_path, "intr", 5)
    runner.send_signal(signal.SIGINT)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 130 and "Traceback" not in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"].startswith("interrupted")
    rows = rows_of(run_dir)
    assert 5 <= len(rows) < 400
    assert our_processes_and_namespaces() == before
    assert not list(Path("/run/splitbed").glob(f"intr-*-{runner.pid}.jsonl"))


def test_every_csv_column_is_in_the_docs_table_and_named_in_the_readme():
    from splitbed.app.breakdown import markdown_table

    assert markdown_table() in (REPO / "docs" / "analysis.md").read_text()
    readme = (REPO / "README.md").read_text()
    missing = [name for name in NAMES if f"`{name}`" not in readme and not name.startswith("model_")]
    assert missing == [] and "`model_*_ms`" in readme
