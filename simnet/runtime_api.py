"""Reads: storage items, storage maps, runtime APIs and constants, as plain decoded values.

Shapes follow subtensor's published rules: Default items never answer None (the all-zero
account, 0, False, [] on a miss); only ``Uids``, ``Axons``, ``CommitmentOf`` and a few
Option items do. Reads ignore the ``block_hash`` pin and answer from the head.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from . import absent
from .extrinsics import alpha_price_rao
from .state import EXISTENTIAL_DEPOSIT, NETWORK_LOCK_RAO, ZERO_ACCOUNT, ChainState


class UnknownItem(Exception):
    """A storage item or runtime API simnet does not model."""


# Storage item -> (subnet field, default on a missing subnet).
SUBNET_ITEMS: dict[str, tuple[str, Any]] = {
    "Tempo": ("tempo", 360), "Burn": ("burn", 1_000_000_000),
    "WeightsSetRateLimit": ("weights_set_rate_limit", 100),
    "WeightsVersionKey": ("weights_version_key", 0), "ImmunityPeriod": ("immunity_period", 4096),
    "MaxWeightsLimit": ("max_weights_limit", 65535),
    "MinAllowedWeights": ("min_allowed_weights", 1024),
    "Difficulty": ("difficulty", 10_000_000), "MinDifficulty": ("min_difficulty", 10_000_000),
    "MaxDifficulty": ("max_difficulty", 2**64 // 4),
    "RevealPeriodEpochs": ("commit_reveal_period", 1),
    "LastEpochBlock": ("last_epoch_block", 0),
    "BlocksSinceLastStep": ("blocks_since_last_step", 0),
    "PendingEpochAt": ("pending_epoch_at", 0), "SubnetEpochIndex": ("epoch_index", 0),
    "MaxAllowedUids": ("max_allowed_uids", 256), "MinAllowedUids": ("min_allowed_uids", 64),
    "MaxAllowedValidators": ("max_allowed_validators", 128), "Kappa": ("kappa", 32767),
    "Rho": ("rho", 10), "ActivityCutoff": ("activity_cutoff", 5000),
    "ActivityCutoffFactorMilli": ("activity_cutoff_factor", 13_889),
    "BondsMovingAverage": ("bonds_moving_average", 900_000),
    "BondsPenalty": ("bonds_penalty", 65535), "MinBurn": ("min_burn", 500_000),
    "MaxBurn": ("max_burn", 100_000_000_000), "BurnHalfLife": ("burn_half_life", 360),
    "MaxRegistrationsPerBlock": ("max_regs_per_block", 1),
    "RegistrationsThisBlock": ("regs_this_block", 0),
    "TargetRegistrationsPerInterval": ("target_regs_per_interval", 2),
    "AdjustmentInterval": ("adjustment_interval", 100),
    "AdjustmentAlpha": ("adjustment_alpha", 0),
    "ServingRateLimit": ("serving_rate_limit", 50),
    "NetworkRegisteredAt": ("registered_at", 0), "SubnetLocked": ("locked_rao", 0),
    "SubtokenEnabled": ("subtoken_enabled", False),
    "NetworkRegistrationAllowed": ("registration_allowed", False),
    "NetworkPowRegistrationAllowed": ("pow_registration_allowed", False),
    "CommitRevealWeightsEnabled": ("commit_reveal_weights_enabled", False),
    "Yuma3On": ("yuma3_enabled", False), "LiquidAlphaOn": ("liquid_alpha_enabled", False),
    "AlphaSigmoidSteepness": ("alpha_sigmoid_steepness", 1000),
    "BondsResetOn": ("bonds_reset_enabled", False), "TransferToggle": ("transfers_enabled", True),
    "OwnerCutEnabled": ("owner_cut_enabled", True),
    "OwnerCutAutoLockEnabled": ("owner_cut_auto_lock_enabled", False),
    "ImmuneOwnerUidsLimit": ("owner_immune_neuron_limit", 1),
    "LastMechansimStepBlock": ("last_mechanism_step_block", 0),
    "SubnetEpochConsensus": ("epoch_consensus", "Yuma"),
    "SubnetTAO": ("tao_in", 0), "SubnetAlphaIn": ("alpha_in", 0),
    "SubnetAlphaOut": ("alpha_out", 0), "PendingServerEmission": ("pending_server", 0),
    "PendingValidatorEmission": ("pending_validator", 0),
    "PendingOwnerCut": ("pending_owner", 0),
    "MinNonImmuneUids": ("min_non_immune_uids", 10),
}
# Per-UID vectors indexed by netuid_index (mechanism 0 -> netuid) -> neuron column.
UID_VECTORS: dict[str, tuple[str, Any]] = {
    "LastUpdate": ("last_update", int), "ValidatorPermit": ("permit", bool),
    "Active": ("active", bool), "Incentive": ("incentive", int),
    "Dividends": ("dividends", int), "Consensus": ("consensus", int),
    "ValidatorTrust": ("vtrust", int), "Emission": ("emission", int), "Rank": ("rank", int),
    "Trust": ("trust", int), "PruningScores": ("pruning_score", int),
    "StakeWeight": ("stake_weight", int),
}
ZERO_DEFAULTS: dict[str, Any] = {
    "CollateralLockShare": 0, "CollateralDrainRatio": {"bits": 0}, "MechanismCountCurrent": 1,
    "SubnetMechanism": 1, "StartCallDelay": 0, "TotalIssuance": 0, "SubnetEmissionEnabled": False,
    "MinChildkeyTakePerSubnet": 0, "Delegates": 11796, "RootClaimableThreshold": 0,
}


MEV_KEY_BYTES = 1184  # an ML-KEM-768 public key


def mev_next_key(state: ChainState) -> bytes:
    """``MevShield.NextKey``: a fixed 1184-byte key per chain. Nobody decrypts with it: the
    client hands the server the signed inner extrinsic beside the ciphertext."""
    seed = state.chain.encode()
    return (seed * (MEV_KEY_BYTES // len(seed) + 1))[:MEV_KEY_BYTES]


def _subnet_value(state: ChainState, item: str, netuid: Any) -> Any:
    field, default = SUBNET_ITEMS[item]
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    if subnet is None:
        return default
    value = subnet.get(field, default)  # a field added after this subnet was stored
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def query(state: ChainState, module: str, item: str, params: Optional[list]) -> Any:
    p = list(params or [])
    if module == "System" and item == "Account":
        account = state.account(p[0]) if p else {"free": 0, "nonce": 0}
        return {"nonce": account["nonce"], "consumers": 0, "providers": 1, "sufficients": 0,
                "data": {"free": account["free"], "reserved": 0, "frozen": 0,
                         "flags": 1 << 127}}
    if module == "System" and item == "Number":
        return state.head
    if module == "Timestamp" and item == "Now":
        return state.timestamp_ms()
    if module == "Commitments":
        if item == "CommitmentOf":
            return state.commitment(p[0], p[1]) if len(p) == 2 else None
        if item == "RevealedCommitments":
            return None
        if item in ("MaxFields", "RateLimit"):
            return 3 if item == "MaxFields" else 0
    if module == "MevShield" and item == "NextKey":
        return "0x" + mev_next_key(state).hex()  # BoundedVec<u8>: hex, as the RPC decodes a key
    if module != "SubtensorModule":
        raise UnknownItem(f"{module}.{item}")
    return _subtensor_query(state, item, p)


def _subtensor_query(state: ChainState, item: str, p: list) -> Any:
    if item in SUBNET_ITEMS:
        return _subnet_value(state, item, p[0] if p else None)
    if item in UID_VECTORS:
        field, kind = UID_VECTORS[item]
        netuid = (p[0] % 4096) if p else None
        return [kind(n[field]) for n in state.neurons(netuid)] if netuid is not None else []
    if item == "AdminFreezeWindow":
        return int(state.store.get("meta", "admin_freeze_window") or 0)
    if item == "StakeThreshold":
        return state.stake_threshold
    if item in ZERO_DEFAULTS:
        return ZERO_DEFAULTS[item]
    subnet = state.subnet(p[0]) if p and isinstance(p[0], int) else None
    if item == "Uids":
        return state.uid_of(p[0], p[1]) if len(p) == 2 else None
    if item == "Keys":
        return subnet["hotkeys"][p[1]] if subnet and len(p) == 2 and \
            0 <= p[1] < len(subnet["hotkeys"]) else ZERO_ACCOUNT
    if item == "SubnetworkN":
        return len(subnet["hotkeys"]) if subnet else 0
    if item == "NetworksAdded":
        return subnet is not None
    if item == "SubnetOwner":
        return subnet["owner_coldkey"] if subnet else ZERO_ACCOUNT
    if item == "SubnetOwnerHotkey":
        return subnet["owner_hotkey"] if subnet else ZERO_ACCOUNT
    if item == "FirstEmissionBlockNumber":
        return subnet["first_emission_block"] if subnet else None
    if item == "AlphaValues":
        return (subnet["alpha_low"], subnet["alpha_high"]) if subnet else (45875, 58982)
    if item == "BurnIncreaseMult":
        return {"bits": int((subnet["burn_increase_mult"] if subnet else 1.26) * 2**64)}
    if item == "TokenSymbol":
        return list("α".encode()) if subnet else []
    if item == "Owner":
        return state.owner_of(p[0]) or ZERO_ACCOUNT
    if item == "OwnedHotkeys":
        return [hk for hk, ck in state.store.data["owners"].items() if ck == p[0]]
    if item == "IsNetworkMember":
        return len(p) == 2 and state.uid_of(p[1], p[0]) is not None
    if item == "Axons":
        uid = state.uid_of(p[0], p[1]) if len(p) == 2 else None
        return state.neuron(p[0], uid)["axon"] if uid is not None else None
    if item == "BlockAtRegistration":
        return state.neuron(p[0], p[1])["reg_block"] if subnet and len(p) == 2 and \
            0 <= p[1] < len(subnet["hotkeys"]) else 0
    if item in ("Weights", "Bonds"):
        netuid = p[0] % 4096 if p else None
        subnet = state.subnet(netuid) if netuid is not None else None
        if subnet is None or len(p) != 2 or not 0 <= p[1] < len(subnet["hotkeys"]):
            return []
        return [tuple(x) for x in state.neuron(netuid, p[1])[item.lower()]]
    if item == "TimelockedWeightCommits":  # [netuid_index, commit_epoch]
        return _timelocked_commits(state, p[0]).get(p[1], []) if len(p) == 2 else []
    if item == "TotalHotkeyAlpha":
        return state.total_stake(p[0], p[1]) if len(p) == 2 else 0
    if item == "TotalAlphaStaked":  # [netuid]: the sum of TotalHotkeyAlpha over its hotkeys
        return sum(amount for key, position in state.store.data["stake"].items()
                   if key.rpartition("/")[2] == str(p[0]) for amount in position.values()) \
            if p else 0
    if item == "Alpha":  # [hotkey, coldkey, netuid] -> {"bits": shares}
        return {"bits": state.stake_of(p[0], p[2]).get(p[1], 0) << 64} if len(p) == 3 \
            else {"bits": 0}
    if item == "TotalNetworks":
        return len(state.netuids())
    if item in absent.NONE_VALUES:
        return None
    raise UnknownItem(f"SubtensorModule.{item}")


def _timelocked_commits(state: ChainState, netuid_index: Any) -> dict[int, list[tuple]]:
    """Pending timelocked commits of a subnet, by commit epoch, in the chain's tuple shape
    ``(hotkey, commit_block, ciphertext, reveal_round)``."""
    netuid = netuid_index % 4096 if isinstance(netuid_index, int) else None
    subnet = state.subnet(netuid) if netuid is not None else None
    by_epoch: dict[int, list[tuple]] = {}
    for uid in range(len(subnet["hotkeys"]) if subnet else 0):
        for c in state.store.get("commits", f"{netuid}/{uid}") or []:
            by_epoch.setdefault(c["epoch"], []).append(
                (c["hotkey"], c["block"], c.get("commit", "0x"), c["reveal_round"] or 0))
    return by_epoch


def query_map(state: ChainState, module: str, item: str, params: Optional[list]) -> list:
    p = list(params or [])
    if module == "Commitments" and item == "CommitmentOf" and p:
        return state.commitments(p[0])
    if (module, item) in absent.EMPTY_MAPS:
        return []
    if module != "SubtensorModule":
        raise UnknownItem(f"map {module}.{item}")
    if not p and (item in SUBNET_ITEMS or item in ("NetworksAdded", "SubnetworkN",
                                                   "TokenSymbol", "SubnetOwner",
                                                   "SubnetOwnerHotkey")):
        return [(n, _subtensor_query(state, item, [n])) for n in state.netuids()]
    if not p and item in UID_VECTORS:
        return [(n, _subtensor_query(state, item, [n])) for n in state.netuids()]
    if item == "Uids" and p:
        subnet = state.subnet(p[0])
        return [(hk, uid) for uid, hk in enumerate(subnet["hotkeys"])] if subnet else []
    if item == "Keys" and p:
        subnet = state.subnet(p[0])
        return [(uid, hk) for uid, hk in enumerate(subnet["hotkeys"])] if subnet else []
    if item == "Axons" and p:
        return [(n["hotkey"], n["axon"]) for n in state.neurons(p[0]) if n["axon"]]
    if item in ("Weights", "Bonds") and p:
        netuid = p[0] % 4096
        key = item.lower()
        return [(uid, [tuple(x) for x in n[key]]) for uid, n in enumerate(state.neurons(netuid))
                if n[key]]
    if item == "TimelockedWeightCommits" and len(p) == 1:
        return sorted(_timelocked_commits(state, p[0]).items())
    if item == "IsNetworkMember" and p:
        return [(n, True) for n in state.netuids() if state.uid_of(n, p[0]) is not None]
    if item == "Owner" and not p:
        return list(state.store.data["owners"].items())
    raise UnknownItem(f"map SubtensorModule.{item}" + (f" under {len(p)} key(s)" if p else ""))


def constant(state: ChainState, module: str, name: str) -> Any:
    table = {
        ("Aura", "SlotDuration"): state.block_ms,
        ("Timestamp", "MinimumPeriod"): state.block_ms // 2,
        ("Balances", "ExistentialDeposit"): EXISTENTIAL_DEPOSIT,
        ("SubtensorModule", "InitialStartCallDelay"): 0,
        ("SubtensorModule", "InitialTempo"): 360,
        ("System", "SS58Prefix"): 42,
    }
    if (module, name) not in table:
        raise UnknownItem(f"constant {module}.{name}")
    return table[(module, name)]


# -- runtime APIs -------------------------------------------------------------------------------


def runtime_call(state: ChainState, api: str, method: str, params: Any) -> Any:
    if isinstance(params, dict):
        args = params
        netuid = params.get("netuid")
    else:
        args = {}
        netuid = params[0] if params else None
    if (api, method) in absent.RUNTIME_APIS:
        return absent.RUNTIME_APIS[(api, method)](params)
    handler = RUNTIME_APIS.get((api, method))
    if handler is None:
        raise UnknownItem(f"runtime API {api}.{method}")
    return handler(state, netuid, params, args)


def _sim_swap(side: str) -> Callable:
    """``sim_swap_tao_for_alpha`` (``side="tao"``) / ``sim_swap_alpha_for_tao`` (``"alpha"``):
    simnet's pool swaps 1:1 without fee or slippage."""
    def quote(state: ChainState, netuid: Any, params: Any, args: dict) -> Optional[dict]:
        amount = args.get(side, 0) if args else (params[1] if len(params) > 1 else 0)
        if not isinstance(netuid, int) or state.subnet(netuid) is None:
            return None
        amount = int(amount)
        return {"alpha_amount": amount, "tao_amount": amount, "tao_fee": 0, "alpha_fee": 0,
                "tao_slippage": 0, "alpha_slippage": 0}
    return quote


