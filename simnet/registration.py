"""UID assignment, pruning and the registration price."""

from __future__ import annotations

from typing import Optional

from .state import ChainState, new_neuron


def clamp_burn(subnet: dict, value: int) -> int:
    return max(int(subnet["min_burn"]), min(int(subnet["max_burn"]), int(value)))


def decay_factor_q32(half_life: int) -> int:
    """Largest Q32 ``f`` with ``f ** half_life <= 1/2`` (binary search, as the chain does)."""
    if half_life <= 0:
        return 1 << 32
    lo, hi = 0, 1 << 32
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if (mid / 2**32) ** half_life <= 0.5:
            lo = mid
        else:
            hi = mid - 1
    return lo


def decay_burn(subnet: dict) -> None:
    factor = decay_factor_q32(int(subnet["burn_half_life"]))
    subnet["burn"] = clamp_burn(subnet, (int(subnet["burn"]) * factor) >> 32)
    subnet["regs_this_block"] = 0


def append_neuron(state: ChainState, subnet: dict, hotkey: str, coldkey: str, block: int) -> int:
    uid = len(subnet["hotkeys"])
    subnet["hotkeys"].append(hotkey)
    state.save_subnet(subnet)
    state.save_neuron(subnet["netuid"], uid, new_neuron(hotkey, coldkey, block))
    return uid


def immortal_hotkeys(state: ChainState, subnet: dict) -> list[str]:
    """The owner hotkey first, then the owner coldkey's other registered hotkeys, truncated."""
    owner_cold = subnet["owner_coldkey"]
    owned = [(state.neuron(subnet["netuid"], uid)["reg_block"], uid, hk)
             for uid, hk in enumerate(subnet["hotkeys"]) if state.owner_of(hk) == owner_cold]
    ordered = [subnet["owner_hotkey"]] + [hk for _, _, hk in sorted(owned)
                                          if hk != subnet["owner_hotkey"]]
    return ordered[: max(1, int(subnet["owner_immune_neuron_limit"]))]


def neuron_to_prune(state: ChainState, subnet: dict, block: int) -> Optional[int]:
    """``get_neuron_to_prune``: lowest emission among non-immune, else among immune."""
    netuid = subnet["netuid"]
    immortal = set(immortal_hotkeys(state, subnet))
    immune, mortal = [], []
    for uid, hotkey in enumerate(subnet["hotkeys"]):
        if hotkey in immortal:
            continue
        neuron = state.neuron(netuid, uid)
        key = (int(neuron["emission"]), int(neuron["reg_block"]), uid)
        (immune if block - neuron["reg_block"] < subnet["immunity_period"] else mortal).append(key)
    if len(mortal) > int(subnet["min_non_immune_uids"]) or (mortal and not immune):
        return min(mortal)[2]
    if immune:
        return min(immune)[2]
    return min(mortal)[2] if mortal else None


def register(state: ChainState, subnet: dict, hotkey: str, coldkey: str, block: int) -> int:
    """Append the hotkey, or replace the prune candidate when the subnet is full."""
    from .extrinsics import DispatchError

    if int(subnet["max_allowed_uids"]) <= 0:
        raise DispatchError("NoNeuronIdAvailable")
    if len(subnet["hotkeys"]) < int(subnet["max_allowed_uids"]):
        return append_neuron(state, subnet, hotkey, coldkey, block)
    uid = neuron_to_prune(state, subnet, block)
    if uid is None:
        raise DispatchError("NoNeuronIdAvailable")
    replace_neuron(state, subnet, uid, hotkey, coldkey, block)
    return uid


def replace_neuron(state: ChainState, subnet: dict, uid: int, hotkey: str, coldkey: str,
                   block: int) -> None:
    netuid = subnet["netuid"]
    subnet["hotkeys"][uid] = hotkey
    state.save_subnet(subnet)
    state.save_neuron(netuid, uid, new_neuron(hotkey, coldkey, block))
    state.store.delete("commits", f"{netuid}/{uid}")
    for other in range(len(subnet["hotkeys"])):  # other validators' weight on this uid -> 0
        if other == uid:
            continue
        neuron = state.neuron(netuid, other)
        if any(dest == uid for dest, _ in neuron["weights"]):
            neuron["weights"] = [(d, 0 if d == uid else w) for d, w in neuron["weights"]]
            state.save_neuron(netuid, other, neuron)
