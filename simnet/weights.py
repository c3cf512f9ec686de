"""set_weights and timelocked commits, in the chain's check order."""

from __future__ import annotations

import copy
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
    if not is_owner and state.total_stake(hotkey, netuid) < state.stake_threshold:
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


MAX_COMMITS_PER_EPOCH = 10


def commit_timelocked(state: ChainState, origin: str, p: dict) -> Events:
    """§9.3: store an opaque drand-timelocked commit in the commit epoch's bucket.

    drand is unreachable offline, so the ciphertext is never decrypted: the test hook
    ``POST /admin/reveal_weights`` supplies the plaintext (``provide_plaintext``) and the
    block step applies it when the chain would (``reveal_due``)."""
    netuid = p.get("netuid")
    subnet = state.subnet(netuid) if isinstance(netuid, int) and \
        not isinstance(netuid, bool) else None
    if subnet is None:
        raise DispatchError("SubnetNotExists")
    if int(p.get("mecid") or 0) != 0:
        raise DispatchError("MechanismDoesNotExist")
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
    epoch = int(subnet["epoch_index"])  # current_epoch_with_lookahead, inside a block
    if sum(1 for c in pending if c["epoch"] == epoch) >= MAX_COMMITS_PER_EPOCH:
        raise DispatchError("TooManyUnrevealedCommits")
    pending.append({"hotkey": origin, "block": state.head, "epoch": epoch,
                    "reveal_round": p.get("reveal_round"), "size": len(commit),
                    "commit": "0x" + (commit.encode() if isinstance(commit, str)
                                      else bytes(commit)).hex(),
                    "plaintext": None})
    state.store.put("commits", key, pending)
    neuron["last_update"] = state.head
    state.save_neuron(netuid, uid, neuron)
    return [("SubtensorModule", "TimelockedWeightsCommitted",
             (origin, netuid, p.get("reveal_round")))]


def provide_plaintext(state: ChainState, netuid: int, hotkey: str, dests: list[int],
                      values: list[int], version_key: int) -> dict:
    """Test hook (drand offline): attach plaintext weights to the hotkey's oldest pending
    timelocked commit that has none yet.

    The §9.1 checks (minus the rate limit) run now against the current state as a dry run,
    so a bad payload is refused at once with the chain's error name; nothing is stored
    then. The weights are applied by ``reveal_due`` at the start of the block whose
    reveal epoch is the commit's epoch (the block in which epoch ``commit_epoch +
    RevealPeriodEpochs`` fires, or the next block if that epoch is already current), as
    the chain does when the drand pulse is available. ``LastUpdate`` is not written."""
    subnet = state.subnet(netuid)
    if subnet is None:
        raise DispatchError("SubnetNotExists")
    uid = state.uid_of(netuid, hotkey)
    if uid is None:
        raise DispatchError("HotKeyNotRegisteredInSubNet")
    key = f"{netuid}/{uid}"
    pending = list(state.store.get("commits", key) or [])
    index = next((i for i, c in enumerate(pending) if not c.get("plaintext")), None)
    if index is None:
        raise DispatchError("NoWeightsCommitFound")
    before = copy.deepcopy(state.neuron(netuid, uid))
    check_and_store(state, netuid, hotkey, dests, values, version_key, rate_limit=False)
    state.save_neuron(netuid, uid, before)  # dry run only
    commit = dict(pending[index], plaintext={"uids": list(dests), "values": list(values),
                                             "version_key": int(version_key)})
    pending[index] = commit
    state.store.put("commits", key, pending)
    return {"uid": uid, "commit_block": commit["block"], "commit_epoch": commit["epoch"],
            "reveal_epoch": commit["epoch"] + int(subnet["commit_reveal_period"])}


def reveal_due(state: ChainState, subnet: dict, epoch_fires: bool) -> list[tuple[int, str]]:
    """§9.3 reveal at the start of a block (before the epoch): drop commits older than the
    reveal epoch, apply those of the reveal epoch that have plaintext (a failing one is
    dropped, as on the chain), keep the rest. Returns ``(uid, outcome)`` pairs."""
    netuid = subnet["netuid"]
    lookahead = int(subnet["epoch_index"]) + (1 if epoch_fires else 0)
    reveal_epoch = lookahead - int(subnet["commit_reveal_period"])
    outcomes = []
    for uid in range(len(subnet["hotkeys"])):
        key = f"{netuid}/{uid}"
        pending = state.store.get("commits", key)
        if not pending:
            continue
        keep = []
        for commit in pending:
            if commit["epoch"] < reveal_epoch:
                outcomes.append((uid, "ExpiredWeightCommit"))
                continue
            plain = commit.get("plaintext")
            if commit["epoch"] == reveal_epoch and plain:
                try:
                    check_and_store(state, netuid, commit["hotkey"], plain["uids"],
                                    plain["values"], plain["version_key"], rate_limit=False)
                    outcomes.append((uid, "TimelockedWeightsRevealed"))
                except DispatchError as failure:
                    outcomes.append((uid, failure.name))
                continue
            keep.append(commit)
        if keep:
            state.store.put("commits", key, keep)
        else:
            state.store.delete("commits", key)
    return outcomes