def _next_epoch(state: ChainState, netuid: Any, *_: Any) -> Optional[int]:
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    if subnet is None or not subnet["tempo"]:
        return None
    return int(subnet["last_epoch_block"]) + int(subnet["tempo"])


def _price(state: ChainState, netuid: Any, *_: Any) -> Optional[int]:
    subnet = state.subnet(netuid) if isinstance(netuid, int) else None
    return alpha_price_rao(subnet) if subnet is not None else None


def _prices(state: ChainState, *_: Any) -> list[dict]:
    """``current_alpha_price_all``: one ``{netuid, price}`` (rao per alpha) per subnet."""
    return [{"netuid": n, "price": alpha_price_rao(state.subnet(n))} for n in state.netuids()]


def _stake_info(state: ChainState, hotkey: str, coldkey: str, netuid: int) -> dict:
    return {"hotkey": hotkey, "coldkey": coldkey, "netuid": netuid,
            "stake": state.stake_of(hotkey, netuid).get(coldkey, 0), "locked": 0,
            "emission": 0, "tao_emission": 0, "drain": 0,
            "is_registered": state.uid_of(netuid, hotkey) is not None}


def _stake_info_for_hotkey_coldkey_netuid(state: ChainState, _netuid: Any, params: Any,
                                          args: dict) -> Optional[dict]:
    """``StakeInfoRuntimeApi.get_stake_info_for_hotkey_coldkey_netuid(hotkey, coldkey, netuid)``."""
    if args:
        hotkey, coldkey, netuid = args.get("hotkey_account"), args.get("coldkey_account"), \
            args.get("netuid")
    else:
        hotkey, coldkey, netuid = (list(params) + [None] * 3)[:3]
    if not isinstance(netuid, int) or state.subnet(netuid) is None:
        return None
    return _stake_info(state, str(hotkey), str(coldkey), netuid)


