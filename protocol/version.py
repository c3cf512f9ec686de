"""Protocol and weights versions.

PROTOCOL_VERSION travels in every message; a peer speaking another major version is
refused with a clear 4xx. WEIGHTS_VERSION_KEY is what validators pass to set_weights;
subnet owners raise the chain's WeightsVersionKey to it to retire old validators.
"""
PROTOCOL_VERSION = "3.0"  # 3: contributions are committed before the deadline, revealed after it
WEIGHTS_VERSION_KEY = 100


def major(version: str) -> str:
    return version.split(".", 1)[0]


def is_compatible(version: str) -> bool:
    return major(version) == major(PROTOCOL_VERSION)
