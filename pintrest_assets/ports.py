"""Loopback ports of the local servers (the gateway, pintrest dev's Spark Connect server): a free
one to start on, and whether something listens on one yet."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at the time of the call."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listening(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a server accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.settimeout(timeout)
        return s.connect_ex((host, port)) == 0
