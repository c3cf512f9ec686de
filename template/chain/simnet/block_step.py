"""One block of simnet (yuma.md §4.1): price decay, coinbase accrual, and the epoch when due.

The epoch itself is ``template.chain.simnet.yuma.epoch`` (a pure function); this module
gathers its inputs from the state, writes its outputs into the metagraph columns and pays
the drained pots out as alpha stake (yuma.md §7).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from . import registration
from .state import (BLOCK_EMISSION_RAO, DELEGATE_TAKE_U16, MAX_TEMPO, SUBNET_OWNER_CUT_U16,
                    ChainState)

log = logging.getLogger("simnet")
EpochFn = Callable[[dict, int, int], dict]


def load_epoch() -> Optional[EpochFn]:
    try:
        from .yuma import epoch
    except ImportError:  # yuma.py not written yet: epochs only schedule and pay validators
        log.warning("template.chain.simnet.yuma not importable; epochs run without Yuma")
        return None
    return epoch


def step(state: ChainState, epoch_fn: Optional[EpochFn]) -> list[int]:
    """Advance the head by one block; returns the netuids whose epoch ran."""
    state.head = state.head + 1
    block = state.head
    ran = []
    for netuid in state.netuids():
        subnet = state.subnet(netuid)
        if block > 1:
            registration.decay_burn(subnet)
        if subnet["first_emission_block"] is not None and block >= subnet["first_emission_block"]:
            accrue(subnet)
        subnet["blocks_since_last_step"] += 1
        if should_run_epoch(subnet, block):
            server, validator = subnet["pending_server"], subnet["pending_validator"]
            owner_cut = subnet["pending_owner"]
            subnet.update(pending_server=0, pending_validator=0, pending_owner=0,
                          pending_root=0, blocks_since_last_step=0, last_epoch_block=block,
                          pending_epoch_at=0)
            subnet["epoch_index"] += 1
            state.save_subnet(subnet)
            run_epoch(state, subnet, block, server, validator, owner_cut, epoch_fn)
            subnet = state.subnet(netuid)
            subnet["last_mechanism_step_block"] = block
            ran.append(netuid)
        state.save_subnet(subnet)
    return ran


def should_run_epoch(subnet: dict, block: int) -> bool:
    tempo = int(subnet["tempo"])
    if tempo == 0:
        return False
    if subnet["pending_epoch_at"] > 0 and block >= subnet["pending_epoch_at"]:
        return True
    if subnet["blocks_since_last_step"] > MAX_TEMPO:
        return True
    return block - subnet["last_epoch_block"] >= tempo


def accrue(subnet: dict) -> None:
    """§5 per-block split: owner cut, then half to miners, half to validators (no root)."""
    alpha_out = BLOCK_EMISSION_RAO
    if subnet["owner_cut_enabled"]:
        owner_cut = alpha_out * SUBNET_OWNER_CUT_U16 / 65535
        subnet["pending_owner"] += int(owner_cut)
        alpha_out -= owner_cut
    server = alpha_out / 2
    subnet["pending_server"] += int(server)
    subnet["pending_validator"] += int(alpha_out - server)
    subnet["alpha_out"] += BLOCK_EMISSION_RAO


def epoch_inputs(state: ChainState, subnet: dict) -> dict[str, Any]:
    """The ``state`` dict ``yuma.epoch`` takes (yuma.md §6.1, A.2)."""
    netuid = subnet["netuid"]
    neurons = state.neurons(netuid)
    hotkeys = subnet["hotkeys"]
    owner_uid = hotkeys.index(subnet["owner_hotkey"]) if subnet["owner_hotkey"] in hotkeys \
        else None
    commits = [state.store.get("commits", f"{netuid}/{uid}") for uid in range(len(hotkeys))]
    return {
        "n": len(hotkeys),
        "tempo": int(subnet["tempo"]),
        "owner_uid": owner_uid,
        "stake_rao": [state.total_stake(hk, netuid) for hk in hotkeys],
        "reg": [int(n["reg_block"]) for n in neurons],
        "last_update": [int(n["last_update"]) for n in neurons],
        "permit": [bool(n["permit"]) for n in neurons],
        "weights": [[(int(j), int(v)) for j, v in n["weights"]] for n in neurons],
        "bonds": [[(int(j), int(v)) for j, v in n["bonds"]] for n in neurons],
        "lms": int(subnet["last_mechanism_step_block"]),
        "kappa": int(subnet["kappa"]),
        "bonds_penalty": int(subnet["bonds_penalty"]),
        "bonds_moving_average": int(subnet["bonds_moving_average"]),
        "yuma3": bool(subnet["yuma3_enabled"]),
        "liquid_alpha": bool(subnet["liquid_alpha_enabled"]),
        "alpha_low": int(subnet["alpha_low"]),
        "alpha_high": int(subnet["alpha_high"]),
        "steepness": int(subnet["alpha_sigmoid_steepness"]),
        "max_validators": int(subnet["max_allowed_validators"]),
        "stake_threshold": int(subnet["stake_threshold"]),
        "activity_factor": int(subnet["activity_cutoff_factor"]),
        "commit_reveal": bool(subnet["commit_reveal_weights_enabled"]),
        "commit_block": [min((c["block"] for c in cs), default=None) if cs else None
                         for cs in commits],
    }


def _u16(value: Any) -> int:
    """Epoch outputs may be u16 ints or 0..1 fractions; the columns hold u16."""
    if isinstance(value, float) and value <= 1.0:
        return int(round(value * 65535))
    return int(value)


def run_epoch(state: ChainState, subnet: dict, block: int, server: int, validator: int,
              owner_cut: int, epoch_fn: Optional[EpochFn]) -> None:
    netuid = subnet["netuid"]
    rao_emission = server + validator
    inputs = epoch_inputs(state, subnet)
    n = inputs["n"]
    if epoch_fn is not None and n > 0:
        out = epoch_fn(inputs, block, rao_emission)
    else:
        out = {"server_rao": [0] * n, "validator_rao": [0] * n, "emission": [0] * n}
    for uid in range(n):
        neuron = state.neuron(netuid, uid)
        for column, key in (("incentive", "incentive"), ("dividends", "dividends"),
                            ("consensus", "consensus"), ("vtrust", "vtrust"),
                            ("rank", "rank"), ("trust", "trust")):
            if key in out:
                neuron[column] = _u16(out[key][uid])
        if "emission" in out:
            neuron["emission"] = int(out["emission"][uid])
        if "permit" in out:
            neuron["permit"] = bool(out["permit"][uid])
        if "active" in out:
            neuron["active"] = bool(out["active"][uid])
        if "bonds" in out:
            neuron["bonds"] = [(int(j), int(v)) for j, v in out["bonds"][uid]]
        neuron["stake_weight"] = inputs["stake_rao"][uid]
        state.save_neuron(netuid, uid, neuron)
    pay_out(state, subnet, out, server, validator, owner_cut, inputs["stake_rao"])


def pay_out(state: ChainState, subnet: dict, out: dict, server: int, validator: int,
            owner_cut: int, stake_rao: list[int]) -> None:
    """yuma.md §7: owner cut, miner incentive (burned for owner hotkeys), dividends."""
    netuid = subnet["netuid"]
    hotkeys = subnet["hotkeys"]
    owner_cold = subnet["owner_coldkey"]
    if owner_cut:
        state.add_stake(subnet["owner_hotkey"], owner_cold, netuid, owner_cut)
    server_rao = [int(x) for x in out.get("server_rao", [0] * len(hotkeys))]
    validator_rao = [int(x) for x in out.get("validator_rao", [0] * len(hotkeys))]
    for uid, amount in enumerate(server_rao):
        if amount <= 0:
            continue
        hotkey = hotkeys[uid]
        coldkey = state.owner_of(hotkey)
        if hotkey == subnet["owner_hotkey"] or coldkey == owner_cold:
            continue  # burned
        state.add_stake(hotkey, coldkey, netuid, amount)
    pot = validator if sum(server_rao) > 0 else validator + server
    shares = validator_rao if sum(validator_rao) > 0 else stake_rao
    total = sum(shares)
    if total <= 0 or pot <= 0:
        return
    for uid, share in enumerate(shares):
        if share <= 0:
            continue
        _pay_dividend(state, hotkeys[uid], netuid, pot * share // total)


def _pay_dividend(state: ChainState, hotkey: str, netuid: int, amount: int) -> None:
    """Take to the hotkey's owner; the rest to its nominators pro rata (owner if none)."""
    owner = state.owner_of(hotkey)
    take = amount * DELEGATE_TAKE_U16 // 65535
    position = state.stake_of(hotkey, netuid)
    total = sum(position.values())
    if total <= 0:
        state.add_stake(hotkey, owner, netuid, amount)
        return
    state.add_stake(hotkey, owner, netuid, take)
    rest = amount - take
    for coldkey, rao in position.items():
        state.add_stake(hotkey, coldkey, netuid, rest * rao // total)
