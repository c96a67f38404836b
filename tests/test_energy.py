"""A request's edge energy (splitbed/network/radio.py, devices.catalog.Power): the radio's transfers,
tail and promotion from Huang et al. (MobiSys 2012), and the board busy or idle, by published powers."""

import statistics

import numpy as np
import pytest

from splitbed.aglop.energy import EdgeEnergy, EnergyModel, Objective
from splitbed.aglop.online import make_policy
from splitbed.aglop.planner import Planner
from splitbed.aglop.profile import Option
from splitbed.devices.catalog import BoardPower, load_profiles
from splitbed.network.radio import RADIOS, RadioTimeline, on_air_bits

LTE = RADIOS["lte"]
KIB100 = 100 * 1024 * 8  # bits


def test_an_lte_transfer_costs_alpha_per_megabit_and_base_power_for_its_time():
    # 100 KiB at 5 Mbit/s: 0.8192 Mbit in 163.84 ms
    assert LTE.transfer_mj(KIB100, 163.84, up=True) == pytest.approx(438.39 * 0.8192 + 1288.04 * 0.16384)
    assert LTE.transfer_mj(KIB100, 163.84, up=False) == pytest.approx(51.97 * 0.8192 + 1288.04 * 0.16384)


@pytest.mark.parametrize("radio,published_j,tolerance", [("lte", 12.76, 0.02), ("wifi", 0.04, 0.125)])
def test_one_packet_from_idle_costs_what_huang_et_al_publish(radio, published_j, tolerance):
    """Huang et al. (MobiSys 2012): "if only one packet is transferred, the energy usage considering both
    promotion and tail energy for LTE, 3G and WiFi is 12.76 J, 7.38 J and 0.04 J" (read through a quote,
    the paper's body could not be opened). From the model's parameters: LTE 12.59 J (1.4% under: the
    tail is one flat power, without DRX's on-duration peaks), WiFi 0.038 J (0.04 to two decimals)."""
    model = RADIOS[radio]
    one_packet = RadioTimeline(model, interval_ms=60_000).request_mj(0.0, 0.0, 0.0, 0.0, 0.0, on_air_bits(100), 0.0)
    idle_rest = model.idle_mw * (60_000 - model.tail_ms) / 1e3
    assert (one_packet - idle_rest) / 1e3 == pytest.approx(published_j, rel=tolerance)


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
    assert pi4.power.with_threads(4, pi4.cores).request_mj(busy_ms=100.0, idle_ms=50.0) == pytest.approx(580.0)
    assert profiles["jetson_nano"].power is None and profiles["server"].power is None
    assert all(p.power.source and (p.power.derived or not p.power.estimate) for p in profiles.values() if p.power)


PI_ZERO = BoardPower(idle_w=0.6, busy_w=1.75)  # devices.yaml's pi_zero_2w with its 4 threads
LOCAL = Option("edge-only", "", head_ms=145)
DISC = Option("block11", "disc", {"step": 0.4}, bytes_mean=2300, head_ms=75, encode_ms=0.2, decode_ms=0.2, tail_ms=4)


