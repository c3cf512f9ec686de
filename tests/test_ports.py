import socket

from template.utils import ports
from template.utils.ports import free_port


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    low, _ = ports._ephemeral_range()
    picked = [free_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    assert all(ports.LOW_PORTS[0] <= p < low for p in picked) or low <= ports.LOW_PORTS[0]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", picked[-1]))  # free when handed out


def test_a_port_in_use_is_never_handed_out(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(ports, "LOW_PORTS", (taken, taken))
        monkeypatch.setattr(ports, "_ephemeral_range", lambda: (taken + 1, taken + 2))
        port = free_port()
        assert port != taken
