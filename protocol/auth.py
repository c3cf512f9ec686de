"""btauth/1 request signing (client side) and verification (server side).

`bt.http_auth` proves who sent a request, to whom, with exactly which body, and when. It does
not know the subnet: `RequestVerifier` adds the app's rule (who may call) through a callback
that answers with a refusal reason or None.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import bittensor as bt
from bittensor import sp_core

HEADER_CONTRIBUTION_SIGNATURE = "X-Deai-Contribution-Signature"


def sign_request(signer, *, method: str, path: str, body: bytes, receiver_ss58: str) -> dict[str, str]:
    """Headers for one request. Sign again for every retry: each carries a fresh nonce."""
    return bt.http_auth.sign(signer, method=method, path=path, body=body, receiver_ss58=receiver_ss58)


@dataclass(frozen=True)
class Rejection(Exception):
    status: int
    reason: str


CallerPolicy = Callable[[str], str | None]
"""Given a caller's hotkey, return None to admit it or a reason to refuse it (403)."""


class RequestVerifier:
    """Verifies btauth/1 headers and applies the caller policy. Raises `Rejection`."""

    def __init__(self, self_hotkey_ss58: str, policy: CallerPolicy, max_age: float = 10.0,
                 allowed_skew: float = 2.0):
        self.self_hotkey_ss58 = self_hotkey_ss58
        self.policy = policy
        self.max_age = max_age
        self.allowed_skew = allowed_skew
        self.nonces = bt.http_auth.InMemoryNonceStore(retention=max_age + allowed_skew + 5.0)

    def verify(self, headers: Mapping[str, str], body: bytes, *, method: str, path: str) -> str:
        try:
            caller = bt.http_auth.verify(
                headers, body, method=method, path=path, self_hotkey_ss58=self.self_hotkey_ss58,
                max_age=self.max_age, allowed_skew=self.allowed_skew, nonce_store=self.nonces,
            )
        except bt.http_auth.WrongReceiver as exc:
            raise Rejection(403, f"wrong receiver: {exc}") from exc
        except bt.http_auth.StaleRequest as exc:
            raise Rejection(401, f"stale request: {exc}") from exc
        except bt.http_auth.ReplayedRequest as exc:
            raise Rejection(401, f"replayed request: {exc}") from exc
        except bt.http_auth.BadSignature as exc:
            raise Rejection(401, f"bad signature: {exc}") from exc
        except bt.http_auth.AuthError as exc:
            raise Rejection(401, f"malformed auth headers: {exc}") from exc
        refusal = self.policy(caller.hotkey_ss58)
        if refusal is not None:
            raise Rejection(403, refusal)
        return caller.hotkey_ss58


def sign_contribution(keypair, body: bytes) -> str:
    """A miner's signature over the sha256 of its contribution bytes: binds the update to its
    hotkey so a round record can prove who sent what."""
    digest = hashlib.sha256(body).digest()
    signature = keypair.sign(digest)
    return "0x" + bytes(signature).hex()


def verify_contribution(hotkey_ss58: str, body: bytes, signature_hex: str) -> bool:
    try:
        signature = bytes.fromhex(signature_hex.removeprefix("0x"))
        return bool(sp_core.verify(hashlib.sha256(body).digest(), signature, hotkey_ss58, 1))
    except (ValueError, TypeError):
        return False
