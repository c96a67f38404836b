"""The congestion window a connection's next send starts with, read from the kernel (TCP_INFO).

Linux restarts the window of a connection idle for longer than its retransmission timeout
(tcp_cwnd_restart, when net.ipv4.tcp_slow_start_after_idle is 1, the default): the window halves once
per timeout elapsed, down to the initial window (10 segments). Requests that take turns with other
methods, or come after an edge-only stretch, meet that restart; the latency model counts its extra
round trips (splitbed.aglop.planner.transfer_ms).
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from splitbed.errors import UserError

INITIAL_WINDOW = 10  # segments: Linux's TCP_INIT_CWND
SYSCTL = Path("/proc/sys/net/ipv4/tcp_slow_start_after_idle")
CONGESTION_SYSCTL = Path("/proc/sys/net/ipv4/tcp_congestion_control")
AVAILABLE_SYSCTL = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
HOST_DEFAULT = "default"  # a scenario's tcp.congestion_control that leaves sockets at the namespace's default
# struct tcp_info: 8 one-byte fields, then u32s (and u64s from 104); the ones read here, by byte offset
RTO_US, LAST_DATA_SENT_MS, SND_CWND, MIN_RTT_US = 8, 44, 80, 148
TCP_INFO_BYTES = 152


def slow_start_after_idle() -> bool:
    """This network namespace's setting (the file is per namespace)."""
    try:
        return SYSCTL.read_text().strip() != "0"
    except OSError:
        return True


def congestion_control(sock: socket.socket | None = None) -> str:
    """The congestion control of `sock`, else this namespace's default: what decides how a window
    restarts and whether sends are paced (the model's restart rule is Linux's tcp_cwnd_restart)."""
    try:
        if sock is not None:
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()
        return CONGESTION_SYSCTL.read_text().strip()
    except OSError:
        return "unknown"


def available_congestion_controls() -> list[str]:
    """The congestion controls this kernel has loaded (a socket may be set to any of them as root)."""
    try:
        return AVAILABLE_SYSCTL.read_text().split()
    except OSError:
        return []


def check_congestion_control(name: str, where: str) -> None:
    """A scenario's congestion control exists in this kernel (checked before anything starts)."""
    available = available_congestion_controls()
    if name != HOST_DEFAULT and available and name not in available:
        raise UserError(f"TCP congestion control {name!r} is not loaded in this kernel", where=where,
                        fix=f"load it (modprobe tcp_{name}) or choose one of: {', '.join(available)}, "
                            f"or {HOST_DEFAULT} (this machine's)")


def use_congestion_control(sock: socket.socket, name: str | None) -> None:
    """Pin `sock` to `name` before it connects or listens (accepted connections inherit a listener's).
    Set before the connection starts, so no pacing is left from the namespace's default: a machine
    defaulting to BBR paced request-sized messages at its app-limited estimate, half a 20 Mbit/s
    link's rate at 20 ms each way."""
    if name and name != HOST_DEFAULT:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())


def connect(host: str, port: int, timeout: float, congestion: str | None) -> socket.socket:
    """A TCP connection whose congestion control is `congestion` from its first segment."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        use_congestion_control(sock, congestion)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def restart_window(cwnd: int, rto_ms: float, idle_ms: float, restarts: bool = True) -> int:
    """Linux's tcp_cwnd_restart: halve once per RTO of idle time, never under the initial window."""
    if not restarts or idle_ms <= rto_ms or rto_ms <= 0:
        return cwnd
    window, left = cwnd, idle_ms - rto_ms
    while left > 0 and window > INITIAL_WINDOW:
        window //= 2
        left -= rto_ms
    return max(window, INITIAL_WINDOW)


def tcp_info_u32(sock: socket.socket, *offsets: int) -> tuple[int, ...] | None:
    """The u32 fields of the connection's struct tcp_info at these byte offsets; None if the kernel will
    not say (no TCP_INFO, or an older kernel's shorter struct)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except OSError:
        return None
    if len(info) < max(offsets) + 4:
        return None
    return tuple(struct.unpack_from("I", info, offset)[0] for offset in offsets)


def min_rtt_ms(sock: socket.socket) -> float | None:
    """The smallest round trip TCP measured on `sock` (tcpi_min_rtt, Linux 4.10+; its SYN's included):
    the path's delay up and back; None if the kernel will not say."""
    fields = tcp_info_u32(sock, MIN_RTT_US)
    if fields is None:
        return None
    return fields[0] / 1e3 if 0 < fields[0] < 0xFFFFFFFF else None


def send_window(sock: socket.socket, restarts: bool = True) -> int | None:
    """Segments the next send on `sock` may have in flight at once; None if the kernel will not say."""
    fields = tcp_info_u32(sock, RTO_US, LAST_DATA_SENT_MS, SND_CWND)
    if fields is None:
        return None
    rto_us, idle_ms, cwnd = fields
    return restart_window(cwnd, rto_us / 1e3, idle_ms, restarts)
