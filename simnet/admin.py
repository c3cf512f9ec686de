"""AdminUtils ``sudo_set_*``: root (``Sudo.sudo`` from //Alice) or, for the owner-settable
subset (``bittensor/intents/hyperparameters.py``), the subnet owner's coldkey.

Order of checks, as in ``pallets/admin-utils``: origin (``BadOrigin`` for a signed key that is
neither root nor, where allowed, the owner), then for the gated calls the admin freeze window
(``AdminActionProhibitedDuringWeightsWindow``, root included), then the value checks. The
window: the last ``AdminFreezeWindow`` blocks before the subnet's next automatic epoch
(``LastEpochBlock + tempo - now < window``), or while an owner-triggered epoch is pending.
"""

from __future__ import annotations

from typing import Any

from bittensor.intents.hyperparameters import OWNER_HYPERPARAMETERS

from .codec import SimCall
from .extrinsics import ROOT, DispatchError, Events
from .state import ChainState

# AdminUtils function -> subnet field it writes.
FIELDS: dict[str, str] = {
    "sudo_set_tempo": "tempo",
    "sudo_set_weights_set_rate_limit": "weights_set_rate_limit",
    "sudo_set_commit_reveal_weights_enabled": "commit_reveal_weights_enabled",
    "sudo_set_commit_reveal_weights_interval": "commit_reveal_period",
    "sudo_set_min_allowed_weights": "min_allowed_weights",
    "sudo_set_max_weight_limit": "max_weights_limit",
    "sudo_set_weights_version_key": "weights_version_key",
    "sudo_set_immunity_period": "immunity_period",
    "sudo_set_activity_cutoff": "activity_cutoff",
    "sudo_set_activity_cutoff_factor": "activity_cutoff_factor",
    "sudo_set_max_allowed_validators": "max_allowed_validators",
    "sudo_set_max_allowed_uids": "max_allowed_uids",
    "sudo_set_min_allowed_uids": "min_allowed_uids",
    "sudo_set_difficulty": "difficulty",
    "sudo_set_min_difficulty": "min_difficulty",
    "sudo_set_max_difficulty": "max_difficulty",
    "sudo_set_kappa": "kappa",
    "sudo_set_rho": "rho",
    "sudo_set_bonds_moving_average": "bonds_moving_average",
    "sudo_set_bonds_penalty": "bonds_penalty",
    "sudo_set_bonds_reset_enabled": "bonds_reset_enabled",
    "sudo_set_yuma3_enabled": "yuma3_enabled",
    "sudo_set_liquid_alpha_enabled": "liquid_alpha_enabled",
    "sudo_set_alpha_sigmoid_steepness": "alpha_sigmoid_steepness",
    "sudo_set_min_burn": "min_burn",
    "sudo_set_max_burn": "max_burn",
    "sudo_set_burn": "burn",
    "sudo_set_burn_half_life": "burn_half_life",
    "sudo_set_burn_increase_mult": "burn_increase_mult",
    "sudo_set_serving_rate_limit": "serving_rate_limit",
    "sudo_set_network_registration_allowed": "registration_allowed",
    "sudo_set_network_pow_registration_allowed": "pow_registration_allowed",
    "sudo_set_max_registrations_per_block": "max_regs_per_block",
    "sudo_set_target_registrations_per_interval": "target_regs_per_interval",
    "sudo_set_adjustment_interval": "adjustment_interval",
    "sudo_set_adjustment_alpha": "adjustment_alpha",
    "sudo_set_owner_immune_neuron_limit": "owner_immune_neuron_limit",
    "sudo_set_toggle_transfer": "transfers_enabled",
    "sudo_set_owner_cut_enabled": "owner_cut_enabled",
    "sudo_set_owner_cut_auto_lock_enabled": "owner_cut_auto_lock_enabled",
    "sudo_set_epoch_consensus": "epoch_consensus",
    "sudo_set_min_non_immune_uids": "min_non_immune_uids",
}
# Calls the chain does NOT gate by the admin freeze window (admin-utils ``lib.rs``).
UNGATED = {"sudo_set_weights_set_rate_limit", "sudo_set_adjustment_interval", "sudo_set_kappa",
           "sudo_set_min_non_immune_uids", "sudo_set_stake_threshold", "sudo_set_burn"}
# Global (no netuid) root-only setters -> meta key.
GLOBAL = {"sudo_set_admin_freeze_window": ("admin_freeze_window", "window", 65535),
          "sudo_set_stake_threshold": ("stake_threshold", "min_stake", 2**64 - 1)}
OWNER_SETTABLE = {method for method, _ in OWNER_HYPERPARAMETERS.values()}
BOOLEAN = {f for f, field in FIELDS.items() if field.endswith(("enabled", "allowed"))} | {
    "sudo_set_toggle_transfer"}
U16_FIELDS = {"max_weights_limit", "kappa", "bonds_penalty", "min_allowed_weights",
              "max_allowed_uids", "max_allowed_validators", "immunity_period", "tempo"}


