"""The address a neuron publishes on chain for its HTTP server, and when it must not publish one.

A neuron bound to the wildcard 0.0.0.0 cannot know its public address. On a chain running on
this machine (sim, local, a loopback endpoint) it publishes 127.0.0.1; on any other network it
refuses to start until --axon.external_ip is given: publishing loopback there would make it
unreachable for every validator, silently.
"""
from __future__ import annotations

import ipaddress

from template.chain.client import is_local_chain

WILDCARDS = ("0.0.0.0", "::")


def published_ip(bind_ip: str, external_ip: str) -> str:
    """`external_ip` when set; else the bind address, with 127.0.0.1 for a wildcard bind."""
    if external_ip:
        return external_ip
    return "127.0.0.1" if bind_ip in WILDCARDS else bind_ip


def check_published_address(bind_ip: str, external_ip: str, network: str, endpoint: str) -> str:
    """Why the address these flags would publish is wrong for `network` ("" when it is fine)."""
    if external_ip:
        try:
            address = ipaddress.ip_address(external_ip)
        except ValueError:
            return f"--axon.external_ip {external_ip!r} is not an IP address"
    else:
        try:
            address = ipaddress.ip_address(published_ip(bind_ip, ""))
        except ValueError:
            return f"--axon.ip {bind_ip!r} is not an IP address"
    if not address.is_loopback or is_local_chain(network, endpoint):
        return ""
    if external_ip:
        return (f"--axon.external_ip {external_ip} is a loopback address: no validator can reach it on "
                f"network {network}. Give your public IP.")
    bound = "binds every interface" if bind_ip in WILDCARDS else "binds loopback only"
    return (f"--axon.ip {bind_ip} {bound}, but on network {network} this neuron cannot tell its public address "
            f"and would publish {address}, which no validator can reach. Give it: --axon.external_ip <public IP> "
            f"(e.g. `curl -4 ifconfig.me`), and open --axon.port in your firewall (docs/operators.md).")
