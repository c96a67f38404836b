"""A request's edge energy (splitbed/network/radio.py, devices.catalog.Power): the radio's transfers,
tail and promotion from Huang et al. (MobiSys 2012), and the board busy or idle, by published powers."""

import pytest

from splitbed.devices.catalog import load_profiles
from splitbed.network.radio import RADIOS, RadioTimeline, on_air_bits

LTE = RADIOS["lte"]
KIB100 = 100 * 1024 * 8  # bits


def test_an_lte_transfer_costs_alpha_per_megabit_and_base_power_for_its_time():
    # 100 KiB at 5 Mbit/s: 0.8192 Mbit in 163.84 ms
    assert LTE.transfer_mj(KIB100, 163.84, up=True) == pytest.approx(438.39 * 0.8192 + 1288.04 * 0.16384)
    assert LTE.transfer_mj(KIB100, 163.84, up=False) == pytest.approx(51.97 * 0.8192 + 1288.04 * 0.16384)


def test_an_upload_from_idle_pays_promotion_transfer_and_the_whole_tail():
    """One 100 KiB upload at 5 Mbit/s with requests 20 s apart (longer than the 11.6 s tail): promotion
    314.9 mJ + transfer 570.2 mJ + tail 12,270.6 mJ + the idle rest (derived from the model's
    parameters: about 13.2 J, almost all of it the tail)."""
    timeline = RadioTimeline(LTE, interval_ms=20_000)
    energy = timeline.request_mj(0.0, 0.0, 163.84, 0.0, 0.0, KIB100, 0.0)
    idle_rest = (20_000 - 163.84 - 11_576) * LTE.idle_mw / 1e3
    assert energy == pytest.approx(314.9 + 570.16 + 12_270.56 + idle_rest, rel=1e-4)
    assert timeline.request_mj(0.0, 0.0, 163.84, 0.0, 0.0, KIB100, 0.0) == pytest.approx(energy)  # idle again


def test_back_to_back_requests_pay_one_promotion_and_stay_connected():
    timeline = RadioTimeline(LTE)
    first = timeline.request_mj(50.0, 5.0, 20.0, 10.0, 10.0, 8000, 2000)
    second = timeline.request_mj(50.0, 5.0, 20.0, 10.0, 10.0, 8000, 2000)
    # the first found the radio idle through head and encode (55 ms) and paid the promotion
    assert first - second == pytest.approx(LTE.promotion_mj() + (LTE.idle_mw - LTE.tail_mw) * 55 / 1e3)
    # connected through head and encode (55 ms) and the server's 10 ms, at tail power
    transfers = LTE.transfer_mj(8000, 20.0, up=True) + LTE.transfer_mj(2000, 10.0, up=False)
    assert second == pytest.approx(transfers + 1060.0 * 65 / 1e3)


def test_edge_only_requests_spend_the_tail_then_idle_power():
    timeline = RadioTimeline(LTE)
    timeline.request_mj(0.0, 0.0, 20.0, 0.0, 10.0, 8000, 2000)
    tail = timeline.request_mj(10_000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # 10 s of computing alone
    assert tail == pytest.approx(1060.0 * 10.0)
    later = timeline.request_mj(10_000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # 1.576 s of tail left, then idle
    assert later == pytest.approx(1060.0 * 1.576 + LTE.idle_mw * 8.424)


def test_a_probe_is_charged_like_a_transfer_and_keeps_the_radio_connected():
    timeline = RadioTimeline(LTE)
    probe = timeline.probe_mj(16_000 * 8, 30.0, 300 * 8, 10.0)
    assert probe == pytest.approx(LTE.promotion_mj() + LTE.transfer_mj(128_000, 30.0, True)
                                  + LTE.transfer_mj(2400, 10.0, False))
    assert timeline.since_last_ms == 0.0


def test_on_air_bits_count_each_segments_headers():
    assert on_air_bits(1448) == 8 * (1448 + 52) and on_air_bits(1449) == 8 * (1449 + 104)


def test_board_power_is_busy_through_compute_and_idle_while_waiting():
    profiles = load_profiles()
    pi4 = profiles["rpi4"]
    assert (pi4.power.idle_w, pi4.power.full_w) == (1.6, 5.0)  # J. Geerling's sbc-reviews, at the wall
    assert pi4.power.busy_w(4, pi4.cores) == 5.0 and pi4.power.busy_w(1, pi4.cores) == pytest.approx(2.45)
    assert pi4.power.request_mj(busy_ms=100.0, idle_ms=50.0, threads=4, cores=4) == pytest.approx(580.0)
    assert profiles["jetson_nano"].power is None and profiles["server"].power is None
    assert all(p.power.source and (p.power.derived or not p.power.estimate) for p in profiles.values() if p.power)


@pytest.mark.root
@pytest.mark.mininet
def test_a_run_on_lte_writes_each_requests_board_and_radio_energy(tmp_path):
    """Pi Zero 2 W on an LTE uplink: every answered row carries its energy; the board's is busy power
    through head and encode and idle power through the rest; each plan's radio is charged as if the plan
    ran alone, so edge-only's only idles, and DISC's first request pays the promotion."""
    import csv

    from tests.conftest import run_scenario_text

    text = (f"name: energy\nnodes: {{edge: {{device: pi_zero_2w}}}}\n"
            f"links:\n  uplink: {{rate_mbit: 5, delay_ms: 10, radio: lte}}\n  downlink: {{rate_mbit: 10, delay_ms: 10}}\n"
            f"model: efficientnet_lite0\nworkload: {{requests: 6, warmup: 0, deadline_s: 10}}\n"
            f"plan: {{name: edge-only, type: fixed, split: edge-only}}\n"
            f"baselines: [{{name: disc, type: fixed, split: block5, codec: disc, params: {{step: 0.4}}}}]\n"
            f"output: {tmp_path / 'results'}\n")
    run_dir, manifest = run_scenario_text(tmp_path, text, "energy")
    board = manifest["energy_model"]["board"]
    assert (board["idle_w"], board["busy_w"]) == (0.6, 1.75) and manifest["energy_model"]["radio"]["name"] == "lte"
    with (run_dir / "requests.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    assert len(rows) == 12
    for r in rows:
        busy = float(r["edge_compute_ms"]) + float(r["encode_ms"])
        expected = 1.75 * busy + 0.6 * (float(r["e2e_ms"]) - busy)
        assert float(r["edge_compute_mj"]) == pytest.approx(expected, abs=0.01)
        assert float(r["edge_energy_mj"]) == pytest.approx(float(r["edge_compute_mj"]) + float(r["radio_mj"]), abs=0.01)
    disc = [float(r["radio_mj"]) for r in rows if r["method"] == "disc"]
    edge_only = [float(r["radio_mj"]) for r in rows if r["method"] == "edge-only"]
    # each plan as if alone: edge-only never sends, so its radio only ever idles (paging)
    assert all(v == pytest.approx(float(r["e2e_ms"]) * LTE.idle_mw / 1e3, abs=0.01)
               for v, r in zip(edge_only, [r for r in rows if r["method"] == "edge-only"], strict=True))
    assert disc[0] > LTE.promotion_mj() and all(v > 0 for v in disc)