def dispatch(state: ChainState, call: SimCall, origin: str) -> Events:
    p = call.params
    netuid = p.get("netuid")
    if call.function in GLOBAL:
        return _set_global(state, call.function, origin, p)
    if call.function == "sudo_set_alpha_values":
        return _set_alpha_values(state, origin, p)
    field = FIELDS.get(call.function)
    if field is None:
        raise DispatchError("CallFiltered", "System")
    if isinstance(netuid, bool) or not isinstance(netuid, int):
        raise DispatchError("SubnetDoesNotExist", "AdminUtils")
    subnet = state.subnet(netuid)
    if subnet is None:
        # A signed non-root origin fails the owner check first (SubnetOwner is the zero account).
        if origin != ROOT:
            raise DispatchError("BadOrigin", "System")
        raise DispatchError("SubnetDoesNotExist", "AdminUtils")
    _ensure_origin(subnet, origin, owner_ok=call.function in OWNER_SETTABLE)
    if call.function == "sudo_set_tempo" and origin != ROOT:
        value = p.get("tempo")
        if not isinstance(value, int) or not 360 <= value <= 50_400:
            raise DispatchError("TempoOutOfBounds")  # checked before the window (do_set_tempo)
    if call.function not in UNGATED and not (
            call.function == "sudo_set_activity_cutoff_factor" and origin == ROOT):
        ensure_admin_window_open(state, subnet)
    values = [v for k, v in p.items() if k != "netuid"]
    if len(values) != 1:
        raise DispatchError("InvalidValue", "AdminUtils")
    value = _coerce(call.function, field, values[0])
    if field == "max_allowed_uids" and value < len(subnet["hotkeys"]):
        raise DispatchError("MaxAllowedUIdsLessThanCurrentUIds", "AdminUtils")
    if field == "max_allowed_validators" and value > int(subnet["max_allowed_uids"]):
        raise DispatchError("MaxValidatorsLargerThanMaxUIds", "AdminUtils")
    if field == "activity_cutoff_factor" and not 1000 <= value <= 50_000:
        raise DispatchError("ActivityCutoffFactorMilliOutOfBounds")
    if field == "tempo":
        subnet["last_epoch_block"] = state.head  # apply_tempo_with_cycle_reset
    subnet[field] = value
    state.save_subnet(subnet)
    return [("AdminUtils", "HyperparameterSet", {"netuid": netuid, "name": field})]


def admin_freeze_window(state: ChainState) -> int:
    """``SubtensorModule.AdminFreezeWindow`` (global). simnet's genesis value is the node's
    ``--admin-freeze-window`` (default 0; subtensor's genesis value is 10)."""
    return int(state.store.get("meta", "admin_freeze_window") or 0)


def in_admin_freeze_window(state: ChainState, subnet: dict, block: int) -> bool:
    """``is_in_admin_freeze_window`` (``utils/misc.rs``)."""
    tempo = int(subnet["tempo"])
    if tempo == 0:
        return False
    pending = int(subnet["pending_epoch_at"])
    if pending > 0 and pending > block:
        return True
    remaining = max(0, int(subnet["last_epoch_block"]) + tempo - block)
    return remaining < admin_freeze_window(state)


def ensure_admin_window_open(state: ChainState, subnet: dict) -> None:
    if in_admin_freeze_window(state, subnet, state.head):
        raise DispatchError("AdminActionProhibitedDuringWeightsWindow")


def _set_global(state: ChainState, function: str, origin: str, p: dict) -> Events:
    key, param, top = GLOBAL[function]
    if origin != ROOT:  # ensure_root
        raise DispatchError("BadOrigin", "System")
    value = p.get(param)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise DispatchError("InvalidValue", "AdminUtils")
    state.store.put("meta", key, value)
    event = "AdminFreezeWindowSet" if key == "admin_freeze_window" else "StakeThresholdSet"
    return [("SubtensorModule", event, (value,))]


def _ensure_origin(subnet: dict, origin: str, *, owner_ok: bool) -> None:
    if origin == ROOT:
        return
    if owner_ok and origin == subnet["owner_coldkey"]:
        return
    raise DispatchError("BadOrigin", "System")


def _coerce(function: str, field: str, value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"bits"}:  # U64F64 newtype
        return int(value["bits"]) / 2**64
    if function in BOOLEAN:
        if not isinstance(value, bool) and value not in (0, 1):
            raise DispatchError("InvalidValue", "AdminUtils")
        return bool(value)
    if field == "epoch_consensus":
        if value not in ("Yuma", "Null"):
            raise DispatchError("InvalidValue", "AdminUtils")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise DispatchError("InvalidValue", "AdminUtils")
    if field in U16_FIELDS and value > 65535:
        raise DispatchError("ValueNotInBounds", "AdminUtils")
    return value if field == "burn_increase_mult" else int(value)


def _set_alpha_values(state: ChainState, origin: str, p: dict) -> Events:
    netuid = p.get("netuid")
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    if subnet is None:
        raise DispatchError("SubnetDoesNotExist", "AdminUtils")
    _ensure_origin(subnet, origin, owner_ok=True)
    ensure_admin_window_open(state, subnet)
    low, high = p.get("alpha_low"), p.get("alpha_high")
    if not all(isinstance(v, int) for v in (low, high)) or not 1638 <= low <= high <= 65535:
        raise DispatchError("AlphaLowOutOfRange")
    subnet["alpha_low"], subnet["alpha_high"] = low, high
    state.save_subnet(subnet)
    return [("AdminUtils", "HyperparameterSet", {"netuid": netuid, "name": "alpha_values"})]
