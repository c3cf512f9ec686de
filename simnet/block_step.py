"""One block of simnet: price decay, coinbase accrual, and the epoch when due.

The epoch itself is ``simnet.yuma.epoch`` (a pure function); this module
gathers its inputs from the state, writes its outputs into the metagraph columns and pays
the drained pots out as alpha stake.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from . import coinbase, registration, weights
from .state import DELEGATE_TAKE_U16, MAX_TEMPO, SUBNET_OWNER_CUT_U16, ChainState

EpochFn = Callable[[dict, int, int], dict]


def load_epoch() -> EpochFn:
    from .yuma import epoch

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
        due = should_run_epoch(subnet, block)
        state.save_subnet(subnet)
        weights.reveal_due(state, subnet, due)  # §4.1 step 3, before the epoch
        subnet = state.subnet(netuid)
        if due:
            pending = coinbase.PendingEmission(
                server=subnet["pending_server"], validator=subnet["pending_validator"],
                root=subnet["pending_root"], owner_cut=subnet["pending_owner"])
            subnet.update(pending_server=0, pending_validator=0, pending_owner=0,
                          pending_root=0, blocks_since_last_step=0, last_epoch_block=block,
                          pending_epoch_at=0)
            subnet["epoch_index"] += 1
            state.save_subnet(subnet)
            run_epoch(state, subnet, block, pending, epoch_fn)
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
    """§5 per-block split (``coinbase.split_block_emission``) into the pending pots."""
    issuance = int(subnet["alpha_in"]) + int(subnet["alpha_out"])
    alpha_out = coinbase.block_emission_for_issuance(issuance)
    split = coinbase.split_block_emission(alpha_out, SUBNET_OWNER_CUT_U16,
                                          bool(subnet["owner_cut_enabled"]))
    subnet["pending_owner"] += split.owner_cut
    subnet["pending_server"] += split.server
    subnet["pending_validator"] += split.validator
    subnet["pending_root"] += split.root
    subnet["alpha_out"] += alpha_out


def epoch_inputs(state: ChainState, subnet: dict) -> dict[str, Any]:
    """The ``state`` dict ``yuma.epoch`` takes."""
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
        "stake_threshold": state.stake_threshold,
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


def run_epoch(state: ChainState, subnet: dict, block: int, pending: coinbase.PendingEmission,
              epoch_fn: Optional[EpochFn]) -> None:
    netuid = subnet["netuid"]
    rao_emission = pending.rao_emission
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
        neuron["stake_weight"] = int(out.get("stake_weight", inputs["stake_rao"])[uid])
        state.save_neuron(netuid, uid, neuron)
    pay_out(state, subnet, out, pending, inputs["stake_rao"])


def pay_out(state: ChainState, subnet: dict, out: dict, pending: coinbase.PendingEmission,
            stake_rao: list[int]) -> None:
    """subtensor's published rules via ``coinbase.pay_out_epoch``, applied to the stake positions."""
    netuid = subnet["netuid"]
    hotkeys = subnet["hotkeys"]
    owner_cold = subnet["owner_coldkey"]
    owner_uids = [uid for uid, hk in enumerate(hotkeys)
                  if hk == subnet["owner_hotkey"] or state.owner_of(hk) == owner_cold]
    payout = coinbase.pay_out_epoch(
        [int(x) for x in out["server_rao"]], [int(x) for x in out["validator_rao"]], pending,
        owner_hotkey_uids=owner_uids, delegate_take=[DELEGATE_TAKE_U16] * len(hotkeys),
        alpha_stake=stake_rao)
    if payout.owner_cut:
        state.add_stake(subnet["owner_hotkey"], owner_cold, netuid, payout.owner_cut)
    for uid, hotkey in enumerate(hotkeys):
        owner = state.owner_of(hotkey)
        if payout.miner_stake[uid]:
            state.add_stake(hotkey, owner, netuid, payout.miner_stake[uid])
        if payout.validator_take[uid]:
            state.add_stake(hotkey, owner, netuid, payout.validator_take[uid])
        if payout.nominator_stake[uid]:
            _share_with_nominators(state, hotkey, owner, netuid, payout.nominator_stake[uid])


def _share_with_nominators(state: ChainState, hotkey: str, owner: str, netuid: int,
                           amount: int) -> None:
    """Add to the hotkey's pool pro rata to each coldkey's stake (all to the owner if none)."""
    position = state.stake_of(hotkey, netuid)
    total = sum(position.values())
    if total <= 0:
        state.add_stake(hotkey, owner, netuid, amount)
        return
    paid = 0
    for coldkey, rao in sorted(position.items()):
        share = amount * rao // total
        state.add_stake(hotkey, coldkey, netuid, share)
        paid += share
    if amount - paid:
        state.add_stake(hotkey, owner, netuid, amount - paid)  # rounding dust to the owner
