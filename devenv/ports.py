"""Free loopback ports for the servers the local environment and the tests start.

Chosen below the kernel's ephemeral range (32768 and up): a port taken from there is free when checked
and can be the local end of some client's connection a moment later, before the server binds it (a real
Qdrant node lost its gRPC port that way while a benchmark opened thousands of connections)."""

from __future__ import annotations

import random
import socket

HOST = "127.0.0.1"
RANGE = (20000, 32000)


def bindable(port: int) -> bool:
    """Nothing listens on it and no client connection holds it (a connect test misses those). SO_REUSEADDR as
    the servers set it, so a port in TIME_WAIT after a restart of our own servers still counts as free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, first: int | None = None) -> list[int]:
    """`count` consecutive free ports: from `first` when those are free, else from a random place in RANGE."""
    if first and all(bindable(first + i) for i in range(count)):
        return [first + i for i in range(count)]
    for _ in range(500):
        base = random.randrange(RANGE[0], RANGE[1] - count)
        if all(bindable(base + i) for i in range(count)):
            return [base + i for i in range(count)]
    raise RuntimeError(f"no {count} consecutive free ports on {HOST} between {RANGE[0]} and {RANGE[1]}")


def free_port() -> int:
    return free_ports(1)[0]
