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

from protocol.messages import ContributionCommitment



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


def commitment_digest(netuid: int, round_index: int, sha256: str, size_bytes: int) -> bytes:
    """What a miner signs to commit to its contribution: subnet, round and the bytes' hash and size
    (so a commitment cannot be replayed into another round or subnet)."""
    return hashlib.sha256(f"deai-commitment/1:{netuid}:{round_index}:{sha256}:{size_bytes}".encode()).digest()


def sign_commitment(keypair, netuid: int, round_index: int, body: bytes) -> ContributionCommitment:
    sha256 = hashlib.sha256(body).hexdigest()
    signature = keypair.sign(commitment_digest(netuid, round_index, sha256, len(body)))
    return ContributionCommitment(netuid=netuid, round_index=round_index, sha256=sha256, size_bytes=len(body),
                                  signature="0x" + bytes(signature).hex())


def verify_commitment(hotkey_ss58: str, commitment: ContributionCommitment) -> bool:
    """Whether `hotkey_ss58` signed this commitment."""
    digest = commitment_digest(commitment.netuid, commitment.round_index, commitment.sha256, commitment.size_bytes)
    try:
        return bool(sp_core.verify(digest, bytes.fromhex(commitment.signature[2:]), hotkey_ss58, 1))
    except (ValueError, TypeError):
        return False


def matches_commitment(body: bytes, commitment: ContributionCommitment) -> bool:
    """Whether `body` is the bytes the commitment promised."""
    return len(body) == commitment.size_bytes and hashlib.sha256(body).hexdigest() == commitment.sha256
