"""simnet's chain state: genesis, new-subnet defaults, and typed accessors over the store.

Everything is a JSON-able dict so ``store.Store`` can persist it row by row:

* ``meta``: ``head`` (block height), ``chain`` (label mixed into hashes and signatures),
  ``genesis_ms``, ``block_ms``, ``sudo`` (ss58 of the sudo key).
* ``accounts[ss58]``: ``{"free": rao, "nonce": int}``.
* ``owners[hotkey]``: the coldkey that owns the hotkey (``Owner`` storage).
* ``subnets[netuid]``: hyperparameters, scheduler, pending pots, ``hotkeys`` (uid -> hotkey).
* ``neurons["netuid/uid"]``: per-UID columns (weights, bonds, epoch outputs, axon).
* ``stake["hotkey/netuid"]``: ``{coldkey: alpha rao}``.
* ``commitments["netuid/hotkey"]``, ``receipts[hash]``, ``events[block]``, ``commits[...]``.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from bittensor.sp_core import Keypair

from .store import Store

RAO = 1_000_000_000
ZERO_ACCOUNT = "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM"
DEV_ACCOUNTS = ("//Alice", "//Bob", "//Charlie", "//Dave", "//Eve", "//Ferdie")
# //Alice's secret seed (Substrate's well-known dev key): btcli has no --uri, so a person
# takes the sudo account into btcli with `btcli wallet regen-coldkey --seed <this>`.
ALICE_SEED = "0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a"
GENESIS_FREE_RAO = 1_000_000 * RAO
EXISTENTIAL_DEPOSIT = 500
NETWORK_LOCK_RAO = 100 * RAO          # price of register_network (SubnetLocked)
SUBNET_OWNER_CUT_U16 = 11796          # ≈ 0.18 of alpha_out
DELEGATE_TAKE_U16 = 11796             # validator take on dividends
MAX_TEMPO = 50_400
HISTORY_BLOCKS = 2_000                # receipts/events older than this are dropped

# New-subnet values.
NEW_SUBNET_DEFAULTS: dict[str, Any] = {
    "tempo": 10,
    "kappa": 32767,
    "rho": 10,
    "immunity_period": 5000,
    "min_allowed_weights": 1,
    "max_weights_limit": 65535,
    "weights_set_rate_limit": 100,
    "weights_version_key": 0,
    "activity_cutoff": 5000,
    "activity_cutoff_factor": 13_889,
    "max_allowed_uids": 256,
    "min_allowed_uids": 1,             # sim: lets tests shrink a subnet to exercise pruning
    "max_allowed_validators": 64,
    "bonds_moving_average": 900_000,
    "bonds_penalty": 65535,
    "bonds_reset_enabled": False,
    "yuma3_enabled": True,
    "liquid_alpha_enabled": False,
    "alpha_low": 45875,
    "alpha_high": 58982,
    "alpha_sigmoid_steepness": 1000,
    "commit_reveal_weights_enabled": True,
    "commit_reveal_period": 1,
    "burn": 1 * RAO,
    "min_burn": 500_000,
    "max_burn": 100 * RAO,
    "burn_half_life": 360,
    "burn_increase_mult": 1.26,
    "difficulty": 10_000_000,
    "min_difficulty": 10_000_000,
    "max_difficulty": 2**64 // 4,
    "max_regs_per_block": 1,
    "target_regs_per_interval": 2,
    "adjustment_interval": 100,
    "adjustment_alpha": 0,
    "registration_allowed": True,
    "pow_registration_allowed": False,
    "serving_rate_limit": 50,
    "stake_threshold": 0,
    "owner_cut_enabled": True,
    "owner_cut_auto_lock_enabled": False,  # stored and settable; simnet has no stake locks
    "transfers_enabled": True,
    "owner_immune_neuron_limit": 1,
    "min_non_immune_uids": 10,
    "epoch_consensus": "Yuma",
}


def dev_address(uri: str) -> str:
    return Keypair.create_from_uri(uri).ss58_address


class ChainState:
    """Accessors over the store; no chain rules live here."""

    def __init__(self, store: Store, block_time: float = 0.25):
        self.store = store
        if self.store.get("meta", "head") is None:
            self._genesis(block_time)

    # -- genesis -------------------------------------------------------------------------

    def _genesis(self, block_time: float) -> None:
        put = self.store.put
        put("meta", "head", 0)
        put("meta", "chain", "simnet")
        put("meta", "genesis_ms", int(time.time() * 1000))
        put("meta", "block_ms", int(round(block_time * 1000)))
        put("meta", "sudo", dev_address("//Alice"))
        for uri in DEV_ACCOUNTS:
            put("accounts", dev_address(uri), {"free": GENESIS_FREE_RAO, "nonce": 0})
        self.store.flush()

    # -- meta ------------------------------------------------------------------------------

    @property
    def head(self) -> int:
        return int(self.store.get("meta", "head"))

    @head.setter
    def head(self, value: int) -> None:
        self.store.put("meta", "head", int(value))

    @property
    def chain(self) -> str:
        return self.store.get("meta", "chain")

    @property
    def sudo_key(self) -> str:
        return self.store.get("meta", "sudo")

    @property
    def block_ms(self) -> int:
        return int(self.store.get("meta", "block_ms"))

    @property
    def stake_threshold(self) -> int:
        """``StakeThreshold`` (global, ``sudo_set_stake_threshold``)."""
        return int(self.store.get("meta", "stake_threshold") or 0)

    def timestamp_ms(self, block: Optional[int] = None) -> int:
        block = self.head if block is None else block
        return int(self.store.get("meta", "genesis_ms")) + block * self.block_ms

    # -- accounts ----------------------------------------------------------------------------

    def account(self, ss58: str) -> dict:
        return self.store.get("accounts", ss58) or {"free": 0, "nonce": 0}

    def set_account(self, ss58: str, account: dict) -> None:
        self.store.put("accounts", ss58, account)

    def add_free(self, ss58: str, delta: int) -> None:
        if not delta:
            return  # a zero move creates no row
        account = dict(self.account(ss58))
        account["free"] = int(account["free"]) + int(delta)
        self.set_account(ss58, account)

    def keeps_account(self, ss58: str) -> bool:
        """Whether a key needs an ``accounts`` row (its balance and nonce): it holds a balance
        or is a registered hotkey (hotkeys sign weights and axons without funds)."""
        return int(self.account(ss58)["free"]) > 0 or self.owner_of(ss58) is not None

    def owner_of(self, hotkey: str) -> Optional[str]:
        return self.store.get("owners", hotkey)

    def set_owner(self, hotkey: str, coldkey: str) -> None:
        self.store.put("owners", hotkey, coldkey)

    # -- subnets -----------------------------------------------------------------------------

    def subnet(self, netuid: int) -> Optional[dict]:
        return self.store.get("subnets", str(int(netuid)))

    def netuids(self) -> list[int]:
        return sorted(int(k) for k in self.store.data["subnets"])

    def save_subnet(self, subnet: dict) -> None:
        self.store.put("subnets", str(subnet["netuid"]), subnet)

    def uid_of(self, netuid: int, hotkey: str) -> Optional[int]:
        subnet = self.subnet(netuid)
        if subnet is None:
            return None
        try:
            return subnet["hotkeys"].index(hotkey)
        except ValueError:
            return None

    def neuron(self, netuid: int, uid: int) -> dict:
        return self.store.get("neurons", f"{netuid}/{uid}")

    def neurons(self, netuid: int) -> list[dict]:
        subnet = self.subnet(netuid)
        return [self.neuron(netuid, uid) for uid in range(len(subnet["hotkeys"]))] if subnet else []

    def save_neuron(self, netuid: int, uid: int, neuron: dict) -> None:
        self.store.put("neurons", f"{netuid}/{uid}", neuron)

    # -- stake -------------------------------------------------------------------------------

    def stake_of(self, hotkey: str, netuid: int) -> dict[str, int]:
        return dict(self.store.get("stake", f"{hotkey}/{netuid}") or {})

    def total_stake(self, hotkey: str, netuid: int) -> int:
        return sum(self.stake_of(hotkey, netuid).values())

    def add_stake(self, hotkey: str, coldkey: str, netuid: int, rao: int) -> None:
        position = self.stake_of(hotkey, netuid)
        position[coldkey] = int(position.get(coldkey, 0)) + int(rao)
        if position[coldkey] <= 0:
            position.pop(coldkey)
        if position:
            self.store.put("stake", f"{hotkey}/{netuid}", position)
        else:
            self.store.delete("stake", f"{hotkey}/{netuid}")

    # -- commitments -------------------------------------------------------------------------

    def commitment(self, netuid: int, hotkey: str) -> Optional[dict]:
        return self.store.get("commitments", f"{netuid}/{hotkey}")

    def commitments(self, netuid: int) -> list[tuple[str, dict]]:
        prefix = f"{netuid}/"
        return [(k[len(prefix):], v) for k, v in self.store.data["commitments"].items()
                if k.startswith(prefix)]

    def set_commitment(self, netuid: int, hotkey: str, value: dict) -> None:
        self.store.put("commitments", f"{netuid}/{hotkey}", value)


def new_subnet(netuid: int, owner_coldkey: str, owner_hotkey: str, block: int,
               lock_rao: int) -> dict:
    subnet = dict(NEW_SUBNET_DEFAULTS)
    tempo = subnet["tempo"]
    subnet.update(
        netuid=netuid,
        name=f"simnet-{netuid}",
        symbol="α",
        owner_coldkey=owner_coldkey,
        owner_hotkey=owner_hotkey,
        registered_at=block,
        locked_rao=lock_rao,
        first_emission_block=None,
        subtoken_enabled=False,
        hotkeys=[],
        last_epoch_block=block - (netuid % tempo),
        blocks_since_last_step=0,
        pending_epoch_at=0,
        epoch_index=0,
        last_mechanism_step_block=0,
        pending_owner=0,
        pending_server=0,
        pending_validator=0,
        pending_root=0,
        regs_this_block=0,
        tao_in=lock_rao,
        alpha_in=lock_rao,
        alpha_out=0,
    )
    return subnet


def new_neuron(hotkey: str, coldkey: str, block: int) -> dict:
    return {
        "hotkey": hotkey,
        "coldkey": coldkey,
        "reg_block": block,
        "last_update": block,
        "active": True,
        "permit": False,
        "weights": [],
        "bonds": [],
        "rank": 0,
        "trust": 0,
        "consensus": 0,
        "incentive": 0,
        "dividends": 0,
        "vtrust": 0,
        "emission": 0,
        "stake_weight": 0,
        "pruning_score": 0,
        "axon": None,
    }