def _stake_positions(state: ChainState, coldkey: str) -> list[dict]:
    positions = []
    for key, position in sorted(state.store.data["stake"].items()):
        hotkey, _, netuid = key.rpartition("/")
        if coldkey in position:
            positions.append(_stake_info(state, hotkey, coldkey, int(netuid)))
    return positions


def _stake_info_for_coldkey(state: ChainState, _netuid: Any, params: Any, args: dict) -> list:
    coldkey = args.get("coldkey_account") if args else (params[0] if params else None)
    return _stake_positions(state, str(coldkey))


def _stake_info_for_coldkeys(state: ChainState, _netuid: Any, params: Any, args: dict) -> list:
    coldkeys = args.get("coldkey_accounts") if args else (params[0] if params else [])
    return [(c, _stake_positions(state, str(c))) for c in coldkeys or []]


def _stake_availability(state: ChainState, _netuid: Any, params: Any, args: dict) -> dict:
    """``get_stake_availability_for_coldkeys(coldkeys, netuids)``: per coldkey and netuid, the
    alpha it holds over all hotkeys; simnet has no locks, so all of it is available."""
    if args:
        coldkeys, netuids = args.get("coldkeys") or [], args.get("netuids") or []
    else:
        coldkeys, netuids = (list(params) + [[], []])[:2]
    answer: dict = {}
    for coldkey in coldkeys:
        held: dict[int, int] = {}
        for position in _stake_positions(state, str(coldkey)):
            held[position["netuid"]] = held.get(position["netuid"], 0) + position["stake"]
        answer[coldkey] = {n: {"total": held.get(n, 0), "locked": 0, "available": held.get(n, 0)}
                           for n in netuids if isinstance(n, int)}
    return answer


