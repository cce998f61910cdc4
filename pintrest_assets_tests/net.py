"""Loopback ports for tests that start servers or need one nobody listens on."""

import socket


def free_port() -> int:
    """A loopback port that nothing listens on (free at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
