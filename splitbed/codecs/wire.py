"""The one self-describing wire format every codec's output travels in.

    offset  size  field
    0       2     magic b"SB"
    2       1     format version (1)
    3       1     codec id
    4       1     dtype of the decoded tensor (0 float32, 1 float16, 2 uint8, 3 int8)
    5       1     ndim (<= 8)
    6       4*nd  shape, uint32 big-endian each
    ..      2     parameter length P (<= 4096)
    ..      P     parameters, codec-defined bytes (JSON for the baselines, packed binary for DISC,
                  whose 26 bytes matter on small tensors)
    ..      4     payload length L
    ..      4     CRC-32 of everything else: the header up to here and the payload
    ..      L     payload

Everything is checked before anything is allocated: the element count and the payload length
have caps, the payload length must match the bytes given, the CRC must match. Any violation raises
a WireFormatError subclass quickly.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"SB"
FIXED = 6
VERSION = 1
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
    if ndim > MAX_NDIM or int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        raise TooLarge(f"tensor of shape {shape} exceeds the wire format's caps")
    encoded_params = params
    if len(encoded_params) > MAX_PARAMS:
        raise TooLarge(f"parameters take {len(encoded_params)} bytes, cap is {MAX_PARAMS}")
    if len(payload) > MAX_PAYLOAD:
        raise TooLarge(f"payload of {len(payload)} bytes exceeds the cap of {MAX_PAYLOAD}")
    header = struct.pack(">2sBBBB", MAGIC, VERSION, codec_id, DTYPE_IDS[np.dtype(dtype)], ndim)
    header += struct.pack(f">{ndim}I", *shape)
    header += struct.pack(">H", len(encoded_params)) + encoded_params
    header += struct.pack(">I", len(payload))
    return header + struct.pack(">I", zlib.crc32(payload, zlib.crc32(header))) + payload


def unpack(data: bytes | bytearray | memoryview) -> Message:
    data = bytes(data)
    if len(data) < FIXED:
        raise TruncatedMessage(f"message of {len(data)} bytes is shorter than the {FIXED}-byte fixed header")
    magic, version, codec_id, dtype_id, ndim = struct.unpack_from(">2sBBBB", data, 0)
    if magic != MAGIC:
        raise BadMagic(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise UnsupportedVersion(f"wire format version {version}, this build reads version {VERSION}")
    if dtype_id not in DTYPES:
        raise MalformedHeader(f"unknown dtype id {dtype_id}")
    if ndim > MAX_NDIM:
        raise TooLarge(f"ndim {ndim} exceeds {MAX_NDIM}")
    offset = FIXED
    if len(data) < offset + 4 * ndim + 2:
        raise TruncatedMessage("message ends inside the shape")
    shape = struct.unpack_from(f">{ndim}I", data, offset)
    offset += 4 * ndim
    if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        raise TooLarge(f"shape {shape} exceeds {MAX_ELEMENTS} elements")
    (params_len,) = struct.unpack_from(">H", data, offset)
    offset += 2
    if params_len > MAX_PARAMS:
        raise TooLarge(f"parameter block of {params_len} bytes exceeds {MAX_PARAMS}")
    if len(data) < offset + params_len + 8:
        raise TruncatedMessage("message ends inside the parameters")
    params = data[offset : offset + params_len]
    offset += params_len
    payload_len, crc = struct.unpack_from(">II", data, offset)
    offset += 8
    if payload_len > MAX_PAYLOAD:
        raise TooLarge(f"payload length {payload_len} exceeds {MAX_PAYLOAD}")
    if len(data) - offset != payload_len:
        raise TruncatedMessage(f"payload length says {payload_len} bytes, {len(data) - offset} follow")
    payload = data[offset:]
    if zlib.crc32(payload, zlib.crc32(data[: offset - 4])) != crc:
        raise ChecksumMismatch("CRC-32 of header and payload does not match")
    return Message(codec_id, np.dtype(DTYPES[dtype_id]), tuple(shape), params, payload)
