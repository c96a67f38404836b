import numpy as np
import pytest

from splitbed.errors import UserError
from splitbed.network.traces import Trace, load_trace
from tests.conftest import REPO

BUNDLED = REPO / "traces" / "pensieve"


@pytest.mark.parametrize("name,mean_mbps,duration", [
    ("norway_bus_1", 2.95, 154.8), ("norway_tram_26", 0.58, 301.2), ("trace_866_http---www.amazon.com", 2.62, 1840.0),
])
def test_bundled_pensieve_traces_match_their_manifest(name, mean_mbps, duration):
    trace = load_trace(BUNDLED / name)
    assert trace.mean_bps / 1e6 == pytest.approx(mean_mbps, abs=0.01)
    assert duration <= trace.duration_s <= duration + 6  # the last sample lasts one median interval


def test_mahimahi_packets_become_rates(tmp_path):
    # 1 packet per ms for 1 s (12 Mbit/s), then 1 per 2 ms for 1 s (6 Mbit/s); repeated stamps count twice
    stamps = list(range(1, 1001)) + list(range(1002, 2001, 2))
    path = tmp_path / "up.mahi"
    path.write_text("\n".join(map(str, stamps)) + "\n")
    trace = load_trace(path, bin_ms=500)
    assert trace.rate_at(0.25) == pytest.approx(12e6, rel=0.01)
    assert trace.rate_at(1.6) == pytest.approx(6e6, rel=0.01)
    assert trace.rate_at(0.25 + trace.duration_s) == trace.rate_at(0.25)  # loops like mm-link


