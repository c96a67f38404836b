"""Bulk TCP transfer for link measurements: `recv` counts bytes per 10 ms on the monotonic clock
(shared by every namespace), `send` writes as fast as the link takes it.

    python -m splitbed.topologies.bulk recv PORT SECONDS      -> one JSON line [[t_ns, bytes], ...]
    python -m splitbed.topologies.bulk send HOST PORT SECONDS
"""

from __future__ import annotations

import json
import socket
import sys
import time

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


def main(argv: list[str]) -> int:
    if argv[:1] == ["recv"]:
        print(json.dumps(receive(int(argv[1]), float(argv[2]))), flush=True)
    elif argv[:1] == ["send"]:
        send(argv[1], int(argv[2]), float(argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
