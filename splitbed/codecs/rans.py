"""DISC's entropy stage: dead-zone quantisation and a static, byte-wise rANS coder fused into one
compiled pass each way (numba), with one frequency table per group of coefficients.

Why our own: the generic coder we used first (constriction's ANS with categorical models) spent
about 20 ns per symbol decoding, and the numpy passes around it (permute, clip, escape, scatter)
as much again; on a Lite0 block output (31k symbols) that was more than a tenth of the edge's head
computation. Here each coefficient is read, quantised, coded and (on the way back) dequantised and
put in place within one loop.

The format is the classic byte-wise rANS (Duda 2013; Giesen's ryg_rans): a 32-bit state kept in
[2^23, 2^31), bytes written in reverse so decoding runs forwards. Each coefficient's table covers
|q| < bound plus two escape symbols (|q| >= bound); an escape is followed by the excess as one
uniform byte (or 255 and two more) in the same stream. Decoding checks every read against the
buffer and the final states against the encoder's initial ones, so garbage is reported, never read
out of bounds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PROB_BITS = 12  # frequencies sum to 2^12 per table: lookup rows stay in cache
RANS_LOW = 1 << 23  # the state's lower bound: renormalise a byte at a time below it
MAX_ALPHABET = 1 << (PROB_BITS - 2)  # every symbol keeps a frequency >= 1 without starving the rest
SHORT_EXCESS = 255  # an escape's excess below this travels as one byte, else 255 and two more bytes
MAX_EXCESS = SHORT_EXCESS + (1 << 16) - 1


class Tables:
    """Quantised frequency tables for a list of probability vectors (one per group)."""

    def __init__(self, probabilities: list[np.ndarray]):
        freqs, offsets = [], [0]
        for p in probabilities:
            if not 0 < len(p) <= MAX_ALPHABET:
                raise ValueError(f"alphabet of {len(p)} symbols; 1..{MAX_ALPHABET} supported")
            freqs.append(quantise_frequencies(p / p.sum() * (1 << PROB_BITS), 1 << PROB_BITS))
            offsets.append(offsets[-1] + len(p))
        self.freq = np.concatenate(freqs).astype(np.uint32)
        self.start = np.concatenate([np.concatenate([[0], np.cumsum(f)[:-1]]) for f in freqs]).astype(np.uint32)
        self.offset = np.array(offsets[:-1], dtype=np.int64)
        self.reciprocal, self.shift, self.bias = reciprocals(self.freq, self.start)
        # slot -> symbol index within the group, one row of 2^PROB_BITS per group
        self.lookup = np.stack([np.repeat(np.arange(len(f), dtype=np.uint16), f) for f in freqs])


def reciprocals(freq: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per symbol, what turns the encoder's division by freq into a multiply and shift (exact for
    states below 2^31; Giesen's construction): x // f == (x * reciprocal >> 32) >> shift, with
    freq 1 handled by a reciprocal of 2^32 - 1 and the bias."""
    f = freq.astype(np.uint64)
    shift = np.ceil(np.log2(np.maximum(f, 1).astype(np.float64))).astype(np.uint64)
    shift = np.where((np.uint64(1) << shift) < f, shift + np.uint64(1), shift)  # guard float rounding
    one = f == 1
    reciprocal = np.where(one, np.uint64(0xFFFFFFFF),
                          ((np.uint64(1) << (shift + np.uint64(31))) + f - np.uint64(1)) // np.maximum(f, np.uint64(1)))
    bias = np.where(one, start.astype(np.uint64) + np.uint64((1 << PROB_BITS) - 1), start.astype(np.uint64))
    return reciprocal.astype(np.uint64), np.where(one, np.uint64(0), shift - np.uint64(1)), bias


def quantise_frequencies(target: np.ndarray, total: int) -> np.ndarray:
    """Integers >= 1 summing to `total`, close to `target`: floor, then hand the remainder to the
    largest shortfalls (or take the excess from the largest counts)."""
    f = np.maximum(1, np.floor(target)).astype(np.int64)
    while (diff := total - int(f.sum())) != 0:
        if diff > 0:
            f[np.argsort(f - target)[:diff]] += 1
        else:
            f[np.argsort(-f)[: min(-diff, int((f > 1).sum()))]] -= 1
    return f


def encode(scaled: np.ndarray, deadzone: float, order: np.ndarray, ranges: np.ndarray, bounds: np.ndarray,
           tables: Tables) -> bytes | None:
    """Quantise `scaled` (N, K) float32 coefficients already divided by their steps and code them,
    each item's K in `order`: coding positions ranges[g]..ranges[g+1] use table g, whose symbols
    cover |q| < bounds[g]. None if a symbol's excess does not fit the escape (a step far too small
    for the data)."""
    out, ok = _encode(np.ascontiguousarray(scaled, dtype=np.float32), np.float32(1 - deadzone), order, ranges,
                      bounds, tables.freq, tables.reciprocal, tables.shift, tables.bias, tables.offset)
    return out.tobytes() if ok else None


def decode(data: bytes, shape: tuple[int, int], deadzone: float, steps: np.ndarray, order: np.ndarray,
           ranges: np.ndarray, bounds: np.ndarray, tables: Tables) -> np.ndarray | None:
    """(N, K) float32 coefficients, each at the middle of its dead-zone bin times its step; None if
    `data` is not a complete, consistent stream for this many symbols."""
    out, ok = _decode(np.frombuffer(data, dtype=np.uint8), shape[0], np.float32(deadzone - 0.5), steps, order,
                      ranges, bounds, tables.freq, tables.start, tables.offset, tables.lookup)
    return out if ok else None


def warm_up() -> None:
    """Compile (or load from numba's cache) both directions now: a first compile takes seconds,
    which must not land inside a timed request."""
    tables = Tables([np.array([0.25, 0.5, 0.25])])
    order, ranges, bounds = np.arange(2, dtype=np.int32), np.array([0, 2]), np.ones(1, np.int32)
    data = encode(np.zeros((1, 2), np.float32), 0.5, order, ranges, bounds, tables)
    decode(data, (1, 2), 0.5, np.ones(2, np.float32), order, ranges, bounds, tables)


@njit(cache=True, nogil=True, inline="always")
def _flush(x, buffer, pos, limit):  # pragma: no cover  (compiled)
    """Emit the 0, 1 or 2 low bytes that bring x under limit, without a data-dependent branch:
    both bytes are written, pos moves by the count (the buffer keeps 2 bytes of slack in front)."""
    count = (x >= limit) + (x >= (limit << np.uint64(8)))
    buffer[pos - 1] = np.uint8(x & np.uint64(0xFF))
    buffer[pos - 2] = np.uint8((x >> np.uint64(8)) & np.uint64(0xFF))
    return x >> np.uint64(8 * count), pos - count


@njit(cache=True, nogil=True, inline="always")
def _put(x, buffer, pos, i, freq, reciprocal, shift, bias):  # pragma: no cover  (compiled)
    f = np.uint64(freq[i])
    x, pos = _flush(x, buffer, pos, np.uint64((RANS_LOW >> PROB_BITS) << 8) * f)
    q = ((x * reciprocal[i]) >> np.uint64(32)) >> shift[i]  # x // f without a division
    return x + bias[i] + q * (np.uint64(1 << PROB_BITS) - f), pos


BYTE_BITS = PROB_BITS - 8  # a uniform byte has frequency 2^BYTE_BITS: shifts, no division


@njit(cache=True, nogil=True, inline="always")
def _put_byte(x, buffer, pos, byte):  # pragma: no cover  (compiled)
    x, pos = _flush(x, buffer, pos, np.uint64(((RANS_LOW >> PROB_BITS) << 8) << BYTE_BITS))
    low_bits = x & np.uint64((1 << BYTE_BITS) - 1)
    return ((x >> np.uint64(BYTE_BITS)) << np.uint64(PROB_BITS)) + low_bits + np.uint64(byte << BYTE_BITS), pos


@njit(cache=True, nogil=True, inline="always")
def _encode_one(x, buffer, pos, v, b, base, one_minus_deadzone, freq, reciprocal, shift, bias):  # pragma: no cover
    """Quantise one coefficient and push it (and its escape bytes) onto state x; table at base."""
    m = int(np.floor(abs(v) + one_minus_deadzone))
    if m >= b:  # escape: the excess as uniform bytes, pushed before (= decoded after) the symbol
        excess = m - b
        if excess > MAX_EXCESS:
            return x, pos, False
        if excess >= SHORT_EXCESS:
            long_excess = excess - SHORT_EXCESS
            x, pos = _put_byte(x, buffer, pos, long_excess >> 8)
            x, pos = _put_byte(x, buffer, pos, long_excess & 0xFF)
        x, pos = _put_byte(x, buffer, pos, min(excess, SHORT_EXCESS))
        m = b
    x, pos = _put(x, buffer, pos, base + b + m * ((v > 0) - (v < 0)), freq, reciprocal, shift, bias)
    return x, pos, True


@njit(cache=True, nogil=True)
def _encode(scaled, one_minus_deadzone, order, ranges, bounds, freq, reciprocal, shift, bias, offset):  # pragma: no cover
    """Two interleaved states (even and odd coding positions j) share one byte stream, so the CPU can
    overlap their dependency chains; the decoder alternates the same way."""
    n, k = scaled.shape
    buffer = np.empty(6 * n * k + 12, dtype=np.uint8)  # <= 12 bits a symbol, 3 symbols an escape, slack
    pos = buffer.shape[0]
    x0, x1 = np.uint64(RANS_LOW), np.uint64(RANS_LOW)
    for item in range(n - 1, -1, -1):
        for g in range(bounds.shape[0] - 1, -1, -1):
            b, base = bounds[g], offset[g]
            for j in range(ranges[g + 1] - 1, ranges[g] - 1, -1):
                v = scaled[item, order[j]]
                if j & 1:
                    x1, pos, ok = _encode_one(x1, buffer, pos, v, b, base, one_minus_deadzone, freq, reciprocal,
                                              shift, bias)
                else:
                    x0, pos, ok = _encode_one(x0, buffer, pos, v, b, base, one_minus_deadzone, freq, reciprocal,
                                              shift, bias)
                if not ok:
                    return buffer[:0], False
    for x in (x1, x0):  # the decoder reads x0 first
        for _ in range(4):
            pos -= 1
            buffer[pos] = np.uint8(x & np.uint64(0xFF))
            x >>= np.uint64(8)
    return buffer[pos:].copy(), True


@njit(cache=True, nogil=True, inline="always")
def _get(x, data, pos, freq, start, slot):  # pragma: no cover  (compiled)
    """Advance the state past a symbol occupying [start, start + freq), then read the 0, 1 or 2
    bytes that bring it back to [2^23, 2^31), without a data-dependent branch (data is padded past
    its end; the caller checks pos against the real end)."""
    x = freq * (x >> np.uint64(PROB_BITS)) + slot - start
    count = (x < np.uint64(RANS_LOW)) + (x < np.uint64(RANS_LOW >> 8))
    word = (np.uint64(data[pos]) << np.uint64(8)) | np.uint64(data[pos + 1])
    return (x << np.uint64(8 * count)) | (word >> np.uint64(8 * (2 - count))), pos + count


@njit(cache=True, nogil=True, inline="always")
def _pop(x, data, pos, b, base, row, freq, start):  # pragma: no cover  (compiled)
    """Pop one symbol from state x with the table at base (row: its slot lookup):
    (x, pos, signed magnitude; +-b means an escape follows)."""
    slot = x & np.uint64((1 << PROB_BITS) - 1)
    s = int(row[slot])
    x, pos = _get(x, data, pos, np.uint64(freq[base + s]), np.uint64(start[base + s]), slot)
    return x, pos, s - b


@njit(cache=True, nogil=True, inline="always")
def _pop_byte(x, data, pos):  # pragma: no cover  (compiled)
    mask = np.uint64((1 << PROB_BITS) - 1)
    byte_freq = np.uint64(1 << BYTE_BITS)
    byte = (x & mask) >> np.uint64(BYTE_BITS)
    x, pos = _get(x, data, pos, byte_freq, byte * byte_freq, x & mask)
    return x, pos, int(byte)


@njit(cache=True, nogil=True)
def _pop_escape(x, data, pos, signed):  # pragma: no cover  (compiled; rare, so not inlined)
    x, pos, excess = _pop_byte(x, data, pos)
    if excess == SHORT_EXCESS:
        x, pos, low = _pop_byte(x, data, pos)
        x, pos, high = _pop_byte(x, data, pos)
        excess += low | (high << 8)
    return x, pos, signed + excess if signed > 0 else signed - excess


@njit(cache=True, nogil=True)
def _decode(data, n, half_offset, steps, order, ranges, bounds, freq, start, offset, lookup):  # pragma: no cover
    """Coding positions alternate between two states (even j: x0, odd j: x1) so the CPU overlaps
    their dependency chains; each symbol is dequantised and put in place as it is decoded."""
    k = order.shape[0]
    out = np.empty((n, k), dtype=np.float32)
    size = data.shape[0]
    if size < 8:
        return out, False
    padded = np.zeros(size + 8, dtype=np.uint8)  # a symbol with escapes reads up to 6 past pos
    padded[:size] = data
    x0, x1 = np.uint64(0), np.uint64(0)
    for j in range(4):
        x0 = (x0 << np.uint64(8)) | np.uint64(padded[j])
        x1 = (x1 << np.uint64(8)) | np.uint64(padded[4 + j])
    pos = 8
    for item in range(n):
        for g in range(bounds.shape[0]):
            b, base, row = bounds[g], offset[g], lookup[g]
            for j in range(ranges[g], ranges[g + 1]):
                if j & 1:
                    x1, pos, signed = _pop(x1, padded, pos, b, base, row, freq, start)
                    if abs(signed) == b:
                        x1, pos, signed = _pop_escape(x1, padded, pos, signed)
                else:
                    x0, pos, signed = _pop(x0, padded, pos, b, base, row, freq, start)
                    if abs(signed) == b:
                        x0, pos, signed = _pop_escape(x0, padded, pos, signed)
                if pos > size:
                    return out, False
                index = order[j]
                sign = (signed > 0) - (signed < 0)  # no branch: half the symbols are zero, at random
                out[item, index] = np.float32(sign) * (np.float32(abs(signed)) + half_offset) * steps[index]
    return out, (pos == size and x0 == np.uint64(RANS_LOW) and x1 == np.uint64(RANS_LOW))