def _lazy(name: str) -> Callable:
    def call(state: ChainState, netuid: Any, params: Any, args: dict) -> Any:
        from . import records

        return getattr(records, name)(state, netuid, params)
    return call


RUNTIME_APIS: dict[tuple[str, str], Callable] = {
    ("SubnetInfoRuntimeApi", "get_metagraph"): _lazy("metagraph"),
    ("SubnetInfoRuntimeApi", "get_subnet_hyperparams_v3"): _lazy("hyperparams_v3"),
    ("SubnetInfoRuntimeApi", "get_subnet_hyperparams_v2"): _lazy("hyperparams_v2"),
    ("SubnetInfoRuntimeApi", "get_subnet_hyperparams"): _lazy("hyperparams_v2"),
    ("SubnetInfoRuntimeApi", "get_next_epoch_start_block"): _next_epoch,
    ("SubnetInfoRuntimeApi", "get_all_metagraphs"): _lazy("all_metagraphs"),
    ("NeuronInfoRuntimeApi", "get_neurons_lite"): _lazy("neurons_lite"),
    ("NeuronInfoRuntimeApi", "get_neurons"): _lazy("neurons_full"),
    ("SwapRuntimeApi", "current_alpha_price"): _price,
    ("SwapRuntimeApi", "current_alpha_price_all"): _prices,
    ("SwapRuntimeApi", "sim_swap_tao_for_alpha"): _sim_swap("tao"),
    ("SwapRuntimeApi", "sim_swap_alpha_for_tao"): _sim_swap("alpha"),
    ("StakeInfoRuntimeApi", "get_stake_info_for_hotkey_coldkey_netuid"):
        _stake_info_for_hotkey_coldkey_netuid,
    ("StakeInfoRuntimeApi", "get_stake_info_for_coldkey"): _stake_info_for_coldkey,
    ("StakeInfoRuntimeApi", "get_stake_info_for_coldkeys"): _stake_info_for_coldkeys,
    ("StakeInfoRuntimeApi", "get_stake_availability_for_coldkeys"): _stake_availability,
    ("SubnetRegistrationRuntimeApi", "get_network_registration_cost"):
        lambda *_: NETWORK_LOCK_RAO,
}
