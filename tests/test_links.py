import subprocess

import pytest

from splitbed.network.fidelity import (
    GOODPUT_EFFICIENCY,
    fixed_rate_goodput,
    follow_trace,
    measure_link,
    message_delivery,
)
from splitbed.network.shaping import MIN_BURST_BYTES, MIN_RATE_BPS, htb_class_args
from splitbed.network.traces import load_trace
from tests.conftest import REPO


def our_namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.startswith(("sbA-", "sbB-"))}


def test_htb_arguments_floor_outages_and_keep_no_more_than_a_millisecond_of_burst():
    args = htb_class_args(0)
    assert args[1] == f"{MIN_RATE_BPS}bit" and int(args[5]) == MIN_BURST_BYTES < 1514
    args = htb_class_args(100e6)
    assert args[1] == "100000000bit" and int(args[5]) == 12500  # 1 ms at 100 Mbit/s


@pytest.mark.root
@pytest.mark.timing
def test_small_messages_after_idle_gaps_take_their_serialisation_time():
    """4 KB every 200 ms at 0.3 Mbit/s (a request at a 3G low): no bucket of credit lets the first
    frames out at once; HTB still sends the last frame when its serialisation would start."""
    row = message_delivery(0.3e6, 4096, 0.2, count=6)
    assert row["link_ms"] == pytest.approx(114.5, abs=0.1)
    floor = row["link_ms"] - row["last_frame_ms"]
    assert floor - 3 <= row["delivery_ms_median"] <= floor + 5
    # with the receiver's stage (any delay), each frame is also held for its own serialisation
    row = message_delivery(0.3e6, 4096, 0.2, count=6, delay_ms=10)
    assert row["link_ms"] - 3 <= row["delivery_ms_median"] <= row["link_ms"] + 5
    # the same after a trace replayer moved a 2 Mbit/s link (HTB class and stage) to 0.3
    row = message_delivery(0.3e6, 4096, 0.2, count=6, delay_ms=10, built_at_bps=2e6)
    assert row["link_ms"] - 3 <= row["delivery_ms_median"] <= row["link_ms"] + 5
    # HTB's 1 ms bucket lets the first frames after an idle gap out together; the stage still spaces
    # them a frame-time apart (at 20 Mbit/s those frames would otherwise arrive ~1.5 ms early)
    row = message_delivery(20e6, 6000, 0.2, count=8, delay_ms=5)
    assert row["link_ms"] - 0.4 <= row["delivery_ms_median"] <= row["link_ms"] + 2


@pytest.mark.root
@pytest.mark.timing
def test_fixed_rate_goodput_within_5_percent_and_nothing_left():
    before = our_namespaces()
    row = fixed_rate_goodput(10e6, seconds=3)
    assert row["expected_goodput_bps"] == pytest.approx(10e6 * GOODPUT_EFFICIENCY)
    assert row["rate_error_pct"] < 5
    assert our_namespaces() == before


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timing
def test_tcp_follows_a_replayed_3g_trace():
    trace = load_trace(REPO / "traces" / "pensieve" / "norway_bus_1")
    row = follow_trace(trace, 8)
    assert row["tc_errors"] == ""
    assert row["rate_changes"] > 10  # the rate really moved, in place
    assert row["median_error_pct"] <= 3 and row["p90_error_pct"] <= 10


def test_impossible_delay_parameters_are_user_errors():
    from splitbed.errors import UserError
    from splitbed.network.delay import DelayStage

    for kwargs in ({"delay_ms": -1}, {"loss_pct": 100}, {"jitter_ms": -2}):
        with pytest.raises(UserError):
            DelayStage(["true"], "eth0", 1, **kwargs).setup()


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timing
def test_headline_link_without_netem_rate_rtt_and_loss():
    """10 Mbit/s, 20 ms each way, 1% loss: the issue's bar, on HTB + the NFQUEUE delay stage. Up to
    three tries: the host's slow moments only lower goodput and raise the RTT (a stage starved of CPU
    for a second cost 6-9% of the rate here), so one try within the bar shows the link is right, and
    a link configured wrong fails all three."""
    before = our_namespaces()

    def within_bar(row: dict) -> bool:
        return row["rate_error_pct"] < 5 and row["rtt_error_ms"] <= 1 + 0.02 * 40 and row["loss_error_pts"] <= 0.5

    tries = []
    while len(tries) < 3 and not any(within_bar(row) for row in tries):
        tries.append(measure_link(10e6, 20, 1.0, seconds=5, probes=3000))
    assert any(within_bar(row) for row in tries), tries
    assert our_namespaces() == before  # namespaces, rules and the delay programs went with them
