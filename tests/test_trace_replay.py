"""Real traces as they come: outages emulated and met honestly, and one CSV log driving both directions."""

import csv

import numpy as np
import pytest

from splitbed.network.traces import load_link_trace
from tests.conftest import REPO, run_scenario_text

SCENARIO = """name: outages
topology: {{kind: single, edges: 1}}
nodes: {{edge: {{device: server}}, server: {{device: server}}}}
links:
  uplink: {{trace: {trace}, trace_format: mahimahi, bin_ms: 100, delay_ms: 5}}
  downlink: {{rate_mbit: 20, delay_ms: 5}}
model: fmnist_cnn
dataset: fashion-mnist-test
workload: {{requests: 24, warmup: 0, interval_s: 0.3, deadline_s: 1.0}}
plan: {{name: raw-conv1, type: fixed, split: conv1, codec: raw}}
output: {output}
"""


def mahimahi(path, spans):
    """A Mahimahi uplink: (start ms, end ms, packets per ms) spans, nothing in between (outages)."""
    stamps = [t for start, end, per_ms in spans for t in range(start, end) for _ in range(per_ms)]
    path.write_text("\n".join(map(str, stamps)) + "\n")
    return path


def test_outages_merge_and_are_listed(tmp_path):
    trace = load_link_trace({"trace": str(mahimahi(tmp_path / "up", [(1000, 2000, 1), (3500, 4000, 2)])),
                             "bin_ms": 100})
    assert trace.outages() == [(0.0, 1.0), (2.0, 3.5)]
    assert trace.rate_at(1.5) == pytest.approx(12e6)
    floored = load_link_trace({"trace": str(tmp_path / "up"), "floor_mbit": 0.5})
    assert floored.outages() == [] and floored.rate_at(0.5) == 0.5e6


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_a_scenario_rides_through_outages_at_the_start_and_in_the_middle(tmp_path):
    # nothing for 1 s, 3 s at 24 Mbit/s, nothing for 1.5 s, then 24 Mbit/s until the trace loops at 12 s
    trace = mahimahi(tmp_path / "cell.up", [(1000, 4000, 2), (5500, 12000, 2)])
    run_dir, manifest = run_scenario_text(tmp_path, SCENARIO.format(trace=trace, output=tmp_path / "results"),
                                          "outages")
    assert manifest["trace_outages"]["uplink"] == [[0.0, 1.0], [4.0, 5.5]]
    with (run_dir / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    outages = [(0.0, 1.0), (4.0, 5.5)]
    hit, clear = 0, 0
    for row in rows:
        start, e2e = float(row["start_s"]), float(row["e2e_ms"]) / 1000
        inside = next(((a, b) for a, b in outages if a <= start < b), None)
        if inside:  # sent into an outage: it waits for the link, or fails at its deadline, saying why
            hit += 1
            if row["status"] == "ok":
                assert start + e2e >= inside[1] - 0.05, row
            else:
                assert row["status"].startswith("failed: ") and len(row["status"]) > 10, row
        elif all(not (a - 0.2 <= start <= b + 0.5) for a, b in outages):  # well clear of any outage
            clear += 1
            assert row["status"] == "ok" and e2e < 0.5, row
    assert hit >= 2 and clear >= 8
    # nothing crossed the link while the trace was at zero: no request finished inside an outage
    # unless it was sent before it
    ends = np.array([float(r["start_s"]) + float(r["e2e_ms"]) / 1000 for r in rows if r["status"] == "ok"])
    for a, b in outages:
        assert not np.any((ends > a + 0.15) & (ends < b - 0.02)), (a, b, ends)


CSV_SCENARIO = """name: csv
topology: {{kind: single, edges: 1}}
nodes: {{edge: {{device: server}}, server: {{device: server}}}}
links:
  uplink: {{trace: {csv}, trace_format: csv, time_column: Timestamp, rate_column: UL_bitrate, rate_unit: kbit/s,
           delay_ms: 5}}
  downlink: {{trace: {csv}, trace_format: csv, time_column: Timestamp, rate_column: DL_bitrate, rate_unit: kbit/s,
             delay_ms: 5}}
model: fmnist_cnn
dataset: fashion-mnist-test
workload: {{requests: 6, warmup: 1, interval_s: 0.2}}
plan: {{name: raw-conv1, type: fixed, split: conv1, codec: raw}}
output: {output}
"""
GNETTRACK = REPO / "traces" / "csv" / "gnettrack_layout_bus1_fcc866.csv"


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
def test_one_csv_log_drives_the_uplink_and_the_downlink_from_its_own_columns(tmp_path):
    run_dir, manifest = run_scenario_text(tmp_path, CSV_SCENARIO.format(csv=GNETTRACK, output=tmp_path / "results"),
                                          "csv")
    applied = manifest["trace_applied_raw-conv1"]
    up = load_link_trace({"trace": str(GNETTRACK), "time_column": "Timestamp", "rate_column": "UL_bitrate"})
    down = load_link_trace({"trace": str(GNETTRACK), "time_column": "Timestamp", "rate_column": "DL_bitrate"})
    first = {index: rate for _, index, rate in reversed(applied)}  # each link's first applied rate
    assert sorted(first.values()) == sorted([up.rate_at(0), down.rate_at(0)])
    assert up.rate_at(0) == 4341e3 and down.rate_at(0) == 1418e3  # the file's first row, kbit/s
    with (run_dir / "requests.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    for row in rows:  # the rows carry the uplink column's rate at their send time
        assert float(row["trace_rate_mbps"]) == pytest.approx(up.rate_at(float(row["start_s"])) / 1e6, abs=1e-3)
