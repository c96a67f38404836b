"""Bulk TCP transfer for link measurements: `recv` counts bytes per 10 ms on the monotonic clock
(shared by every namespace), `send` writes as fast as the link takes it.

    python -m splitbed.testing.bulk recv PORT SECONDS      -> one JSON line [[t_ns, bytes], ...]
    python -m splitbed.testing.bulk send HOST PORT SECONDS
    python -m splitbed.testing.bulk udprecv PORT SECONDS   -> the same JSON, for UDP datagrams
    python -m splitbed.testing.bulk udpsend HOST PORT SECONDS RATE_BPS   (paced at RATE_BPS)
    python -m splitbed.testing.bulk msgrecv PORT COUNT SIZE  -> JSON [delivery ms, ...]
    python -m splitbed.testing.bulk msgsend HOST PORT COUNT SIZE GAP_S   (one message every GAP_S)
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

from splitbed.network.tcp_window import connect

BIN_NS = 10_000_000


def receive(port: int, seconds: float) -> list[list[int]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    server.settimeout(seconds + 10)
    print("listening", flush=True)
    conn, _ = server.accept()
    conn.settimeout(1.0)
    bins: dict[int, int] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = conn.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        key = time.monotonic_ns() // BIN_NS
        bins[key] = bins.get(key, 0) + len(data)
    conn.close()
    server.close()
    return [[k * BIN_NS, v] for k, v in sorted(bins.items())]


def send(host: str, port: int, seconds: float) -> None:
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(2.0)
    chunk = b"\0" * (1 << 16)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                sock.sendall(chunk)
            except TimeoutError:
                continue
    except (BrokenPipeError, ConnectionResetError):
        pass  # the receiver stopped first: done
    finally:
        sock.close()


UDP_PAYLOAD = 1472  # fills a 1514-byte Ethernet frame


def receive_udp(port: int, seconds: float) -> list[list[int]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.5)
    print("listening", flush=True)
    bins: dict[int, int] = {}
    end = time.monotonic() + seconds + 2
    while time.monotonic() < end:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        key = time.monotonic_ns() // BIN_NS
        bins[key] = bins.get(key, 0) + len(data)
    sock.close()
    return [[k * BIN_NS, v] for k, v in sorted(bins.items())]


def send_udp(host: str, port: int, seconds: float, rate_bps: float) -> None:
    """Datagrams paced in 1 ms slots at rate_bps (payload bits; the link sees headers on top)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"\0" * UDP_PAYLOAD
    per_ms = rate_bps / 8 / 1000 / UDP_PAYLOAD
    start = time.monotonic()
    sent = 0.0
    while (now := time.monotonic()) - start < seconds:
        due = (now - start) * 1000 * per_ms
        while sent < due:
            try:
                sock.sendto(payload, (host, port))
            except OSError:
                pass  # a full local queue drops the datagram, as a link would
            sent += 1
        time.sleep(0.0005)
    sock.close()


def receive_messages(port: int, count: int, size: int) -> list[float]:
    """Per message, ms from the sender's timestamp in its first bytes to its last byte here (the
    monotonic clock is shared by every namespace); a one-byte answer releases the next message."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    server.settimeout(30)
    print("listening", flush=True)
    conn, _ = server.accept()
    conn.settimeout(30)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    delivery = []
    for _ in range(count):
        message = bytearray()
        while len(message) < size:
            data = conn.recv(size - len(message))
            if not data:
                return delivery
            message += data
        delivery.append((time.monotonic() - struct.unpack_from("d", message)[0]) * 1000)
        conn.sendall(b"k")
    conn.close()
    server.close()
    return delivery


def send_messages(host: str, port: int, count: int, size: int, gap_s: float, congestion: str = "cubic") -> None:
    """CUBIC by default, as a scenario's connections: a namespace defaulting to BBR paces the messages
    at BBR's estimate, which is not the link's doing (fidelity.message_delivery compares the two)."""
    sock = connect(host, port, 30, congestion)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    padding = b"\0" * (size - 8)
    for _ in range(count):
        sent = time.monotonic()
        sock.sendall(struct.pack("d", sent) + padding)
        if not sock.recv(1):
            break
        time.sleep(max(0.0, gap_s - (time.monotonic() - sent)))  # an idle gap, as between requests
    sock.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["recv"]:
        print(json.dumps(receive(int(argv[1]), float(argv[2]))), flush=True)
    elif argv[:1] == ["send"]:
        send(argv[1], int(argv[2]), float(argv[3]))
    elif argv[:1] == ["udprecv"]:
        print(json.dumps(receive_udp(int(argv[1]), float(argv[2]))), flush=True)
    elif argv[:1] == ["udpsend"]:
        send_udp(argv[1], int(argv[2]), float(argv[3]), float(argv[4]))
    elif argv[:1] == ["msgrecv"]:
        print(json.dumps(receive_messages(int(argv[1]), int(argv[2]), int(argv[3]))), flush=True)
    elif argv[:1] == ["msgsend"]:
        send_messages(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), float(argv[5]), *argv[6:7])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
