"""Bandwidth traces: readers for three formats and one normalised form.

A Trace is a piecewise-constant rate: rate_bps[i] holds from start_s[i] until start_s[i + 1] (the
last one until duration_s). Zero means an outage. Readers raise UserError naming the file and line.

Formats:
- pensieve: `time_s rate_Mbit/s` per line, whitespace separated (Pensieve's cooked traces, Norway
  HSDPA and FCC sets); irregular sampling is kept as is; the last sample lasts the median interval.
- mahimahi: one integer millisecond timestamp per line, each a 1500-byte delivery opportunity;
  repeated timestamps mean several packets; binned into `bin_ms` windows (default 100 ms); the trace
  loops at its last timestamp, as mm-link does.
- csv: a header row; `time_column` in seconds or a timestamp (ISO 8601 or G-NetTrack's
  2019.12.13_09.39.44), `rate_column` in `rate_unit` (bit/s, kbit/s or Mbit/s); rows sharing a second
  are averaged, missing seconds hold the previous rate.
"""

from __future__ import annotations

import csv
import functools
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from splitbed.errors import UserError
from splitbed.registry import Registry

UNITS = {"bit/s": 1.0, "kbit/s": 1e3, "Mbit/s": 1e6}
MAHIMAHI_PACKET_BITS = 1500 * 8
MAX_RATE_BPS = 100e9  # above any link a trace describes: a larger value is a unit or column mix-up
MAX_TRACE_S = 30 * 86400  # a month of samples
TIME_FORMATS = ("%Y.%m.%d_%H.%M.%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class Trace:
    start_s: np.ndarray  # increasing, first 0
    rate_bps: np.ndarray  # same length, >= 0
    duration_s: float
    source: str = ""
    loop: bool = True

    def __post_init__(self):
        if len(self.start_s) == 0 or len(self.start_s) != len(self.rate_bps):
            raise UserError("a trace needs at least one sample and one rate per start time", where=self.source)
        if self.duration_s <= self.start_s[-1]:
            raise UserError("trace duration must end after its last sample", where=self.source)

    def rate_at(self, t: float | np.ndarray) -> np.ndarray | float:
        """Rate in bit/s at time t (seconds from the trace start); loops or holds the last rate."""
        t = np.asarray(t, dtype=float)
        if self.loop:
            t = np.mod(t, self.duration_s)
        index = np.clip(np.searchsorted(self.start_s, t, side="right") - 1, 0, len(self.start_s) - 1)
        rates = self.rate_bps[index]
        return float(rates) if rates.ndim == 0 else rates

    @functools.cached_property
    def ends(self) -> np.ndarray:
        """Where each rate stops holding: the next start, duration_s for the last."""
        return np.append(self.start_s[1:], self.duration_s)

    @functools.cached_property
    def carried_bits(self) -> np.ndarray:
        """Bits the trace carries from 0 to each start_s, and to duration_s last (n + 1 values)."""
        return np.concatenate([[0.0], np.cumsum(self.rate_bps * (self.ends - self.start_s))])

    def bits_until(self, t: float | np.ndarray) -> np.ndarray | float:
        """Bits carried from 0 to t: the exact integral of the rate over the trace's own bins (looped, or
        the last rate held after the end), so its cost never follows the length of the interval."""
        t = np.asarray(t, dtype=float)
        periods = np.floor(t / self.duration_s) if self.loop else np.zeros_like(t)
        within = t - periods * self.duration_s
        index = np.clip(np.searchsorted(self.start_s, within, side="right") - 1, 0, len(self.start_s) - 1)
        bits = periods * self.carried_bits[-1] + self.carried_bits[index] + self.rate_bps[index] * (
            within - self.start_s[index])
        return float(bits) if bits.ndim == 0 else bits

    def mean_rate_over(self, t0: float, t1: float) -> float:
        """Mean rate over [t0, t1): what a flow could carry in that window (the rate at t0 if empty).
        The difference of two running totals leaves rounding residue (1e-8 bit/s for a window inside an
        outage, which a shaper would take for a rate): anything within it is 0, and rates are kept to
        a thousandth of a bit per second."""
        if t1 <= t0:
            return float(self.rate_at(t0))
        before, after = self.bits_until(t0), self.bits_until(t1)
        rate = (after - before) / (t1 - t0)
        residue = 8 * np.finfo(float).eps * (abs(before) + abs(after)) / (t1 - t0)
        return 0.0 if rate <= residue else round(rate, 3)

    def carry_seconds(self, t0: float, bits: float | np.ndarray) -> np.ndarray | float:
        """Seconds from t0 until the link has carried `bits` (each of an array): the transfer waits out
        any outage on its way. inf where it never would (a trace that ends in an outage, not looped)."""
        bits = np.maximum(np.asarray(bits, dtype=float), 0.0)
        target = self.bits_until(t0) + bits
        total, carried = self.carried_bits[-1], self.carried_bits[1:]
        if total <= 0 and (self.loop or self.rate_bps[-1] <= 0):
            seconds = np.where(bits > 0, np.inf, 0.0)
            return float(seconds) if seconds.ndim == 0 else seconds
        if self.loop:  # the period in which the target is reached, and the bits into it (0, total]
            periods = np.ceil(target / total) - 1
            rest = target - periods * total
        else:
            periods, rest = np.zeros_like(target), np.minimum(target, total)
        index = np.minimum(np.searchsorted(carried, rest, side="left"), len(carried) - 1)
        rate = self.rate_bps[index]
        into = np.divide(rest - self.carried_bits[index], rate, out=np.zeros_like(rest), where=rate > 0)
        end = periods * self.duration_s + self.start_s[index] + into
        if not self.loop:  # past the end the last rate holds
            beyond = target - total
            last = self.rate_bps[-1]
            end = np.where(beyond > 0, self.duration_s + (beyond / last if last > 0 else np.inf), end)
        seconds = np.where(bits > 0, np.maximum(end - t0, 0.0), 0.0)
        return float(seconds) if seconds.ndim == 0 else seconds

    def scaled(self, factor: float) -> Trace:
        if factor <= 0:
            raise UserError(f"trace scale must be positive, got {factor}", where=self.source)
        return Trace(self.start_s, self.rate_bps * factor, self.duration_s, self.source, self.loop)

    def offset(self, seconds: float) -> Trace:
        """Start `seconds` into the trace (wrapping around), so runs can begin at different points."""
        seconds = seconds % self.duration_s
        cut = np.searchsorted(self.start_s, seconds, side="right") - 1
        head_start = self.start_s[cut:] - seconds
        head_start[0] = 0.0
        tail_start = self.start_s[:cut] + (self.duration_s - seconds)
        times = np.concatenate([head_start, tail_start])
        rates = np.concatenate([self.rate_bps[cut:], self.rate_bps[:cut]])
        keep = np.concatenate([[True], np.diff(times) > 0])
        return Trace(times[keep], rates[keep], self.duration_s, self.source, self.loop)

    def resampled(self, step_s: float) -> Trace:
        """Mean rate per step (the replay controller's granularity)."""
        if step_s <= 0:
            raise UserError(f"resample step must be positive, got {step_s}", where=self.source)
        starts = np.arange(0.0, self.duration_s, step_s)
        ends = np.minimum(starts + step_s, self.duration_s)
        rates = np.array([self.mean_rate_over(a, b) for a, b in zip(starts, ends, strict=True)])
        return Trace(starts, rates, self.duration_s, self.source, self.loop)

    def floored(self, min_bps: float) -> Trace:
        """Raise every rate to at least min_bps (outages become slow links)."""
        return Trace(self.start_s, np.maximum(self.rate_bps, min_bps), self.duration_s, self.source, self.loop)

    def outages(self) -> list[tuple[float, float]]:
        """Zero-rate periods as (start, end) seconds, neighbouring zero samples merged."""
        merged: list[tuple[float, float]] = []
        for a, b, r in zip(self.start_s, self.ends, self.rate_bps, strict=True):
            if r != 0:
                continue
            if merged and merged[-1][1] == a:
                merged[-1] = (merged[-1][0], float(b))
            else:
                merged.append((float(a), float(b)))
        return merged

    def without_loop(self) -> Trace:
        """After its end the trace holds its last rate instead of starting again."""
        return Trace(self.start_s, self.rate_bps, self.duration_s, self.source, loop=False)

    @property
    def mean_bps(self) -> float:
        return float(self.carried_bits[-1] / self.duration_s)


def numbers(path: Path, line_number: int, fields: list[str], count: int) -> list[float]:
    if len(fields) < count:
        raise UserError(f"expected {count} numbers, got {len(fields)}: {' '.join(fields)!r}",
                        where=f"{path}:{line_number}")
    try:
        values = [float(f) for f in fields[:count]]
    except ValueError:
        raise UserError(f"expected numbers, got {' '.join(fields)!r}", where=f"{path}:{line_number}") from None
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise UserError(f"values must be finite and >= 0, got {values}", where=f"{path}:{line_number}")
    return values


def data_lines(path: Path):
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read trace: {err}", where=str(path)) from err
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def read_pensieve(path: Path) -> Trace:
    times, rates = [], []
    for number, line in data_lines(path):
        t, mbps = numbers(path, number, line.split(), 2)
        if times and t <= times[-1]:
            raise UserError(f"time {t} s does not increase (previous {times[-1]} s)", where=f"{path}:{number}")
        if mbps * 1e6 > MAX_RATE_BPS or t > MAX_TRACE_S:
            raise UserError(f"time {t} s or rate {mbps} Mbit/s out of range (at most {MAX_TRACE_S} s, "
                            f"{MAX_RATE_BPS / 1e9:g} Gbit/s)", where=f"{path}:{number}")
        times.append(t)
        rates.append(mbps * 1e6)
    if not times:
        raise UserError("trace file has no samples", where=str(path))
    step = statistics.median(np.diff(times)) if len(times) > 1 else 1.0
    start = np.array(times) - times[0]
    return Trace(start, np.array(rates), float(start[-1] + step), str(path))


def read_mahimahi(path: Path, bin_ms: int = 100) -> Trace:
    if not 1 <= bin_ms <= 60_000:
        raise UserError(f"bin_ms must be 1-60000, got {bin_ms}", where=str(path))
    stamps = []
    for number, line in data_lines(path):
        if not line.isdigit():
            raise UserError(f"expected one integer millisecond timestamp, got {line!r}", where=f"{path}:{number}")
        value = int(line)
        if value > MAX_TRACE_S * 1000:
            raise UserError(f"timestamp {value} ms is past {MAX_TRACE_S} s", where=f"{path}:{number}")
        if stamps and value < stamps[-1]:
            raise UserError(f"timestamp {value} ms goes back (previous {stamps[-1]} ms)", where=f"{path}:{number}")
        stamps.append(value)
    if not stamps:
        raise UserError("trace file has no timestamps", where=str(path))
    period_ms = max(stamps[-1], 1)
    bins = int(np.ceil(period_ms / bin_ms))
    counts = np.bincount(np.minimum(np.array(stamps) // bin_ms, bins - 1), minlength=bins)
    rates = counts * MAHIMAHI_PACKET_BITS / (bin_ms / 1000)
    return Trace(np.arange(bins) * bin_ms / 1000, rates.astype(float), period_ms / 1000, str(path))


TIME_FORMS = "seconds as a number, 2019.12.16_13.40.04, 2019-12-16 13:40:04, 2019-12-16T13:40:04 or ISO 8601"


def parse_time(text: str) -> float:
    """Seconds from a number or one of TIME_FORMS; ValueError for anything else."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not np.isfinite(value):
            raise ValueError(f"time {text!r} is not finite")
        return value
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    return datetime.fromisoformat(text).timestamp()


def read_csv(path: Path, time_column: str = "time", rate_column: str = "rate", rate_unit: str = "kbit/s") -> Trace:
    if rate_unit not in UNITS:
        raise UserError(f"unknown rate unit {rate_unit!r}", where=str(path), fix=f"use one of {', '.join(UNITS)}")
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"cannot read CSV trace: {err}", where=str(path)) from err
    if not rows:
        raise UserError("CSV trace is empty", where=str(path))
    header = [h.strip() for h in rows[0]]
    for column in (time_column, rate_column):
        if column not in header:
            raise UserError(f"no column {column!r} in the header {header}", where=f"{path}:1",
                            fix="name the columns with time_column / rate_column")
    ti, ri = header.index(time_column), header.index(rate_column)
    per_second: dict[int, list[float]] = {}
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(ti, ri):
            raise UserError(f"row has {len(row)} cells, needs {max(ti, ri) + 1}", where=f"{path}:{number}")
        try:
            second = int(np.floor(parse_time(row[ti].strip())))
        except ValueError:
            raise UserError(f"cannot read the time {row[ti]!r} in column {time_column!r}", where=f"{path}:{number}",
                            fix=f"expected {TIME_FORMS}") from None
        try:
            rate = float(row[ri]) * UNITS[rate_unit]
        except ValueError:
            raise UserError(f"cannot read the rate {row[ri]!r} in column {rate_column!r}", where=f"{path}:{number}",
                            fix=f"expected a number in {rate_unit}") from None
        if not np.isfinite(rate) or not 0 <= rate <= MAX_RATE_BPS:
            raise UserError(f"rate must be within 0-{MAX_RATE_BPS / 1e9:g} Gbit/s, got {row[ri]!r} {rate_unit}",
                            where=f"{path}:{number}")
        per_second.setdefault(second, []).append(rate)
    if not per_second:
        raise UserError("CSV trace has no data rows", where=str(path))
    first, last = min(per_second), max(per_second)
    if last - first > MAX_TRACE_S:
        raise UserError(f"the times span {last - first} s, more than {MAX_TRACE_S} s", where=str(path),
                        fix=f"is {time_column!r} the time column, in seconds or a timestamp?")
    rates, previous = [], 0.0
    for second in range(first, last + 1):  # duplicates averaged, gaps hold the previous rate
        previous = float(np.mean(per_second[second])) if second in per_second else previous
        rates.append(previous)
    return Trace(np.arange(len(rates), dtype=float), np.array(rates), float(len(rates)), str(path))


# Trace formats by name: a reader takes the path and its format's options and returns a Trace.
READERS = Registry("trace format", {"pensieve": read_pensieve, "mahimahi": read_mahimahi, "csv": read_csv})


def detect_format(path: Path) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    for _, line in data_lines(path):
        return "mahimahi" if line.isdigit() else "pensieve"
    raise UserError("trace file is empty", where=str(path))


def load_trace(path: str | Path, format: str = "auto", **options) -> Trace:
    path = Path(path)
    if not path.is_file():
        raise UserError("trace file not found", where=str(path))
    kind = detect_format(path) if format == "auto" else format
    return READERS.lookup(kind, where=str(path), others=("auto",))(path, **options)


# A scenario link's trace fields, and the formats each reader option belongs to.
FORMAT_OPTIONS = {"time_column": "csv", "rate_column": "csv", "rate_unit": "csv", "bin_ms": "mahimahi"}
LINK_TRACE_FIELDS = ("trace", "trace_format", *FORMAT_OPTIONS, "floor_mbit", "loop", "trace_scale", "trace_offset_s")


def load_link_trace(link: dict) -> Trace:
    """The trace a scenario link names, with its reader options and scale/offset/floor/loop applied.

    `link` holds the scenario's fields (trace, trace_format, time_column, rate_column, rate_unit, bin_ms,
    floor_mbit, loop, trace_scale, trace_offset_s); an option of another format is an error, not ignored.
    """
    path = Path(link["trace"])
    if not path.is_file():
        raise UserError("trace file not found", where=str(path))
    kind = link.get("trace_format", "auto")
    kind = detect_format(path) if kind == "auto" else kind
    options = {}
    for key, fmt in FORMAT_OPTIONS.items():
        if key in link:
            if fmt != kind:
                raise UserError(f"{key} applies to {fmt} traces, and this one is read as {kind}", where=str(path),
                                fix=f"remove {key}, or set trace_format: {fmt}")
            options[key] = link[key]
    trace = load_trace(path, kind, **options)
    if not trace.rate_bps.any():
        raise UserError("the trace never carries anything (every rate is 0)", where=str(path))
    trace = trace.scaled(link.get("trace_scale", 1.0)).offset(link.get("trace_offset_s", 0.0))
    if link.get("floor_mbit"):
        trace = trace.floored(link["floor_mbit"] * 1e6)
    return trace if link.get("loop", True) else trace.without_loop()
