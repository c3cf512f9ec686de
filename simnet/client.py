"""``SimSubstrate``: the SDK's ``Substrate`` protocol, forwarded to a simnet server over HTTP.

Use it through the real SDK: ``bt.Client("ws://localsim.invalid", substrate=SimSubstrate(url))``.
Calls are composed locally (``codec.SimCall``) and signed here, in the neuron's process:
keys never leave it. The server verifies every signature with ``sp_core.verify``.

HTTP clients are pooled per event loop: the SDK's ``SyncClient`` runs its own loop in a
thread, so no ``httpx.AsyncClient`` is shared between loops.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import weakref
from typing import Any, AsyncIterator, Optional

import httpx
from bittensor.balance import Balance
from bittensor.result import ChainError, ExtrinsicResult

from .codec import SimCall, as_call, decode, encode, extrinsic_hash, signing_payload

SIM_LABEL = "ws://localsim.invalid"  # the SDK's token-symbol cache key for simnet, never a real node's

CHAIN_LABEL = "simnet"

DEFAULT_URL = "http://127.0.0.1:9946"
URL_ENV = "SIMNET_URL"  # where the simnet CLI (and `simnet btcli`) look without --url


def simnet_url(explicit: Optional[str] = None) -> str:
    """The node a command talks to: ``--url``, else ``$SIMNET_URL``, else the default port."""
    return (explicit or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


class SimSubstrate:
    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token_symbols: dict[int, str] = {}
        self._pending_inner: dict[tuple[str, int], dict] = {}
        self._block_time: Optional[float] = None
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        symbol = self.token_symbols.get(netuid) if netuid else None
        return Balance(int(rao), netuid, symbol)

    # -- transport -------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """One pooled client per event loop (building one costs ~80 ms of TLS setup)."""
        loop = asyncio.get_running_loop()
        http = self._clients.get(loop)
        if http is None:
            http = httpx.AsyncClient(timeout=self.timeout,
                                     verify=not self.url.startswith("http://"))
            self._clients[loop] = http
        return http

    async def _rpc(self, rpc: str, /, **params: Any) -> Any:
        body = {"method": rpc, "params": encode(params)}
        try:
            response = await self._http().post(f"{self.url}/rpc", json=body)
        except httpx.HTTPError as error:
            raise ChainError(f"simnet at {self.url} unreachable: {error}") from error
        try:
            payload = response.json()
        except ValueError as error:
            raise ChainError(f"simnet answered non-JSON ({response.status_code})") from error
        if response.status_code != 200 or "error" in payload:
            error = payload.get("error") or {}
            raise ChainError(f"simnet: {error.get('message', response.status_code)}",
                             error.get("name"))
        return decode(payload.get("result"))

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._rpc("block_number")

    async def close(self) -> None:
        http = self._clients.pop(asyncio.get_running_loop(), None)
        if http is not None:
            await http.aclose()

    # -- reads -----------------------------------------------------------------------------

    async def block_number(self) -> int:
        return int(await self._rpc("block_number"))

    async def finalized_block_number(self) -> int:
        return int(await self._rpc("finalized_block_number"))

    async def block_hash(self, block: Optional[int] = None) -> str:
        return await self._rpc("block_hash", block=block)

    async def block_time(self) -> float:
        if self._block_time is None:
            self._block_time = float(await self._rpc("block_time"))
        return self._block_time

    async def spec_version(self) -> int:
        return int(await self._rpc("spec_version"))

    async def get_block(self, block_number: Optional[int] = None,
                        block_hash: Optional[str] = None) -> Optional[dict]:
        return await self._rpc("get_block", block_number=block_number, block_hash=block_hash)

    async def query(self, module: str, storage_function: str, params: Optional[list] = None,
                    block_hash: Optional[str] = None) -> Any:
        return await self._rpc("query", module=module, item=storage_function,
                               params=list(params) if params is not None else None)

    async def query_map(self, module: str, storage_function: str, params: Optional[list] = None,
                        block_hash: Optional[str] = None) -> list[tuple[Any, Any]]:
        rows = await self._rpc("query_map", module=module, item=storage_function,
                               params=list(params) if params is not None else None)
        return [tuple(row) for row in rows]

    async def query_batch(self, module: str, storage_function: str, param_sets: list[list],
                          block_hash: Optional[str] = None) -> list[Any]:
        return await self._rpc("query_batch", module=module, item=storage_function,
                               param_sets=[list(p) for p in param_sets])

    async def map_has_entries(self, module: str, storage_function: str, params: list,
                              block_hash: Optional[str] = None) -> bool:
        return bool(await self.query_map(module, storage_function, params))

    async def runtime_call(self, api: str, method: str, params: Any,
                           block_hash: Optional[str] = None) -> Any:
        params = dict(params) if isinstance(params, dict) else list(params or [])
        return await self._rpc("runtime_call", api=api, method=method, params=params)

    async def constant(self, module: str, name: str) -> Any:
        return await self._rpc("constant", module=module, name=name)

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        raise ChainError("simnet has no SCALE metadata: decode_scale is not supported")

    async def blocks(self, *, finalized: bool = False) -> AsyncIterator[dict]:
        """Headers of new blocks, forever (polls the head at half the block time)."""
        last = await self.block_number()
        interval = max(0.02, min(0.5, (await self.block_time()) / 2))
        while True:
            head = await self.block_number()
            while last < head:
                last += 1
                yield {"header": {"number": last, "hash": await self.block_hash(last),
                                  "parentHash": await self.block_hash(last - 1)}}
            await asyncio.sleep(interval)

    async def events(self, block_hash: Optional[str] = None) -> list[dict]:
        return await self._rpc("events", block_hash=block_hash)

    # -- calls and fees ----------------------------------------------------------------------

    async def compose(self, call: Any) -> SimCall:
        try:
            return as_call(call)
        except (TypeError, ValueError) as error:
            raise ChainError(f"cannot compose call {call!r}: {error}") from error

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        return Balance.from_rao(0)

    async def estimate_weight(self, call: Any, keypair: Any) -> dict:
        return {"ref_time": 0, "proof_size": 0}

    async def account_next_index(self, address: str) -> int:
        return int(await self._rpc("account_next_index", address=address))

    # -- signing -------------------------------------------------------------------------------

    async def _envelope(self, call: Any, keypair: Any, nonce: int, period: Any) -> dict:
        call = as_call(call)
        payload = signing_payload(CHAIN_LABEL, call, keypair.ss58_address, nonce, period)
        try:
            signature = keypair.sign(payload)
            if inspect.isawaitable(signature):
                signature = await signature
        except ChainError:
            raise
        except Exception as error:  # noqa: BLE001 - the SDK contract: signing errors -> ChainError
            raise ChainError(str(error)) from error
        if isinstance(signature, str):
            signature = bytes.fromhex(signature.removeprefix("0x"))
        return {"payload": payload.decode(), "signature": bytes(signature).hex(),
                "crypto_type": int(getattr(keypair, "crypto_type", 1))}

    async def mev_next_key(self) -> Optional[bytes]:
        """``MevShield.NextKey`` from storage, decoded as the SDK's RPC backend does."""
        value = await self.query("MevShield", "NextKey")
        if not value:
            return None
        return bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)

    async def sign_extrinsic(self, call: Any, keypair: Any, *, nonce: int,
                             period: int) -> tuple[bytes, str]:
        """Sign without submitting; kept so the shielded carrier can deliver it."""
        envelope = await self._envelope(call, keypair, nonce, period)
        payload, signature = envelope["payload"].encode(), bytes.fromhex(envelope["signature"])
        self._pending_inner[(keypair.ss58_address, int(nonce))] = envelope
        return payload + signature, extrinsic_hash(payload, signature)

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> Optional[ExtrinsicResult]:
        receipt = await self._rpc("find_extrinsic", hash=extrinsic_hash, block_hash=block_hash)
        return _result(receipt) if receipt else None

    async def submit(self, call: Any, keypair: Any, *, nonce: Optional[int] = None,
                     period: Optional[int] = 128, wait_for_inclusion: bool = True,
                     wait_for_finalization: bool = True) -> ExtrinsicResult:
        call = as_call(call)
        if nonce is None:
            nonce = await self.account_next_index(keypair.ss58_address)
        envelope = await self._envelope(call, keypair, nonce, period)
        inner = None
        if (call.module, call.function) == ("MevShield", "submit_encrypted"):
            inner = self._pending_inner.pop((keypair.ss58_address, nonce + 1), None)
        try:
            receipt = await self._rpc("submit", envelope=envelope, inner=inner)
        except ChainError as error:
            return ExtrinsicResult(success=False, message=error.message, error=error)
        if "pool_error" in receipt:
            error = ChainError(receipt["pool_error"])
            return ExtrinsicResult(success=False, message=receipt["pool_error"], error=error)
        if not (wait_for_inclusion or wait_for_finalization):
            return ExtrinsicResult(success=True, message="Submitted (not waiting).")
        return _result(receipt)

    # -- offline signing and multisig: not modelled ----------------------------------------------

    async def prepare(self, call: Any, **kwargs: Any) -> Any:
        raise ChainError("simnet does not support offline signing (prepare)")

    async def submit_signature(self, unsigned: Any, signature: Any, **kwargs: Any) -> Any:
        raise ChainError("simnet does not support offline signing (submit_signature)")

    async def submit_signed(self, extrinsic: Any, keypair: Any, **kwargs: Any) -> Any:
        raise ChainError("simnet does not support pre-signed extrinsics")

    def multisig_account(self, signatories: list[str], threshold: int) -> Any:
        from bittensor._transport.codec import multisig_account

        return multisig_account(signatories, threshold)

    async def submit_multisig(self, *args: Any, **kwargs: Any) -> Any:
        raise ChainError("simnet does not support multisig")


def _result(receipt: dict) -> ExtrinsicResult:
    """A server receipt -> the ``ExtrinsicResult`` the SDK's RPC backend would return."""
    common = {"block_hash": receipt["block_hash"],
              "extrinsic_id": f"{receipt['block']}-{receipt['index']:04d}",
              "fee": Balance.from_rao(0), "events": receipt["events"]}
    error = receipt.get("error")
    if error:
        chain_error = ChainError(error["docs"], error["name"])
        return ExtrinsicResult(success=False, message=error["docs"], error=chain_error, **common)
    return ExtrinsicResult(success=True, message="Success", **common)
