"""The edge-server protocol: length-prefixed, versioned frames with size caps; no pickle.

    frame   = magic b"SQ" | version u8 | type u8 | length u32 | body (length bytes, <= MAX_FRAME)
    REQUEST   body = u16 header length | header (UTF-8 JSON object, <= 4 KiB) | tensor wire message
    RESPONSE  body = JSON object (prediction and the server's stage timestamps)
    ERROR     body = JSON object {"error": "..."}
    PROBE     body = filler bytes; answered with a RESPONSE {"t_received", "t_sent"} (bandwidth probes)

A reader never allocates more than MAX_FRAME for a body, and any malformed frame raises
ProtocolError, which the server answers with an ERROR frame before going on.
"""

from __future__ import annotations

import json
import socket
import struct

MAGIC = b"SQ"
VERSION = 1
REQUEST, RESPONSE, ERROR, PROBE = 1, 2, 3, 4
HEADER = struct.Struct(">2sBBI")
MAX_FRAME = 64 << 20
MAX_JSON = 4096


class ProtocolError(ValueError):
    """A frame that breaks the protocol: bad magic, version, type, size or JSON."""


def send_frame(sock: socket.socket, kind: int, body: bytes) -> None:
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    sock.sendall(HEADER.pack(MAGIC, VERSION, kind, len(body)) + body)


def recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks, remaining = [], count
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    magic, version, kind, length = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this build speaks {VERSION}")
    if kind not in (REQUEST, RESPONSE, ERROR, PROBE):
        raise ProtocolError(f"unknown frame type {kind}")
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return kind, recv_exact(sock, length)


def json_body(data: dict) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def parse_json(body: bytes) -> dict:
    if len(body) > MAX_JSON * 16:
        raise ProtocolError("JSON body too large")
    try:
        value = json.loads(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProtocolError(f"body is not UTF-8 JSON: {err}") from None
    if not isinstance(value, dict):
        raise ProtocolError("body is not a JSON object")
    return value


def request_body(header: dict, tensor_message: bytes) -> bytes:
    encoded = json_body(header)
    if len(encoded) > MAX_JSON:
        raise ProtocolError("request header too large")
    return struct.pack(">H", len(encoded)) + encoded + tensor_message


def parse_request(body: bytes) -> tuple[dict, bytes]:
    if len(body) < 2:
        raise ProtocolError("request too short")
    (length,) = struct.unpack_from(">H", body)
    if length > MAX_JSON or len(body) < 2 + length:
        raise ProtocolError("request header length out of range")
    return parse_json(body[2 : 2 + length]), body[2 + length :]
