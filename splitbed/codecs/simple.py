"""Baseline codecs: raw fp32 (plain partition-offloading), lossless zstd, 8-bit + zstd, JPEG tiles."""

from __future__ import annotations

import io
import math

import numpy as np
import zstandard
from PIL import Image

from splitbed.codecs import wire
from splitbed.codecs.base import Codec, CorruptPayload, register
from splitbed.errors import UserError


def zstd_decompress(payload: bytes, expected_size: int) -> bytes:
    """Bounded decompression: never more than the header's shape allows."""
    out = zstandard.ZstdDecompressor().decompress(payload, max_output_size=expected_size)
    if len(out) != expected_size:
        raise CorruptPayload(f"zstd gave {len(out)} bytes, expected {expected_size}")
    return out


def element_count(message: wire.Message) -> int:
    return int(np.prod(message.shape, dtype=np.int64))


def check_level(level) -> None:
    if not isinstance(level, int) or not 1 <= level <= 22:
        raise UserError(f"zstd level must be an integer 1..22, got {level!r}")


def channel_axis_view(x: np.ndarray) -> np.ndarray:
    """(C, rest) view: axis 1 of a batched NCHW tensor, axis 0 otherwise (per-channel side info)."""
    if x.ndim == 4:
        return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
    if x.ndim >= 2:
        return x.reshape(x.shape[0], -1)
    return x.reshape(1, -1)


def from_channel_view(v: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) == 4:
        return v.reshape(shape[1], shape[0], shape[2], shape[3]).transpose(1, 0, 2, 3)
    return v.reshape(shape)


@register
class Raw(Codec):
    """fp32 as is: what plain partition-offloading sends."""

    name, codec_id = "raw", 1

    def encode_payload(self, x):
        return x.astype("<f4").tobytes(), {}

    @classmethod
    def decode_payload(cls, message, params, store):
        if len(message.payload) != 4 * element_count(message):
            raise CorruptPayload("raw payload size does not match the shape")
        return np.frombuffer(message.payload, dtype="<f4").reshape(message.shape).copy()


@register
class Zstd(Codec):
    """Lossless: fp32 bytes through zstd."""

    name, codec_id = "zstd", 2
    DEFAULTS = {"level": 3}

    def validate(self):
        check_level(self.params["level"])

    def encode_payload(self, x):
        return zstandard.ZstdCompressor(level=self.params["level"]).compress(x.astype("<f4").tobytes()), {}

    @classmethod
    def decode_payload(cls, message, params, store):
        raw = zstd_decompress(message.payload, 4 * element_count(message))
        return np.frombuffer(raw, dtype="<f4").reshape(message.shape).copy()


@register
class Int8(Codec):
    """Uniform 8-bit quantisation between each channel's min and max, then zstd."""

    name, codec_id = "int8", 3
    DEFAULTS = {"level": 3}

    def validate(self):
        check_level(self.params["level"])

    def encode_payload(self, x):
        view = channel_axis_view(x)
        lo, hi = view.min(1), view.max(1)
        scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
        q = np.round((view - lo[:, None]) / scale[:, None]).astype(np.uint8)
        side = np.stack([lo, scale]).astype("<f4").tobytes()
        return side + zstandard.ZstdCompressor(level=self.params["level"]).compress(q.tobytes()), {}

    @classmethod
    def decode_payload(cls, message, params, store):
        shape = message.shape
        channels = shape[1] if len(shape) == 4 else (shape[0] if len(shape) >= 2 else 1)
        side_len = 8 * channels
        side = np.frombuffer(message.payload[:side_len], dtype="<f4").reshape(2, channels)
        count = element_count(message)
        q = np.frombuffer(zstd_decompress(message.payload[side_len:], count), dtype=np.uint8)
        view = q.reshape(channels, -1).astype(np.float32) * side[1][:, None] + side[0][:, None]
        return from_channel_view(view, shape)


@register
class Jpeg(Codec):
    """sc2bench-style: each channel min-max scaled to 8 bits, tiled into one grey image, JPEG quality q.

    rgb=true (a 3-channel input image, the server-only baseline): one colour JPEG with 4:2:0 chroma,
    as a camera would send it, instead of three grey tiles.
    """

    name, codec_id = "jpeg", 4
    DEFAULTS = {"quality": 90, "rgb": False}

    def validate(self):
        q = self.params["quality"]
        if not isinstance(q, int) or not 1 <= q <= 100:
            raise UserError(f"jpeg quality must be an integer 1..100, got {q!r}")
        if not isinstance(self.params["rgb"], bool):
            raise UserError(f"jpeg rgb must be true or false, got {self.params['rgb']!r}")

    @staticmethod
    def grid(channels: int) -> tuple[int, int]:
        cols = math.ceil(math.sqrt(channels))
        return math.ceil(channels / cols), cols

    def encode_payload(self, x):
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[0] != 1):
            raise UserError(f"jpeg codec takes one CxHxW tensor, got shape {x.shape}")
        maps = x.reshape(x.shape[-3:])
        c, h, w = maps.shape
        if self.params["rgb"] and c != 3:
            raise UserError(f"jpeg rgb=true takes a 3-channel image, got {c} channels")
        lo, hi = maps.min((1, 2)), maps.max((1, 2))
        scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
        q = np.round((maps - lo[:, None, None]) / scale[:, None, None]).astype(np.uint8)
        buffer = io.BytesIO()
        if self.params["rgb"]:
            Image.fromarray(q.transpose(1, 2, 0), mode="RGB").save(buffer, format="JPEG", quality=self.params["quality"],
                                                                    subsampling="4:2:0")
            return np.stack([lo, scale]).astype("<f4").tobytes() + buffer.getvalue(), {}
        rows, cols = self.grid(c)
        tiles = np.zeros((rows * cols, h, w), np.uint8)
        tiles[:c] = q
        image = tiles.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
        Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=self.params["quality"])
        return np.stack([lo, scale]).astype("<f4").tobytes() + buffer.getvalue(), {}

    @classmethod
    def decode_payload(cls, message, params, store):
        shape = message.shape
        if len(shape) not in (3, 4):
            raise CorruptPayload("jpeg message needs a 3-d or 4-d shape")
        c, h, w = shape[-3:]
        side = np.frombuffer(message.payload[: 8 * c], dtype="<f4").reshape(2, c)
        if params.get("rgb") is True:
            with Image.open(io.BytesIO(message.payload[8 * c :])) as image:
                if c != 3 or image.size != (w, h) or image.mode != "RGB":
                    raise CorruptPayload(f"jpeg image is {image.size} {image.mode}, expected {(w, h)} RGB")
                pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)
            return (pixels * side[1][:, None, None] + side[0][:, None, None]).reshape(shape)
        rows, cols = cls.grid(c)
        with Image.open(io.BytesIO(message.payload[8 * c :])) as image:
            if image.size != (cols * w, rows * h) or image.mode != "L":
                raise CorruptPayload(f"jpeg image is {image.size} {image.mode}, expected {(cols * w, rows * h)} L")
            pixels = np.asarray(image, dtype=np.float32)
        tiles = pixels.reshape(rows, h, cols, w).transpose(0, 2, 1, 3).reshape(rows * cols, h, w)[:c]
        return (tiles * side[1][:, None, None] + side[0][:, None, None]).reshape(shape)
