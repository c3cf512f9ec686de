"""Runtime-API records: ``get_metagraph``, ``get_neurons(_lite)``, ``get_subnet_hyperparams_v3``.

Shapes follow subtensor's published rules (metagraph keys, ``incentives`` plural, axons as
AxonInfo dicts with an int ip) and the SDK's readers in ``bittensor/metagraph.py`` and
``bittensor/reads/neurons.py``.
"""

from __future__ import annotations

from typing import Any, Optional

from .state import ChainState

EMPTY_AXON = {"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 0, "protocol": 0,
              "placeholder1": 0, "placeholder2": 0}

# SDK hyperparameter name -> (subnet field, v3 type tag).
HYPERPARAMS: dict[str, tuple[str, str]] = {
    "rho": ("rho", "u16"), "kappa": ("kappa", "u16"),
    "immunity_period": ("immunity_period", "u16"),
    "min_allowed_weights": ("min_allowed_weights", "u16"),
    "max_weights_limit": ("max_weights_limit", "u16"), "tempo": ("tempo", "u16"),
    "min_difficulty": ("min_difficulty", "u64"), "max_difficulty": ("max_difficulty", "u64"),
    "weights_version": ("weights_version_key", "u64"),
    "weights_rate_limit": ("weights_set_rate_limit", "u64"),
    "adjustment_interval": ("adjustment_interval", "u16"),
    "activity_cutoff": ("activity_cutoff", "u16"),
    "activity_cutoff_factor": ("activity_cutoff_factor", "u32"),
    "registration_allowed": ("registration_allowed", "bool"),
    "target_regs_per_interval": ("target_regs_per_interval", "u16"),
    "min_burn": ("min_burn", "TaoBalance"), "max_burn": ("max_burn", "TaoBalance"),
    "bonds_moving_avg": ("bonds_moving_average", "u64"),
    "max_regs_per_block": ("max_regs_per_block", "u16"),
    "serving_rate_limit": ("serving_rate_limit", "u64"),
    "max_validators": ("max_allowed_validators", "u16"),
    "adjustment_alpha": ("adjustment_alpha", "u64"), "difficulty": ("difficulty", "u64"),
    "commit_reveal_period": ("commit_reveal_period", "u64"),
    "commit_reveal_weights_enabled": ("commit_reveal_weights_enabled", "bool"),
    "alpha_high": ("alpha_high", "u16"), "alpha_low": ("alpha_low", "u16"),
    "liquid_alpha_enabled": ("liquid_alpha_enabled", "bool"),
    "alpha_sigmoid_steepness": ("alpha_sigmoid_steepness", "I32F32"),
    "yuma3_enabled": ("yuma3_enabled", "bool"),
    "bonds_reset_enabled": ("bonds_reset_enabled", "bool"),
    "transfers_enabled": ("transfers_enabled", "bool"),
    "bonds_penalty": ("bonds_penalty", "u16"),
    "network_pow_registration_allowed": ("pow_registration_allowed", "bool"),
    "max_allowed_uids": ("max_allowed_uids", "u16"),
    "burn_half_life": ("burn_half_life", "u16"),
    "burn_increase_mult": ("burn_increase_mult", "U64F64"),
    "owner_immune_neuron_limit": ("owner_immune_neuron_limit", "u16"),
    "owner_cut_enabled": ("owner_cut_enabled", "bool"),
}


def _tagged(subnet: dict, field: str, tag: str) -> Any:
    value = subnet[field]
    if tag == "I32F32":
        return {"bits": int(value) << 32}
    if tag == "U64F64":
        return {"bits": int(float(value) * 2**64)}
    return value


def hyperparams_v3(state: ChainState, netuid: Any, _params: Any = None) -> Optional[list]:
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    if subnet is None:
        return None
    entries = [{"name": name, "value": {tag: _tagged(subnet, field, tag)}}
               for name, (field, tag) in HYPERPARAMS.items()]
    entries.append({"name": "subnet_is_active", "value": {"bool": subnet["subtoken_enabled"]}})
    entries.append({"name": "user_liquidity_enabled", "value": {"bool": False}})
    return entries


def hyperparams_v2(state: ChainState, netuid: Any, _params: Any = None) -> Optional[dict]:
    entries = hyperparams_v3(state, netuid)
    if entries is None:
        return None
    return {e["name"]: next(iter(e["value"].values())) for e in entries}


def _axon(neuron: dict) -> dict:
    return dict(neuron["axon"]) if neuron.get("axon") else dict(EMPTY_AXON)