def test_the_energy_model_charges_an_option_as_runs_measure_it():
    """Back to back, an offloading option's radio sits in its tail through every head (promoted once),
    as RadioTimeline charges measured requests; edge-only pays the board and an idle radio, or the mean
    power of its probes."""
    model = EnergyModel(EdgeEnergy(PI_ZERO, LTE))
    stages = {"head": np.array([145.0, 40.0]), "encode": np.array([0.0, 2.0]), "transfer": np.array([0.0, 30.0]),
              "decode": np.array([0.0, 1.0]), "tail": np.array([0.0, 8.0])}  # a DISC option at block5
    local, disc = model.predict(stages, np.array([0.0, 3080.0]))
    assert local == pytest.approx(1.75 * 145 + LTE.idle_mw * 145 / 1e3)
    timeline = RadioTimeline(LTE)
    timeline.request_mj(40.0, 2.0, 30.0, 9.0, 0.0, on_air_bits(3080), on_air_bits(200))  # the first pays promotion
    steady = timeline.request_mj(40.0, 2.0, 30.0, 9.0, 0.0, on_air_bits(3080), on_air_bits(200))
    assert disc == pytest.approx(1.75 * 42 + 0.6 * 39 + steady)
    # probing once a second holds the LTE radio connected: edge-only then pays (nearly) the tail's power
    probing = EnergyModel(EdgeEnergy(PI_ZERO, LTE), probe_interval_s=1.0, probe_bytes=16384)
    assert LTE.tail_mw < probing.idle_radio_mw(10e6) < 1.1 * LTE.tail_mw  # the probes' own transfers on top
    # once a minute: a promotion and one tail per minute
    rare = EnergyModel(EdgeEnergy(PI_ZERO, LTE), probe_interval_s=60.0, probe_bytes=16384).idle_radio_mw(10e6)
    probe_ms = on_air_bits(16384) / 10e6 * 1e3
    cycle_mj = (LTE.promotion_mj() + LTE.transfer_mj(on_air_bits(16384), probe_ms, up=True)
                + LTE.tail_mw * LTE.tail_ms / 1e3 + LTE.idle_mw * (60_000 - probe_ms - LTE.tail_ms) / 1e3)
    assert rare == pytest.approx(cycle_mj / 60)


def test_the_energy_optimal_split_differs_from_the_latency_optimal_one():
    """A Pi Zero 2 W on LTE at 10 Mbit/s, DISC after block11: offloading is faster, but the radio's tail
    power through the 75 ms head and its base power through the transfer cost more than computing the
    rest locally, so minimising energy keeps the request on the device."""
    edge = EdgeEnergy(PI_ZERO, LTE)
    fast = Planner([LOCAL, DISC], energy=EnergyModel(edge))
    frugal = Planner([LOCAL, DISC], objective=Objective("energy"), energy=EnergyModel(edge))
    assert fast.choose(10e6, 40.0).option == DISC and frugal.choose(10e6, 40.0).option == LOCAL
    decision = frugal.choose(10e6, 40.0)
    assert decision.predicted_mj == pytest.approx(EnergyModel(edge).predict(
        {"head": np.array([145.0]), "encode": np.zeros(1), "transfer": np.zeros(1), "decode": np.zeros(1),
         "tail": np.zeros(1)}, np.zeros(1))[0])
    # without a radio the board alone decides: waiting idle on the link costs less than computing
    board_only = Planner([LOCAL, DISC], objective=Objective("energy"), energy=EnergyModel(EdgeEnergy(PI_ZERO, None)))
    assert board_only.choose(10e6, 40.0).option == DISC


def test_a_budget_or_deadline_bounds_the_other_quantity_and_falls_back_to_the_closest():
    edge = EdgeEnergy(PI_ZERO, LTE)
    plain = Planner([LOCAL, DISC], energy=EnergyModel(edge)).choose(10e6, 40.0)
    assert plain.option == DISC
    under = Planner([LOCAL, DISC], objective=Objective(energy_budget_mj=plain.predicted_mj - 1),
                    energy=EnergyModel(edge)).choose(10e6, 40.0)
    assert under.option == LOCAL and under.predicted_mj < plain.predicted_mj - 1
    impossible = Planner([LOCAL, DISC], objective=Objective(energy_budget_mj=1.0), energy=EnergyModel(edge))
    assert impossible.choose(10e6, 40.0).option == LOCAL  # none under 1 mJ: the least energy
    quick = Planner([LOCAL, DISC], objective=Objective("energy", deadline_ms=130.0), energy=EnergyModel(edge))
    assert quick.choose(10e6, 40.0).option == DISC  # edge-only's 145 ms misses the deadline
    hopeless = Planner([LOCAL, DISC], objective=Objective("energy", deadline_ms=50.0), energy=EnergyModel(edge))
    assert hopeless.choose(10e6, 40.0).option == DISC  # both miss it: the quicker one
    with pytest.raises(ValueError, match="bound"):
        Objective("latency", deadline_ms=100.0)
    with pytest.raises(ValueError, match="energy model"):
        Planner([LOCAL, DISC], objective=Objective("energy"))


