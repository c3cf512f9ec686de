"""The wire protocol between validators and miners.

Everything that crosses the network between neurons is defined here: versioned message
models (`messages`), the tensor payload codec (`payload`, safetensors only, never pickle),
btauth/1 request signing and verification (`auth`), and size limits (`limits`).
"""
from protocol.version import PROTOCOL_VERSION, WEIGHTS_VERSION_KEY

__all__ = ["PROTOCOL_VERSION", "WEIGHTS_VERSION_KEY"]
