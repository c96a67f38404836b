import statistics
import subprocess

import pytest

from splitbed.host.state import EmulationLock
from splitbed.network.shaping import MIN_BURST_BYTES, MIN_RATE_BPS, htb_class_args
from splitbed.network.traces import load_trace
from splitbed.testing.fidelity import (
    GOODPUT_EFFICIENCY,
    fixed_rate_goodput,
    follow_trace,
    measure_link,
    message_delivery,
)
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
    """10 Mbit/s, 20 ms each way, 1% loss: the issue's bar, on HTB + the NFQUEUE delay stage. Three tries,
    judged by the median try's goodput and RTT and by the loss over all 3000 probes, so a slow moment of
    the host (it lowers the goodput and raises the RTT of the try it meets) does not decide alone, and a
    link configured wrong (half the rate: 50% off; no delay: 40 ms off; no loss: 1 point off) fails.
    Measured here, 18 tries: goodput 0.3-3.2% off; RTT 0.45-1.45 ms off, but 2.1-3.2 ms in 3 tries beside
    another job's profiling, and a median of 2.0 ms beside a scenario run: the test waits for running
    scenarios, as they wait for each other (the emulation lock)."""
    before = our_namespaces()
    with EmulationLock():
        tries = [measure_link(10e6, 20, 1.0, seconds=5, probes=1000) for _ in range(3)]
    rate_error = statistics.median(row["rate_error_pct"] for row in tries)
    rtt_error = statistics.median(row["rtt_error_ms"] for row in tries)
    loss_error = abs(statistics.mean(row["measured_loss_pct"] for row in tries) - 1.0)
    summary = f"goodput {rate_error:.1f}% off, RTT {rtt_error:.2f} ms off (medians), loss {loss_error:.2f} points off"
    assert rate_error < 5 and rtt_error <= 1 + 0.02 * 40 and loss_error <= 0.5, (summary, tries)
    assert our_namespaces() == before  # namespaces, rules and the delay programs went with them