def test_a_budget_holds_for_a_large_message_not_only_for_the_mean_one():
    """A JPEG's size varies 3x between photos: a budget per request keeps the option's 90th-percentile
    message within it. The same JPEG with a steady size (p90 = mean) fits the budget and is chosen;
    with a long tail of sizes it does not, and the request stays on the device."""
    edge = EdgeEnergy(PI_ZERO, RADIOS["wifi"])
    steady = Option("server-only", "jpeg", {"quality": 85}, bytes_mean=10_000, bytes_p90=10_000, encode_ms=1,
                    decode_ms=1, tail_ms=16)
    varied = Option("server-only", "jpeg", {"quality": 85}, bytes_mean=10_000, bytes_p90=30_000, encode_ms=1,
                    decode_ms=1, tail_ms=16)
    local = Option("edge-only", "", head_ms=75)  # quicker than the JPEG's round trip over 8 Mbit/s, 30 ms each way
    free = Planner([local, varied], energy=EnergyModel(edge)).choose(8e6, 60.0)
    assert free.option == local  # least latency
    jpeg_mj = Planner([varied], energy=EnergyModel(edge)).choose(8e6, 60.0).predicted_mj
    assert jpeg_mj < free.predicted_mj  # the JPEG's mean request costs less than computing locally ...
    budget = Objective(energy_budget_mj=(jpeg_mj + free.predicted_mj) / 2)
    assert Planner([local, steady], objective=budget, energy=EnergyModel(edge)).choose(8e6, 60.0).option == steady
    # ... but its 90th-percentile one (20 KB more to send) does not fit: no option is within, the closest runs
    chosen = Planner([local, varied], objective=budget, energy=EnergyModel(edge)).choose(8e6, 60.0)
    assert chosen.option == local


def test_a_budgeted_planner_never_looks_at_an_option_over_the_budget():
    """Exploration runs edge-only when it is predicted close to an offloading choice; under an energy
    budget it stays within it, even when none fits (the least-energy option is then run, and nothing
    else is tried)."""
    edge = EdgeEnergy(PI_ZERO, None)  # the board alone: edge-only (100 ms busy, 175 mJ) costs more than DISC
    close = Option("edge-only", "", head_ms=100)
    for budget in (170.0, 1.0):  # DISC within (160 mJ) and edge-only not; then neither, edge-only within 15%
        planner = Planner([close, DISC], explore_pct=15, objective=Objective(energy_budget_mj=budget),
                          energy=EnergyModel(edge))
        ran = [planner.choose(10e6, 40.0).option for _ in range(40)]
        assert all(option == DISC for option in ran)
    free = Planner([close, DISC], explore_pct=15, energy=EnergyModel(edge))
    assert close in [free.choose(10e6, 40.0).option for _ in range(40)]  # unbounded: edge-only, the fastest


def test_plans_take_their_objective_and_energy_plans_probe_rarely():
    profile = {"options": [vars(o) for o in (LOCAL, DISC)]}
    edge = EdgeEnergy(PI_ZERO, LTE)
    latency = make_policy({"type": "aglop"}, profile, None, edge)
    energy = make_policy({"type": "aglop", "objective": "energy"}, profile, None, edge)
    assert latency.probe_interval_s == 1.0 and energy.probe_interval_s == 60.0
    assert energy.planner.objective.minimise == "energy"
    assert make_policy({"type": "neurosurgeon", "objective": "energy"}, profile, None, edge).planner.objective.needs_energy
    assert make_policy({"type": "aglop"}, profile).planner.energy is None  # no facts: latency only, no prediction