def metagraph(state: ChainState, netuid: Any, _params: Any = None) -> Optional[dict]:
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    if subnet is None:
        return None
    neurons = state.neurons(netuid)
    hotkeys = list(subnet["hotkeys"])
    stakes = [state.total_stake(hk, netuid) for hk in hotkeys]
    block = state.head
    record = {
        "netuid": netuid,
        "name": list(subnet["name"].encode()),
        "symbol": list(subnet["symbol"].encode()),
        "identity": None,
        "network_registered_at": subnet["registered_at"],
        "owner_hotkey": subnet["owner_hotkey"],
        "owner_coldkey": subnet["owner_coldkey"],
        "block": block,
        "tempo": subnet["tempo"],
        "last_step": subnet["last_epoch_block"],
        "blocks_since_last_step": block - subnet["last_epoch_block"],
        "subnet_emission": 0,
        "alpha_in": subnet["alpha_in"],
        "alpha_out": subnet["alpha_out"],
        "tao_in": subnet["tao_in"],
        "alpha_in_emission": 0, "alpha_out_emission": 0, "tao_in_emission": 0,
        "pending_alpha_emission": subnet["pending_server"] + subnet["pending_validator"],
        "pending_root_emission": 0,
        "subnet_volume": 0,
        "moving_price": {"bits": 1 << 32},
        "num_uids": len(hotkeys),
        "max_uids": subnet["max_allowed_uids"],
        "burn": subnet["burn"],
        "difficulty": subnet["difficulty"],
        "registration_allowed": subnet["registration_allowed"],
        "pow_registration_allowed": subnet["pow_registration_allowed"],
        "immunity_period": subnet["immunity_period"],
        "min_difficulty": subnet["min_difficulty"],
        "max_difficulty": subnet["max_difficulty"],
        "min_burn": subnet["min_burn"],
        "max_burn": subnet["max_burn"],
        "adjustment_alpha": subnet["adjustment_alpha"],
        "adjustment_interval": subnet["adjustment_interval"],
        "target_regs_per_interval": subnet["target_regs_per_interval"],
        "max_regs_per_block": subnet["max_regs_per_block"],
        "serving_rate_limit": subnet["serving_rate_limit"],
        "commit_reveal_weights_enabled": subnet["commit_reveal_weights_enabled"],
        "commit_reveal_period": subnet["commit_reveal_period"],
        "liquid_alpha_enabled": subnet["liquid_alpha_enabled"],
        "alpha_high": subnet["alpha_high"],
        "alpha_low": subnet["alpha_low"],
        "bonds_moving_avg": subnet["bonds_moving_average"],
        "rho": subnet["rho"],
        "kappa": subnet["kappa"],
        "min_allowed_weights": subnet["min_allowed_weights"],
        "max_weights_limit": subnet["max_weights_limit"],
        "weights_version": subnet["weights_version_key"],
        "weights_rate_limit": subnet["weights_set_rate_limit"],
        "activity_cutoff": subnet["activity_cutoff"],
        "max_validators": subnet["max_allowed_validators"],
        "hotkeys": hotkeys,
        "coldkeys": [n["coldkey"] for n in neurons],
        "identities": [None] * len(hotkeys),
        "axons": [_axon(n) for n in neurons],
        "active": [bool(n["active"]) for n in neurons],
        "validator_permit": [bool(n["permit"]) for n in neurons],
        "pruning_score": [int(n["pruning_score"]) for n in neurons],
        "last_update": [int(n["last_update"]) for n in neurons],
        "emission": [int(n["emission"]) for n in neurons],
        "dividends": [int(n["dividends"]) for n in neurons],
        "incentives": [int(n["incentive"]) for n in neurons],
        "consensus": [int(n["consensus"]) for n in neurons],
        "trust": [int(n["trust"]) for n in neurons],
        "rank": [int(n["rank"]) for n in neurons],
        "validator_trust": [int(n["vtrust"]) for n in neurons],
        "block_at_registration": [int(n["reg_block"]) for n in neurons],
        "alpha_stake": stakes,
        "tao_stake": [0] * len(hotkeys),
        "total_stake": stakes,
        "tao_dividends_per_hotkey": [(hk, 0) for hk in hotkeys],
        "alpha_dividends_per_hotkey": [(hk, 0) for hk in hotkeys],
    }
    return record


def all_metagraphs(state: ChainState, _netuid: Any = None, _params: Any = None) -> list:
    return [metagraph(state, n) for n in state.netuids()]


def _neuron_record(state: ChainState, netuid: int, uid: int, neuron: dict, full: bool) -> dict:
    stake = state.stake_of(neuron["hotkey"], netuid)
    record = {
        "hotkey": neuron["hotkey"], "coldkey": neuron["coldkey"], "uid": uid, "netuid": netuid,
        "active": bool(neuron["active"]), "axon_info": _axon(neuron),
        "prometheus_info": {"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 0},
        "stake": sorted(stake.items()), "rank": neuron["rank"], "emission": neuron["emission"],
        "incentive": neuron["incentive"], "consensus": neuron["consensus"],
        "trust": neuron["trust"], "validator_trust": neuron["vtrust"],
        "dividends": neuron["dividends"], "last_update": neuron["last_update"],
        "validator_permit": bool(neuron["permit"]), "pruning_score": neuron["pruning_score"],
    }
    if full:
        record["weights"] = [tuple(x) for x in neuron["weights"]]
        record["bonds"] = [tuple(x) for x in neuron["bonds"]]
    return record


def neurons_lite(state: ChainState, netuid: Any, _params: Any = None) -> list:
    if not isinstance(netuid, int) or state.subnet(netuid) is None:
        return []
    return [_neuron_record(state, netuid, uid, n, False)
            for uid, n in enumerate(state.neurons(netuid))]


def neurons_full(state: ChainState, netuid: Any, _params: Any = None) -> list:
    if not isinstance(netuid, int) or state.subnet(netuid) is None:
        return []
    return [_neuron_record(state, netuid, uid, n, True)
            for uid, n in enumerate(state.neurons(netuid))]
