"""The one self-describing wire format every codec's output travels in.

    field                        size
    magic b"SB"                  2
    format version (2)           1
    codec id                     1
    dtype << 4 | ndim            1     dtype of the decoded tensor (0 float32, 1 float16, 2 uint8, 3 int8),
                                       ndim <= 8
    shape                        ndim varints (unsigned LEB128)
    parameter length P           varint (<= 4096)
    parameters                   P     codec-defined bytes (JSON for the baselines, packed binary for
                                       DISC)
    payload length L             varint
    CRC-32                       4     of everything else: the header up to here and the payload
    payload                      L

Varints keep the header at 15-18 bytes plus parameters for the activations we send (version 1 spent
16 bytes on a 4-d shape alone): on a Fashion-MNIST feature map that is a tenth of the message.
Everything is checked before anything is allocated: the element count and the payload length
have caps, the payload length must match the bytes given, the CRC must match. Any violation raises
a WireFormatError subclass quickly.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"SB"
FIXED = 5
VERSION = 2
MAX_VARINT_BYTES = 5  # 35 bits: enough for every cap below
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 26  # 64 Mi values: far above any activation we send
MAX_PARAMS = 4096
MAX_PAYLOAD = 1 << 28
DTYPES = {0: np.float32, 1: np.float16, 2: np.uint8, 3: np.int8}
DTYPE_IDS = {np.dtype(v): k for k, v in DTYPES.items()}


class WireFormatError(ValueError):
    """A message that is not a valid splitbed tensor message."""


class TruncatedMessage(WireFormatError):
    pass


class BadMagic(WireFormatError):
    pass


class UnsupportedVersion(WireFormatError):
    pass


class TooLarge(WireFormatError):
    pass


class ChecksumMismatch(WireFormatError):
    pass


class MalformedHeader(WireFormatError):
    pass


@dataclass
class Message:
    codec_id: int
    dtype: np.dtype
    shape: tuple[int, ...]
    params: bytes
    payload: bytes


def pack(codec_id: int, dtype, shape: tuple[int, ...], params: bytes, payload: bytes) -> bytes:
    ndim = len(shape)
    if ndim > MAX_NDIM or math.prod(shape) > MAX_ELEMENTS:
        raise TooLarge(f"tensor of shape {shape} exceeds the wire format's caps")
    encoded_params = params
    if len(encoded_params) > MAX_PARAMS:
        raise TooLarge(f"parameters take {len(encoded_params)} bytes, cap is {MAX_PARAMS}")
    if len(payload) > MAX_PAYLOAD:
        raise TooLarge(f"payload of {len(payload)} bytes exceeds the cap of {MAX_PAYLOAD}")
    header = struct.pack(">2sBBB", MAGIC, VERSION, codec_id, DTYPE_IDS[np.dtype(dtype)] << 4 | ndim)
    header += b"".join(varint(n) for n in (*shape, len(encoded_params))) + encoded_params
    header += varint(len(payload))
    return header + checksum(header, payload) + payload


def checksum(header: bytes, payload: bytes) -> bytes:
    """The 4-byte CRC-32 that sits between a message's header and its payload: one rule for packing and
    checking, so a damaged header or payload is refused before any codec reads it."""
    return struct.pack(">I", zlib.crc32(payload, zlib.crc32(header)))


def varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, high bit set on all but the last."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    """(value, next offset); typed errors for a varint that runs off the end or past 35 bits."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise TruncatedMessage(f"message ends inside the {what}")
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, offset + i + 1
    raise MalformedHeader(f"the {what} is not a varint of at most {MAX_VARINT_BYTES} bytes")


def unpack(data: bytes | bytearray | memoryview) -> Message:
    data = bytes(data)
    if len(data) < FIXED:
        raise TruncatedMessage(f"message of {len(data)} bytes is shorter than the {FIXED}-byte fixed header")
    magic, version, codec_id, kinds = struct.unpack_from(">2sBBB", data, 0)
    if magic != MAGIC:
        raise BadMagic(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise UnsupportedVersion(f"wire format version {version}, this build reads version {VERSION}")
    dtype_id, ndim = kinds >> 4, kinds & 0x0F
    if dtype_id not in DTYPES:
        raise MalformedHeader(f"unknown dtype id {dtype_id}")
    if ndim > MAX_NDIM:
        raise TooLarge(f"ndim {ndim} exceeds {MAX_NDIM}")
    offset, shape = FIXED, []
    for _ in range(ndim):
        size, offset = read_varint(data, offset, "shape")
        shape.append(size)
    if math.prod(shape) > MAX_ELEMENTS:  # Python ints: no overflow on hostile shapes
        raise TooLarge(f"shape {tuple(shape)} exceeds {MAX_ELEMENTS} elements")
    params_len, offset = read_varint(data, offset, "parameter length")
    if params_len > MAX_PARAMS:
        raise TooLarge(f"parameter block of {params_len} bytes exceeds {MAX_PARAMS}")
    if len(data) < offset + params_len:
        raise TruncatedMessage("message ends inside the parameters")
    params = data[offset : offset + params_len]
    payload_len, offset = read_varint(data, offset + params_len, "payload length")
    if payload_len > MAX_PAYLOAD:
        raise TooLarge(f"payload length {payload_len} exceeds {MAX_PAYLOAD}")
    if len(data) < offset + 4:
        raise TruncatedMessage("message ends inside the checksum")
    crc, header = data[offset : offset + 4], data[:offset]
    offset += 4
    if len(data) - offset != payload_len:
        raise TruncatedMessage(f"payload length says {payload_len} bytes, {len(data) - offset} follow")
    payload = data[offset:]
    if checksum(header, payload) != crc:
        raise ChecksumMismatch("CRC-32 of header and payload does not match")
    return Message(codec_id, np.dtype(DTYPES[dtype_id]), tuple(shape), params, payload)
