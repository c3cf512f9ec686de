"""The simnet node: one lock around the state, the block clock, and extrinsic inclusion.

Extrinsics are included in the current head block as soon as they arrive (index 1, 2, ...
in that block) and the head is final at once, so a ``submit`` never waits for the clock.
This is what lets tests run on a manual clock.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any, Optional

from bittensor import sp_core
from bittensor.result import _DESCRIPTIONS

from . import block_step, weights
from .codec import SimCall, block_hash, decode, extrinsic_hash, loads
from .extrinsics import DispatchError, dispatch
from .state import HISTORY_BLOCKS, ChainState
from .store import Store

log = logging.getLogger("simnet")


class RequestError(Exception):
    """A malformed request (the HTTP layer answers 400)."""


class Node:
    def __init__(self, db_path: str, block_time: float = 0.25, manual_clock: bool = False,
                 admin_freeze_window: Optional[int] = None):
        self.store = Store(db_path)
        self.state = ChainState(self.store, block_time)
        if admin_freeze_window is not None:  # chain-spec override (subtensor's genesis: 10)
            self.store.put("meta", "admin_freeze_window", int(admin_freeze_window))
            self.store.flush()
        self.block_time = block_time
        self.manual_clock = manual_clock
        self.lock = threading.RLock()
        self.epoch_fn = block_step.load_epoch()
        self._stop = threading.Event()
        self._clock: Optional[threading.Thread] = None
        self._next_index: dict[int, int] = {}

    # -- clock ----------------------------------------------------------------------------

    def start(self) -> None:
        if not self.manual_clock:
            self._clock = threading.Thread(target=self._run_clock, name="simnet-clock",
                                           daemon=True)
            self._clock.start()

    def stop(self) -> None:
        self._stop.set()
        if self._clock is not None:
            self._clock.join(timeout=5)
        with self.lock:
            self.store.close()

    def _run_clock(self) -> None:
        next_at = time.monotonic() + self.block_time
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.advance(1)
            next_at += self.block_time
            if next_at < time.monotonic() - 10 * self.block_time:  # fell far behind: resync
                next_at = time.monotonic() + self.block_time

    def advance(self, blocks: int) -> int:
        with self.lock:
            for _ in range(blocks):
                block_step.step(self.state, self.epoch_fn)
                self._forget_old(self.state.head)
            self.store.flush()
            return self.state.head

    def _forget_old(self, head: int) -> None:
        old = head - HISTORY_BLOCKS
        if old > 0 and str(old) in self.store.data["events"]:
            for record in self.store.get("events", str(old)) or []:
                self.store.delete("receipts", record.get("hash", ""))
            self.store.delete("events", str(old))

    # -- extrinsics -------------------------------------------------------------------------

    def verify(self, envelope: dict) -> tuple[SimCall, str, int, str]:
        """Check an envelope's shape and signature; returns (call, signer, nonce, hash)."""
        try:
            payload = envelope["payload"].encode()
            signature = bytes.fromhex(envelope["signature"])
            crypto_type = int(envelope.get("crypto_type", 1))
            body = loads(payload)
            signer, nonce = body["signer"], int(body["nonce"])
            call = decode(body["call"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise RequestError(f"malformed extrinsic: {error}") from error
        if body.get("chain") != self.state.chain:
            raise RequestError("extrinsic signed for another chain")
        if not isinstance(call, SimCall):
            raise RequestError("extrinsic carries no call")
        try:
            valid = sp_core.verify(payload, signature, signer, crypto_type)
        except Exception:  # noqa: BLE001 - a bad ss58 or key type is a bad signature
            valid = False
        if not valid:
            raise RequestError("Invalid Transaction: bad signature")
        return call, signer, nonce, extrinsic_hash(payload, signature)

    def submit(self, envelope: dict, inner: Optional[dict] = None) -> dict:
        """Include a signed extrinsic (and the shielded inner one it carries) in the head."""
        call, signer, nonce, xt_hash = self.verify(envelope)
        inner_parts = self.verify(inner) if inner is not None else None
        with self.lock:
            expected = int(self.state.account(signer)["nonce"])
            if nonce != expected:
                return {"pool_error": "Transaction is outdated" if nonce < expected
                        else "Transaction would exhaust the block limits (future nonce)"}
            receipt = self._apply(call, signer, xt_hash)
            if inner_parts is not None:
                i_call, i_signer, i_nonce, i_hash = inner_parts
                if i_signer == signer and i_nonce == nonce + 1:
                    receipt["inner"] = self._apply(i_call, i_signer, i_hash)
            self.store.flush()
            return receipt

    def _apply(self, call: SimCall, signer: str, xt_hash: str) -> dict:
        state = self.state
        block = state.head
        index = self._next_index.get(block, 1)
        self._next_index = {block: index + 1}
        had_account = self.store.get("accounts", signer) is not None
        account = dict(state.account(signer))
        account["nonce"] = int(account["nonce"]) + 1
        state.set_account(signer, account)
        snapshot = _snapshot(self.store)
        try:
            events = dispatch(state, call, signer)
            error = None
        except DispatchError as failure:
            _restore(self.store, snapshot)
            events, error = [], {"name": failure.name, "module": failure.module,
                                 "docs": _DESCRIPTIONS.get(failure.name, failure.name)}
        if not had_account and not state.keeps_account(signer):
            # An unfunded key that is no registered hotkey gets no row (so no stored nonce):
            # otherwise every fresh key could add a row for nothing.
            self.store.delete("accounts", signer)
        records = [_record(index, module, event, attrs) for module, event, attrs in events]
        records.append(_record(index, "TransactionPayment", "TransactionFeePaid",
                               {"who": signer, "actual_fee": 0, "tip": 0}))
        records.append(_record(index, "System", "ExtrinsicFailed" if error else
                               "ExtrinsicSuccess", {"dispatch_info": {}}))
        receipt = {"hash": xt_hash, "block": block, "index": index,
                   "block_hash": block_hash(state.chain, block),
                   "success": error is None, "error": error, "events": records}
        self.store.put("receipts", xt_hash, receipt)
        block_events = list(self.store.get("events", str(block)) or [])
        block_events.extend(dict(r, hash=xt_hash) for r in records)
        self.store.put("events", str(block), block_events)
        if error:
            log.info("block %d: %s.%s from %s failed: %s", block, call.module, call.function,
                     signer[:8], error["name"])
        else:
            log.info("block %d: %s.%s from %s", block, call.module, call.function, signer[:8])
        return receipt

    # -- test hooks -------------------------------------------------------------------------

    def reveal_weights(self, netuid: int, hotkey: str, dests: list, values: list,
                       version_key: int) -> dict:
        with self.lock:
            snapshot = _snapshot(self.store)
            try:
                info = weights.provide_plaintext(self.state, netuid, hotkey, dests, values,
                                                 version_key)
            except DispatchError as failure:
                _restore(self.store, snapshot)
                return {"success": False, "error": failure.name}
            self.store.flush()
            return {"success": True, "head": self.state.head, **info}


def _record(index: int, module: str, event: str, attributes: Any) -> dict:
    inner = {"event_index": "0000", "module_id": module, "event_id": event,
             "attributes": attributes}
    return {"phase": "ApplyExtrinsic", "extrinsic_idx": index, "event": inner,
            "event_index": 0, "module_id": module, "event_id": event,
            "attributes": attributes, "topics": []}


def _snapshot(store: Store) -> dict:
    """A failed call must leave no trace: copy the state (small) before dispatching."""
    return {ns: copy.deepcopy(rows) for ns, rows in store.data.items()
            if ns not in ("receipts", "events")}


def _restore(store: Store, saved: dict) -> None:
    for ns, rows in saved.items():
        for key in set(store.data[ns]) - set(rows):
            store.delete(ns, key)
        for key, value in rows.items():
            if store.data[ns].get(key) != value:
                store.put(ns, key, value)
