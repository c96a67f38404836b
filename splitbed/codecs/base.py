"""The codec interface and registry: found by name with parameters, bytes out, tensor back.

A codec's encode() returns a whole wire message (wire.py), so decode() needs no codec object of
its own: the message names the codec and carries its parameters. Calibrated codecs (DISC) also need
fitted state, which the decoder gets from a CalibrationStore keyed by the message's parameters.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import torch

from splitbed.codecs import wire
from splitbed.errors import UserError
from splitbed.registry import Registry


class CorruptPayload(wire.WireFormatError):
    """A well-framed message whose payload does not decode."""


REGISTRY: Registry[type[Codec]] = Registry("codec")
BY_ID: dict[int, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
    """Adds a codec class by its name; its wire id must be new too (a message names its codec by id)."""
    if cls.codec_id in BY_ID:
        raise ValueError(f"codec id {cls.codec_id} of {cls.name!r} is {BY_ID[cls.codec_id].name!r}'s already")
    REGISTRY.add(cls.name, cls)
    BY_ID[cls.codec_id] = cls
    return cls


def as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class Codec:
    """Subclasses set name, codec_id, DEFAULTS and implement encode_payload / decode_payload."""

    name: ClassVar[str]
    codec_id: ClassVar[int]
    DEFAULTS: ClassVar[dict] = {}
    needs_calibration: ClassVar[bool] = False

    def __init__(self, **params):
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise UserError(f"codec {self.name} has no parameter(s) {', '.join(sorted(unknown))}",
                            fix=f"valid: {', '.join(self.DEFAULTS) or 'none'}")
        self.params = {**self.DEFAULTS, **params}
        self.validate()

    def validate(self) -> None:
        """Check self.params; raise UserError naming the parameter."""

    def encode(self, x) -> bytes:
        array = as_array(x)
        payload, extra = self.encode_payload(array)
        return wire.pack(self.codec_id, np.float32, array.shape, self.pack_params({**self.params, **extra}), payload)

    @classmethod
    def pack_params(cls, params: dict) -> bytes:
        """Parameters as header bytes: compact JSON unless a codec packs them tighter."""
        return json.dumps(params, separators=(",", ":"), sort_keys=True).encode() if params else b""

    @classmethod
    def unpack_params(cls, raw: bytes) -> dict:
        if not raw:
            return {}
        try:
            params = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise wire.MalformedHeader(f"{cls.name} parameters are not UTF-8 JSON: {err}") from None
        if not isinstance(params, dict):
            raise wire.MalformedHeader(f"{cls.name} parameters are not a JSON object")
        return params

    def encode_payload(self, x: np.ndarray) -> tuple[bytes, dict]:
        raise NotImplementedError

    @classmethod
    def decode_payload(cls, message: wire.Message, params: dict, store) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.params.items())})"


def get_codec(name: str, **params) -> Codec:
    return REGISTRY.lookup(name)(**params)


def decode(data: bytes, store=None) -> np.ndarray:
    """Any codec's message back to a float32 array; WireFormatError for anything invalid."""
    message = wire.unpack(data)
    cls = BY_ID.get(message.codec_id)
    if cls is None:
        raise wire.MalformedHeader(f"unknown codec id {message.codec_id}")
    params = cls.unpack_params(message.params)
    try:
        array = cls.decode_payload(message, params, store)
    except wire.WireFormatError:
        raise
    except Exception as err:  # any failure inside a payload decoder is a corrupt payload, typed
        raise CorruptPayload(f"{cls.name} payload does not decode: {type(err).__name__}: {err}") from None
    if array.shape != message.shape:
        raise CorruptPayload(f"decoded shape {array.shape} differs from header shape {message.shape}")
    return array
