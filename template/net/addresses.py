"""The address a neuron publishes on chain for its HTTP server."""
from __future__ import annotations


def published_ip(bind_ip: str, external_ip: str) -> str:
    """`external_ip` when set; else the bind address, with 127.0.0.1 for a wildcard bind."""
    if external_ip:
        return external_ip
    return "127.0.0.1" if bind_ip in ("0.0.0.0", "::") else bind_ip
