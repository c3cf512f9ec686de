"""set_weights and timelocked commits (yuma.md §9.1, §9.3), in the chain's check order."""

from __future__ import annotations

from typing import Any

from .extrinsics import DispatchError, Events
from .state import ChainState


def _u16_list(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535 for v in value):
        raise DispatchError("InvalidValue")
    return value


def max_upscale(values: list[int]) -> list[int]:
    """§9.1 step 13: scale so the largest value becomes 65535 (round half away from zero)."""
    top = max(values, default=0)
    if top == 0:
        return list(values)
    return [int((v * 65535 * 2 + top) // (2 * top)) for v in values]


def check_and_store(state: ChainState, netuid: int, hotkey: str, dests: Any, values: Any,
                    version_key: Any, *, rate_limit: bool) -> int:
    """Run §9.1 checks 1-15 and store the row; returns the caller's uid."""
    if netuid == 0:
        raise DispatchError("CanNotSetRootNetworkWeights")
    dests, values = _u16_list(dests), _u16_list(values)
    if len(dests) != len(values):
        raise DispatchError("WeightVecNotEqualSize")
    subnet = state.subnet(netuid)
    if subnet is None:
        raise DispatchError("MechanismDoesNotExist")
    n = len(subnet["hotkeys"])
    if len(dests) > n:
        raise DispatchError("UidsLengthExceedUidsInSubNet")
    uid = state.uid_of(netuid, hotkey)
    if uid is None:
        raise DispatchError("HotKeyNotRegisteredInSubNet")
    is_owner = hotkey == subnet["owner_hotkey"]
    if not is_owner and state.total_stake(hotkey, netuid) < int(subnet["stake_threshold"]):
        raise DispatchError("NotEnoughStakeToSetWeights")
    required = int(subnet["weights_version_key"])
    if not isinstance(version_key, int) or (required != 0 and version_key < required):
        raise DispatchError("IncorrectWeightVersionKey")
    neuron = state.neuron(netuid, uid)
    if rate_limit and neuron["last_update"] != 0 and \
            state.head - neuron["last_update"] < int(subnet["weights_set_rate_limit"]):
        raise DispatchError("SettingWeightsTooFast")
    self_weight = len(dests) == 1 and dests[0] == uid
    if not (self_weight or is_owner or neuron["permit"]):
        raise DispatchError("NeuronNoValidatorPermit")
    if len(set(dests)) != len(dests):
        raise DispatchError("DuplicateUids")
    if any(d >= n for d in dests):
        raise DispatchError("UidVecContainInvalidOne")
    if not self_weight and len(values) < min(int(subnet["min_allowed_weights"]), n):
        raise DispatchError("WeightVecLengthIsLow")
    upscaled = max_upscale(values)
    limit = int(subnet["max_weights_limit"])
    total = sum(upscaled)
    if not self_weight and limit != 65535 and total > 0 and \
            max(upscaled) * 65535 > limit * total:
        raise DispatchError("MaxWeightExceeded")
    neuron["weights"] = [(d, v) for d, v in zip(dests, upscaled)]
    state.save_neuron(netuid, uid, neuron)
    return uid


def set_weights(state: ChainState, origin: str, p: dict) -> Events:
    netuid = p.get("netuid")
    if not isinstance(netuid, int) or isinstance(netuid, bool):
        raise DispatchError("SubnetNotExists")
    if int(p.get("mecid") or 0) != 0:
        raise DispatchError("MechanismDoesNotExist")
    subnet = state.subnet(netuid)
    if subnet is not None and subnet["commit_reveal_weights_enabled"]:
        raise DispatchError("CommitRevealEnabled")
    uid = check_and_store(state, netuid, origin, p.get("dests"), p.get("weights"),
                          p.get("version_key"), rate_limit=True)
    neuron = state.neuron(netuid, uid)
    neuron["last_update"] = state.head
    state.save_neuron(netuid, uid, neuron)
    return [("SubtensorModule", "WeightsSet", (netuid, uid))]


def commit_timelocked(state: ChainState, origin: str, p: dict) -> Events:
    """Store an opaque drand-timelocked commit; ``POST /admin/reveal_weights`` applies it."""
    netuid = p.get("netuid")
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    if subnet is None:
        raise DispatchError("SubnetNotExists")
    if not subnet["commit_reveal_weights_enabled"]:
        raise DispatchError("CommitRevealDisabled")
    if p.get("commit_reveal_version", 4) != 4:
        raise DispatchError("IncorrectCommitRevealVersion")
    commit = p.get("commit")
    if not isinstance(commit, (bytes, str)) or len(commit) > 5000:
        raise DispatchError("CommitPayloadTooLarge")
    uid = state.uid_of(netuid, origin)
    if uid is None:
        raise DispatchError("HotKeyNotRegisteredInSubNet")
    neuron = state.neuron(netuid, uid)
    if neuron["last_update"] != 0 and \
            state.head - neuron["last_update"] < int(subnet["weights_set_rate_limit"]):
        raise DispatchError("CommittingWeightsTooFast")
    key = f"{netuid}/{uid}"
    pending = list(state.store.get("commits", key) or [])
    pending.append({"hotkey": origin, "block": state.head, "epoch": subnet["epoch_index"],
                    "reveal_round": p.get("reveal_round"), "size": len(commit)})
    state.store.put("commits", key, pending[-10:])
    neuron["last_update"] = state.head
    state.save_neuron(netuid, uid, neuron)
    return [("SubtensorModule", "TimelockedWeightsCommitted",
             (origin, netuid, p.get("reveal_round")))]


def reveal(state: ChainState, netuid: int, hotkey: str, dests: list[int], values: list[int],
           version_key: int) -> int:
    """Test hook: apply plaintext weights for a pending commit (drand is offline).

    Runs the §9.1 checks without the rate limit and without touching ``LastUpdate``, as
    the chain's reveal does; consumes the oldest pending commit of the hotkey."""
    uid = state.uid_of(netuid, hotkey)
    if uid is None:
        raise DispatchError("HotKeyNotRegisteredInSubNet")
    key = f"{netuid}/{uid}"
    pending = list(state.store.get("commits", key) or [])
    if not pending:
        raise DispatchError("NoWeightsCommitFound")
    check_and_store(state, netuid, hotkey, dests, values, version_key, rate_limit=False)
    if pending[1:]:
        state.store.put("commits", key, pending[1:])
    else:
        state.store.delete("commits", key)
    return uid
