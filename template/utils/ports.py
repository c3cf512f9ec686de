"""Free ports for local servers.

A port is drawn below the OS's ephemeral range (where it picks the source ports of outgoing
connections), so that a neuron's port, chosen before the neuron starts, cannot be taken in the
meantime by some process's HTTP client; and never twice by one process."""
import random
import socket
from pathlib import Path

LOW_PORTS = (20000, 32767)  # below Linux's default ephemeral range (32768-60999)
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, outside the ephemeral range where there is room,
    and not handed out before by this process."""
    ephemeral = _ephemeral_range()
    low, high = LOW_PORTS
    if ephemeral[0] > low:
        high = min(high, ephemeral[0] - 1)
        for _ in range(64):
            port = random.randint(low, high)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    while True:  # the OS's choice (it skips ports in use)
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