def test_csv_in_kbits_with_duplicate_and_missing_seconds(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("Timestamp,DL_bitrate,Other\n"
                    "2019.12.13_09.39.44,1000,x\n2019.12.13_09.39.44,3000,x\n"
                    "2019.12.13_09.39.45,500,x\n2019.12.13_09.39.48,800,x\n")
    trace = load_trace(path, time_column="Timestamp", rate_column="DL_bitrate", rate_unit="kbit/s")
    assert list(trace.rate_bps) == [2e6, 0.5e6, 0.5e6, 0.5e6, 0.8e6]  # mean of duplicates, gaps held
    assert trace.duration_s == 5


def test_options_scale_offset_floor_resample_outages(tmp_path):
    path = tmp_path / "t"
    path.write_text("0 1\n1 0\n2 3\n")
    trace = load_trace(path, format="pensieve")
    assert trace.outages() == [(1.0, 2.0)]
    assert trace.scaled(2).rate_at(2.5) == 6e6
    assert trace.floored(0.1e6).rate_at(1.5) == 0.1e6
    shifted = trace.offset(2.0)
    assert shifted.rate_at(0.5) == 3e6 and shifted.rate_at(1.5) == 1e6
    resampled = trace.resampled(0.5)
    assert len(resampled.start_s) == 6 and resampled.mean_bps == pytest.approx(trace.mean_bps)
    assert np.all(np.diff(resampled.start_s) == 0.5)


@pytest.mark.parametrize("content,fmt,where", [
    ("0 1\n1 abc\n", "pensieve", ":2"),
    ("0 1\n0.5 2\n0.4 3\n", "pensieve", ":3"),
    ("10\n20\n1.5\n", "mahimahi", ":3"),
    ("time,rate\n1,2\n2,-5\n", "csv", ":3"),
])
def test_malformed_files_name_file_and_line(tmp_path, content, fmt, where):
    path = tmp_path / ("bad.csv" if fmt == "csv" else "bad")
    path.write_text(content)
    with pytest.raises(UserError) as err:
        load_trace(path, format=fmt)
    assert f"{path}{where}" in err.value.render()


def test_missing_file_and_missing_column(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_trace(tmp_path / "nope")
    path = tmp_path / "x.csv"
    path.write_text("t,r\n1,2\n")
    with pytest.raises(UserError, match="no column 'time'"):
        load_trace(path)


def scenario_error(tmp_path, link: str) -> str:
    from splitbed.errors import UserError as Error
    from splitbed.scenarios.schema import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text(f"links:\n  uplink: {link}\nplan: {{type: fixed, split: conv1, codec: raw}}\n")
    with pytest.raises(Error) as err:
        load_scenario(path)
    return err.value.render()


def test_trace_options_in_a_scenario_name_the_field_and_the_file_line(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("Timestamp,UL_bitrate\n2019.12.16_13.40.04,100\n16/12/2019 13:40,200\n")
    bad_time = scenario_error(tmp_path, f"{{trace: {log}, time_column: Timestamp, rate_column: UL_bitrate}}")
    assert f"{log}:3" in bad_time and "links.uplink" in bad_time and "2019.12.16_13.40.04" in bad_time
    no_column = scenario_error(tmp_path, f"{{trace: {log}, time_column: Timestamp, rate_column: UL}}")
    assert f"{log}:1" in no_column and "'UL'" in no_column
    wrong_format = scenario_error(tmp_path, f"{{trace: {BUNDLED / 'norway_bus_1'}, rate_column: UL}}")
    assert "applies to csv traces" in wrong_format
    unit = scenario_error(tmp_path, f"{{trace: {log}, rate_unit: furlongs}}")
    assert "links.uplink.rate_unit" in unit and "kbit/s" in unit
    orphan = scenario_error(tmp_path, "{rate_mbit: 5, bin_ms: 50}")
    assert "links.uplink.bin_ms" in orphan and "trace" in orphan
    zero = tmp_path / "zero.mahi"
    zero.write_text("")
    assert "no timestamps" in scenario_error(tmp_path, f"{{trace: {zero}, trace_format: mahimahi}}")


def test_carrying_bits_waits_out_outages_and_integrates_bins_exactly():
    trace = Trace(np.array([0.0, 1.0, 2.0]), np.array([4e6, 0.0, 2e6]), 3.0)
    assert trace.mean_rate_over(0.5, 2.5) == pytest.approx((0.5 * 4e6 + 0.5 * 2e6) / 2)
    assert trace.mean_rate_over(0.0, 3.0 * 1000) == pytest.approx(trace.mean_bps)  # a thousand loops, exactly
    assert trace.carry_seconds(0.5, 2e6) == pytest.approx(0.5)
    assert trace.carry_seconds(0.5, 3e6) == pytest.approx(1.5 + 0.5)  # 2 Mbit, 1 s outage, 1 Mbit at 2 Mbit/s
    assert trace.carry_seconds(1.2, 0) == 0.0
    # past the end the trace loops: 6 Mbit a period, so 60 Mbit take ten periods from the same point
    assert trace.carry_seconds(0.25, 60e6) == pytest.approx(30.0)
    held = trace.without_loop()
    assert held.carry_seconds(2.5, 3e6) == pytest.approx(1.5)  # the last rate holds after the end
    silent = Trace(np.array([0.0, 1.0]), np.array([4e6, 0.0]), 2.0, loop=False)
    assert silent.carry_seconds(1.5, 1.0) == np.inf and silent.carry_seconds(0.5, 1e6) == pytest.approx(0.25)
    many = trace.carry_seconds(0.5, np.array([0.0, 2e6, 3e6]))
    assert many == pytest.approx([0.0, 0.5, 2.0])


def test_a_window_inside_an_outage_has_rate_zero_not_rounding_residue(tmp_path):
    """The replayer steps 100 ms windows over 100 ms bins: a window inside an outage must read 0 (a tiny
    positive rate would be set on HTB, whose floor then blocks the link well past the outage)."""
    stamps = "\n".join(str(t) for t in range(0, 12_000, 2) if not 500 <= t < 1500 and not 6000 <= t < 7000)
    path = tmp_path / "outages.up"
    path.write_text(stamps + "\n")
    trace = load_trace(path, "mahimahi")
    windows = [trace.mean_rate_over(k * 0.1, k * 0.1 + 0.1) for k in range(0, 120)]
    assert [k for k, rate in enumerate(windows) if rate == 0] == [*range(5, 15), *range(60, 70)]
    assert {rate for rate in windows if rate} == {6e6}
    assert trace.mean_rate_over(1e6 * trace.duration_s + 0.6, 1e6 * trace.duration_s + 0.7) == 0.0
