"""JSON wire format of simnet: tagged values, composed calls, signing payloads, block hashes.

Plain JSON cannot carry everything the SDK hands a ``Substrate``: ``bytes`` (ciphertexts,
commits), tuples (event attributes, ``query_map`` keys, weight pairs), dicts with int keys
and already-composed calls nested in calls (``Sudo.sudo(call=inner)``). They travel tagged:

    bytes  -> {"__bytes__": "<hex>"}
    tuple  -> {"__tuple__": [...]}
    dict with non-str keys -> {"__dict__": [[k, v], ...]}
    SimCall -> {"__call__": {"module": ..., "function": ..., "params": {...}}}

The signing payload is the canonical JSON (sorted keys, no spaces) of the encoded call plus
signer, nonce and chain label, so client and server build byte-identical messages.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple


class SimCall(NamedTuple):
    """A composed call: iterates as ``(module, function, params)`` like the SDK's ``Call``,
    and carries ``data``/``call_hash`` so the SDK treats it as already composed."""

    module: str
    function: str
    params: dict

    @property
    def data(self) -> bytes:
        return canonical(encode(self))

    @property
    def call_hash(self) -> bytes:
        return hashlib.blake2b(self.data, digest_size=32).digest()

    # The SDK probes these aliases to recognise Sudo.sudo and fee-payer rules.
    @property
    def call_module(self) -> str:
        return self.module

    @property
    def call_function(self) -> str:
        return self.function


def as_call(call: Any) -> SimCall:
    """Turn an SDK ``Call`` (or any 3-tuple) into a ``SimCall``, composing nested calls."""
    if isinstance(call, SimCall):
        return call
    module, function, params = call
    params = {k: _compose_nested(v) for k, v in dict(params or {}).items()}
    return SimCall(str(module), str(function), params)


def _compose_nested(value: Any) -> Any:
    if isinstance(value, SimCall):
        return value
    if type(value).__name__ == "Call" and isinstance(value, tuple) and len(value) == 3:
        return as_call(value)
    if isinstance(value, list):
        return [_compose_nested(v) for v in value]
    return value


def encode(value: Any) -> Any:
    """Python value -> JSON-safe value with tags."""
    if isinstance(value, SimCall):
        return {"__call__": {"module": value.module, "function": value.function,
                             "params": encode(value.params)}}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if hasattr(value, "rao"):  # a Balance
        return int(value.rao)
    raise TypeError(f"cannot encode {type(value).__name__} for simnet")


def decode(value: Any) -> Any:
    """Tagged JSON value -> Python value (inverse of ``encode``)."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "__bytes__":
            return bytes.fromhex(inner)
        if tag == "__tuple__":
            return tuple(decode(v) for v in inner)
        if tag == "__dict__":
            return {_hashable(decode(k)): decode(v) for k, v in inner}
        if tag == "__call__":
            return SimCall(inner["module"], inner["function"], decode(inner["params"]))
    return {k: decode(v) for k, v in value.items()}


MAX_DEPTH = 32  # the deepest legitimate value (a Sudo-wrapped call's params) is about 12


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for bytes from the network: nesting deeper than ``max_depth`` raises
    ``ValueError`` (so nothing downstream recurses on it), as does any malformed JSON."""
    try:
        value = json.loads(raw)
    except RecursionError as error:
        raise ValueError(f"JSON nested deeper than {max_depth}") from error
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth}")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def canonical(value: Any) -> bytes:
    """Canonical JSON bytes of an already-encoded value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signing_payload(chain: str, call: SimCall, signer: str, nonce: int, period: Any) -> bytes:
    """The exact bytes a signer signs for one extrinsic."""
    return canonical({"chain": chain, "call": encode(call), "signer": signer,
                      "nonce": int(nonce), "era": period})


def extrinsic_hash(payload: bytes, signature: bytes) -> str:
    return "0x" + hashlib.blake2b(payload + signature, digest_size=32).hexdigest()


def block_hash(chain: str, number: int) -> str:
    """Deterministic 32-byte hash of a height; its last 4 bytes hold the height."""
    head = hashlib.blake2b(f"simnet:{chain}:{number}".encode(), digest_size=28).digest()
    return "0x" + (head + int(number).to_bytes(4, "big")).hex()


def block_number_of(hash_hex: str) -> int:
    """Inverse of ``block_hash`` (raises ``ValueError`` on a malformed hash)."""
    raw = bytes.fromhex(hash_hex[2:] if hash_hex.startswith("0x") else hash_hex)
    if len(raw) != 32:
        raise ValueError("block hash must be 32 bytes")
    return int.from_bytes(raw[28:], "big")