@pytest.mark.root
@pytest.mark.mininet
def test_a_run_on_lte_writes_each_requests_board_and_radio_energy(tmp_path):
    """Pi Zero 2 W on an LTE uplink: every answered row carries its energy; the board's is busy power
    through head and encode and idle power through the rest; each plan's radio is charged as if the plan
    ran alone, so edge-only's only idles, and DISC's first request pays the promotion."""
    import csv
    import json

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
    drawn = json.loads((run_dir / "plots" / "plots.json").read_text())["points"]
    assert drawn["energy"] == len(rows)  # the energy-against-latency plot drew every answered request


BAD_OBJECTIVES = [
    ("{type: aglop, objective: energy, deadline_ms: .nan}", "deadline_ms"),
    ("{type: aglop, energy_budget_mj: -5}", "energy_budget_mj"),
    ("{type: aglop, energy_budget_mj: 1e308}", "energy_budget_mj"),
    ("{type: aglop, objective: joules}", "unknown objective"),
    ("{type: aglop, objective: energy, energy_budget_mj: 300}", "does not minimise"),
    ("{type: aglop, deadline_ms: 300}", "does not minimise"),
    ("{type: fixed, split: edge-only, objective: energy}", "plans nothing"),
]


@pytest.mark.parametrize("plan,message", BAD_OBJECTIVES)
def test_objective_fields_are_checked_before_anything_starts(tmp_path, capsys, plan, message):
    from splitbed.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(f"nodes: {{edge: {{device: pi_zero_2w}}}}\nlinks: {{uplink: {{rate_mbit: 5, radio: lte}}}}\n"
                    f"plan: {plan}\n")
    assert main([str(path), "--validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("links,message", [
    ("{uplink: {rate_mbit: 5, radio: 5g-nsa}}", "links.uplink.radio"),
    ("{uplink: {rate_mbit: 5, radio: 3}}", "links.uplink.radio"),
    ("{uplink: {rate_mbit: 5}, downlink: {rate_mbit: 5, radio: lte}}", "named once"),
])
def test_a_links_radio_is_checked_before_anything_starts(tmp_path, capsys, links, message):
    from splitbed.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(f"nodes: {{edge: {{device: pi_zero_2w}}}}\nlinks: {links}\nplan: {{type: aglop}}\n")
    assert main([str(path), "--validate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_planning_on_energy_needs_the_devices_power(tmp_path, capsys):
    from splitbed.cli import main

    path = tmp_path / "s.yaml"
    for device, code in (("jetson_nano", 2), ("rpi4", 0)):
        path.write_text(f"nodes: {{edge: {{device: {device}}}}}\nplan: {{type: aglop, objective: energy}}\n")
        assert main([str(path), "--validate"]) == code
        assert ("has none in devices.yaml" in capsys.readouterr().err) == (code == 2)


@pytest.mark.root
@pytest.mark.mininet
def test_an_energy_budget_is_honoured_request_by_request(tmp_path):
    """A Pi Zero 2 W's board on an 8 Mbit/s uplink, 100 ms each way: edge-only (its profile says 190
    ms, runs measure 100-160) is the fastest and costs 1.75 W through it; sending the input as a JPEG
    (about 240 ms) costs about 145 mJ (the board idles at 0.6 W through the round trip). Plain AGLOP
    computes locally; under a 175 mJ budget AGLOP offloads, every request is planned within it and
    measures within it, but for those whose edge work the CPU quota stalled. No radio: a WiFi radio's
    share grows with each photo's JPEG size (6-27 KB), which the budget's 90th-percentile message
    bounds in the planner (unit-tested) but which would put the two options' measured ranges over each
    other here. TCP keeps its window between requests:
    restarted after each idle turn, every JPEG over ten segments would wait a round trip more. The
    accuracy budget is the expected drop, under which the JPEG at quality 85 is in it (under the
    calibrated drop only quality 95 is, over the energy budget here)."""
    import csv
    import json

    from tests.conftest import run_scenario_text

    text = (f"name: budget\nnodes: {{edge: {{device: pi_zero_2w}}}}\n"
            f"links:\n  uplink: {{rate_mbit: 8, delay_ms: 100}}\n  downlink: {{rate_mbit: 10, delay_ms: 100}}\n"
            f"model: efficientnet_lite0\nworkload: {{requests: 14, warmup: 2, deadline_s: 20}}\n"
            f"plan: {{name: budget, type: aglop, energy_budget_mj: 175, criterion: expected, interleave: true}}\n"
            f"baselines: [{{name: plain, type: aglop, criterion: expected, interleave: true}}]\n"
            f"tcp: {{slow_start_after_idle: false}}\n"
            f"output: {tmp_path / 'results'}\n")
    run_dir, _ = run_scenario_text(tmp_path, text, "budget", timeout=600)
    with (run_dir / "requests.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    budget = [r for r in rows if r["method"] == "budget"]
    plain = [r for r in rows if r["method"] == "plain"]
    assert len(budget) == 14 and len(plain) == 14
    # planned within the budget throughout (the rows carry the mean message's prediction; that the bound
    # is kept on the 90th-percentile message is unit-tested): no fallback to the closest option
    planned = [(r["split"], float(r["predicted_mj"])) for r in budget]
    assert all(mj <= 175 and split != "edge-only" for split, mj in planned), planned
    measured = sorted(float(r["edge_compute_mj"]) for r in budget)  # the board's: no radio modelled
    # every request within, but those the node's CPU quota stalled: the edge's ~1 ms of work (preprocess,
    # JPEG encode) now and then waits out the rest of a 20 ms CFS period whose quota was spent (5-26 ms,
    # up to 60 mJ at 1.75 W), an artefact of quota emulation no plan can foresee: up to 5 of 14 here
    def edge_work_ms(r):
        return float(r["edge_compute_ms"]) + float(r["encode_ms"])

    usual = statistics.median(edge_work_ms(r) for r in budget)
    unstalled = [float(r["edge_compute_mj"]) for r in budget if edge_work_ms(r) <= usual + 4]
    assert len(unstalled) >= 7 and max(unstalled) <= 175, [(edge_work_ms(r), r["edge_compute_mj"]) for r in budget]
    assert statistics.median(measured) <= 0.9 * 175, measured
    # the budget binds: unbounded, the plan computes locally, planned over the budget, and spends more
    assert sum(r["split"] == "edge-only" and float(r["predicted_mj"]) > 175 for r in plain) >= 10
    assert statistics.mean(float(r["edge_compute_mj"]) for r in plain) > statistics.mean(measured)
    finished = {p["plan"]: p for p in json.loads((run_dir / "manifest.json").read_text())["edge_plans"]}
    assert finished["budget"]["probes"] == 1  # an energy plan probes once a minute: its first, to size the link


@pytest.mark.root
@pytest.mark.mininet
def test_plans_taking_turns_are_charged_only_the_probes_they_would_send_alone(tmp_path):
    """Plain AGLOP computes locally here (100 ms each way) and probes the link once a second on the wall
    clock; beside a second plan it has about half of that clock, so about half of its probes are
    charged (RadioTimeline: as if alone)."""
    import csv
    import json

    from tests.conftest import run_scenario_text

    text = (f"name: turns\nnodes: {{edge: {{device: pi_zero_2w}}}}\n"
            f"links:\n  uplink: {{rate_mbit: 8, delay_ms: 100, radio: wifi}}\n  downlink: {{rate_mbit: 10, delay_ms: 100}}\n"
            f"model: efficientnet_lite0\nworkload: {{requests: 1000, warmup: 0, deadline_s: 20, duration_s: 8}}\n"
            f"plan: {{name: plain, type: aglop, interleave: true}}\n"
            f"baselines: [{{name: local, type: fixed, split: edge-only, interleave: true}}]\n"
            f"output: {tmp_path / 'results'}\n")
    run_dir, _ = run_scenario_text(tmp_path, text, "turns", timeout=600)
    with (run_dir / "requests.csv").open() as f:
        plain_rows = [r for r in csv.DictReader(f) if r["method"] == "plain" and r["status"] == "ok"]
    assert sum(r["split"] == "edge-only" for r in plain_rows) >= 0.8 * len(plain_rows)  # only probes sample the link
    finished = {p["plan"]: p for p in json.loads((run_dir / "manifest.json").read_text())["edge_plans"]}
    plain = finished["plain"]
    assert plain["probes"] >= 6 and 0.3 * plain["probes"] <= plain["probes_charged"] <= 0.75 * plain["probes"], plain
    assert finished["local"]["probes"] == finished["local"]["probes_charged"] == 0  # a fixed plan never probes


def test_the_energy_benchmark_judges_a_study_folder_and_reports_a_point_it_cannot_judge(tmp_path):
    """benchmarks/energy.py over a study folder as run_scenario.py --study writes it: one point with
    every method's energy, one whose planner has none (reported as not judged, not skipped)."""
    import csv
    import json

    from benchmarks.energy import energy_section, judge_study
    from splitbed.app.breakdown import NAMES

    plans = [{"name": "aglop-energy", "type": "aglop"}, {"name": "aglop", "type": "aglop"},
             {"name": "edge-only", "type": "fixed", "split": "edge-only"},
             {"name": "server-only", "type": "fixed", "split": "server-only", "codec": "jpeg", "params": {"quality": 85}}]
    # the JPEG is over the planners' (default) budget in this profile: the summary names it
    profile = {"options": [{"split": "edge-only", "codec": "", "params": {}, "drops": {"calibrated": 0.0}},
                           {"split": "server-only", "codec": "jpeg", "params": {"quality": 85}, "drops": {"calibrated": 1.4}}]}
    splits = {"aglop-energy": "edge-only", "aglop": "block11", "edge-only": "edge-only", "server-only": "server-only"}
    means = {"aglop-energy": 250.0, "aglop": 300.0, "edge-only": 252.0, "server-only": 400.0}
    runs = {}
    for run_id, judged in (("a", True), ("b", False)):
        runs[run_id] = {"status": "complete", "values": {"links.uplink.trace": "traces/x", "nodes.edge.device": "pi_zero_2w",
                                                         "links.uplink.radio": "lte", "links.uplink.delay_ms": 20}}
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        (tmp_path / "runs" / run_id / "manifest.json").write_text(json.dumps({"plans": plans}))
        (tmp_path / "runs" / run_id / "aglop-profile.json").write_text(json.dumps(profile))
        with (tmp_path / "runs" / run_id / "requests.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=NAMES)
            writer.writeheader()
            for i in range(30):
                for method, mean in means.items():
                    energy = "" if (method == "aglop-energy" and not judged) else mean * (1 + 0.05 * ((i * 7) % 5 - 2))
                    writer.writerow({**dict.fromkeys(NAMES, ""), "request_id": i, "method": method, "split": splits[method],
                                     "codec": "", "status": "ok", "e2e_ms": 150.0, "edge_energy_mj": energy,
                                     "radio_mj": 10.0, "predicted_mj": 260.0 if method == "aglop-energy" else ""})
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    result = judge_study(tmp_path)
    judged, unjudged = result["points"]
    assert judged["choices_differ"] and judged["over_latency_planner_pct"] == pytest.approx(-16.7, abs=0.5)
    assert judged["energy_model_error_pct"] == pytest.approx(100 * 15 / 275, abs=0.01)  # the median: 260 vs 275
    assert unjudged["status"].startswith("not judged") and result["summary"]["judged_points"] == 1
    assert judged["fixed_over_budget"] == ["server-only"] and result["summary"]["fixed_over_budget"] == "server-only"
    lines = energy_section(result, {})
    assert len({line.count("|") for line in lines if line.startswith("| ")}) == 1  # every row has the header's columns
    why = [line for line in lines if line.startswith("- x, pi_zero_2w, lte")]  # the one point where the choices differ
    assert len(why) == 1 and "ran block11 (100% of its requests; 290 mJ board + 10 mJ radio" in why[0] and "+0 mJ of radio against -50" in why[0]
