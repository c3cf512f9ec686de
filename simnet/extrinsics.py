"""Dispatch of simnet extrinsics, with subtensor's checks, in its order, and its error names.

``dispatch(state, call, origin)`` applies one call or raises ``DispatchError(name)``; it
returns the events the call emitted as ``(module, event, attributes)`` triples. ``origin``
is the signer's ss58, or ``ROOT`` for a call the sudo key wrapped in ``Sudo.sudo``.
Fees are zero. A failed call leaves no trace: the node snapshots nothing, so every check
here runs before the first write.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Optional

from . import registration
from .codec import SimCall
from .state import EXISTENTIAL_DEPOSIT, NETWORK_LOCK_RAO, ChainState, new_subnet

ROOT = "<root>"
Events = list[tuple[str, str, Any]]


class DispatchError(Exception):
    """A call the chain refuses; ``name`` is the pallet error name."""

    def __init__(self, name: str, module: str = "SubtensorModule"):
        super().__init__(name)
        self.name = name
        self.module = module


def _int(params: dict, key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DispatchError("InvalidValue")
    return value


def _subnet(state: ChainState, netuid: Any) -> dict:
    if isinstance(netuid, bool) or not isinstance(netuid, int):
        raise DispatchError("SubnetNotExists")
    subnet = state.subnet(netuid)
    if subnet is None:
        raise DispatchError("SubnetNotExists")
    return subnet


# -- SubtensorModule: subnets ------------------------------------------------------------------


def register_network(state: ChainState, origin: str, p: dict) -> Events:
    hotkey = p.get("hotkey")
    if not isinstance(hotkey, str):
        raise DispatchError("InvalidValue")
    owner = state.owner_of(hotkey)
    if owner is not None and owner != origin:
        raise DispatchError("NonAssociatedColdKey")
    if state.account(origin)["free"] < NETWORK_LOCK_RAO:
        raise DispatchError("CannotAffordLockCost")
    existing = set(state.netuids())
    netuid = next(n for n in range(1, 4096) if n not in existing)
    block = state.head
    state.add_free(origin, -NETWORK_LOCK_RAO)
    state.set_owner(hotkey, origin)
    subnet = new_subnet(netuid, origin, hotkey, block, NETWORK_LOCK_RAO)
    state.save_subnet(subnet)
    registration.append_neuron(state, subnet, hotkey, origin, block)
    return [("SubtensorModule", "NetworkAdded", (netuid, 0)),
            ("SubtensorModule", "NeuronRegistered", (netuid, 0, hotkey))]


def start_call(state: ChainState, origin: str, p: dict) -> Events:
    subnet = _subnet(state, p.get("netuid"))
    if origin != subnet["owner_coldkey"]:
        raise DispatchError("NotSubnetOwner")
    if subnet["first_emission_block"] is not None:
        raise DispatchError("FirstEmissionBlockNumberAlreadySet")
    subnet["first_emission_block"] = state.head + 1
    subnet["subtoken_enabled"] = True
    state.save_subnet(subnet)
    return [("SubtensorModule", "FirstEmissionBlockNumberSet", (subnet["netuid"], state.head + 1))]


# -- registration --------------------------------------------------------------------------------


def burned_register(state: ChainState, origin: str, p: dict) -> Events:
    netuid, hotkey = p.get("netuid"), p.get("hotkey")
    if netuid == 0:
        raise DispatchError("RegistrationNotPermittedOnRootSubnet")
    subnet = _subnet(state, netuid)
    if not isinstance(hotkey, str):
        raise DispatchError("InvalidValue")
    if not subnet["registration_allowed"]:
        raise DispatchError("SubNetRegistrationDisabled")
    if state.uid_of(netuid, hotkey) is not None:
        raise DispatchError("HotKeyAlreadyRegisteredInSubNet")
    price = int(subnet["burn"])
    if "limit_price" in p and price > int(p["limit_price"]):
        raise DispatchError("RegistrationPriceLimitExceeded")
    if state.account(origin)["free"] < price:
        raise DispatchError("NotEnoughBalanceToStake")
    owner = state.owner_of(hotkey)
    if owner is not None and owner != origin:
        raise DispatchError("NonAssociatedColdKey")
    uid = registration.register(state, subnet, hotkey, origin, state.head)  # may raise
    state.add_free(origin, -price)
    subnet = state.subnet(netuid)
    subnet["burn"] = registration.clamp_burn(subnet, int(price * subnet["burn_increase_mult"]))
    subnet["regs_this_block"] += 1
    state.save_subnet(subnet)
    state.set_owner(hotkey, origin)
    return [("SubtensorModule", "NeuronRegistered", (netuid, uid, hotkey))]


# -- staking ------------------------------------------------------------------------------------


def add_stake(state: ChainState, origin: str, p: dict) -> Events:
    subnet = _subnet(state, p.get("netuid"))
    hotkey = p.get("hotkey")
    amount = _int(p, "amount_staked")
    if not subnet["subtoken_enabled"]:
        raise DispatchError("SubtokenDisabled")
    if not isinstance(hotkey, str) or state.owner_of(hotkey) is None:
        raise DispatchError("HotKeyAccountNotExists")
    if amount < 500_000:
        raise DispatchError("AmountTooLow")
    if state.account(origin)["free"] < amount:
        raise DispatchError("NotEnoughBalanceToStake")
    if "limit_price" in p and alpha_price_rao(subnet) > int(p["limit_price"]):
        raise DispatchError("SlippageTooHigh")
    state.add_free(origin, -amount)
    state.add_stake(hotkey, origin, subnet["netuid"], amount)  # 1:1 pool
    return [("SubtensorModule", "StakeAdded",
             (origin, hotkey, amount, amount, subnet["netuid"], 0))]


def remove_stake(state: ChainState, origin: str, p: dict) -> Events:
    subnet = _subnet(state, p.get("netuid"))
    hotkey = p.get("hotkey")
    amount = _int(p, "amount_unstaked")
    if not isinstance(hotkey, str) or state.owner_of(hotkey) is None:
        raise DispatchError("HotKeyAccountNotExists")
    if amount <= 0:
        raise DispatchError("AmountTooLow")
    if state.stake_of(hotkey, subnet["netuid"]).get(origin, 0) < amount:
        raise DispatchError("NotEnoughStakeToWithdraw")
    state.add_stake(hotkey, origin, subnet["netuid"], -amount)
    state.add_free(origin, amount)
    return [("SubtensorModule", "StakeRemoved",
             (origin, hotkey, amount, amount, subnet["netuid"], 0))]


def alpha_price_rao(subnet: dict) -> int:
    """Rao per alpha: simnet's pool is a fixed 1:1 swap. Swaps (stake, unstake, the burn of a
    registration) leave its reserves ``SubnetTAO``/``SubnetAlphaIn`` at the lock amount, so
    the spot price readers derive from them (``tao_in / alpha_in``) is this one too."""
    return 1_000_000_000


# -- serving -------------------------------------------------------------------------------------


def serve_axon(state: ChainState, origin: str, p: dict) -> Events:
    netuid = p.get("netuid")
    subnet = _subnet(state, netuid)
    uid = state.uid_of(netuid, origin)
    if uid is None:
        raise DispatchError("HotKeyNotRegisteredInNetwork")
    ip, ip_type, port = p.get("ip"), p.get("ip_type"), p.get("port")
    if ip_type not in (4, 6):
        raise DispatchError("InvalidIpType")
    if not _valid_ip(ip, ip_type):
        raise DispatchError("InvalidIpAddress")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise DispatchError("InvalidPort")
    neuron = state.neuron(netuid, uid)
    previous = neuron.get("axon")
    if previous and state.head - previous["block"] < subnet["serving_rate_limit"]:
        raise DispatchError("ServingRateLimitExceeded")
    neuron["axon"] = {
        "block": state.head, "version": int(p.get("version") or 0), "ip": int(ip),
        "port": port, "ip_type": ip_type, "protocol": int(p.get("protocol") or 0),
        "placeholder1": int(p.get("placeholder1") or 0),
        "placeholder2": int(p.get("placeholder2") or 0),
    }
    state.save_neuron(netuid, uid, neuron)
    return [("SubtensorModule", "AxonServed", (netuid, origin))]


def _valid_ip(ip: Any, ip_type: int) -> bool:
    """Subtensor's check, except that loopback is allowed (local runs serve on 127.0.0.1)."""
    if isinstance(ip, bool) or not isinstance(ip, int) or ip <= 0:
        return False
    try:
        ipaddress.ip_address(ip) if ip_type == 4 else ipaddress.IPv6Address(ip)
    except ValueError:
        return False
    return ip < 2**32 - 1 if ip_type == 4 else True


# -- commitments ---------------------------------------------------------------------------------


def set_commitment(state: ChainState, origin: str, p: dict) -> Events:
    netuid = p.get("netuid")
    if not isinstance(netuid, int) or state.uid_of(netuid, origin) is None:
        raise DispatchError("AccountNotAllowedCommit", "Commitments")
    info = p.get("info")
    fields = info.get("fields") if isinstance(info, dict) else None
    if not isinstance(fields, list):
        raise DispatchError("InvalidValue", "Commitments")
    if fields and isinstance(fields[0], list):  # [[field, ...]] encodes like [field, ...]
        fields = fields[0]
    if len(fields) > 3:
        raise DispatchError("TooManyFieldsInCommitmentInfo", "Commitments")
    normalised = [_commitment_field(f) for f in fields]
    state.set_commitment(netuid, origin, {"block": state.head, "deposit": 0,
                                          "info": {"fields": normalised}})
    return [("Commitments", "Commitment", {"netuid": netuid, "who": origin})]


def _commitment_field(field: Any) -> Any:
    if isinstance(field, str):
        return field
    if not isinstance(field, dict) or len(field) != 1:
        raise DispatchError("InvalidValue", "Commitments")
    ((variant, payload),) = field.items()
    if isinstance(payload, (bytes, bytearray)):
        payload = "0x" + bytes(payload).hex()
    elif isinstance(payload, list) and all(isinstance(b, int) for b in payload):
        payload = "0x" + bytes(payload).hex()
    if variant.startswith("Raw") and isinstance(payload, str):
        raw = bytes.fromhex(payload[2:]) if payload.startswith("0x") else payload.encode()
        if variant != f"Raw{len(raw)}" or len(raw) > 128:
            raise DispatchError("InvalidValue", "Commitments")
        payload = "0x" + raw.hex()
    return {variant: payload}


# -- balances ------------------------------------------------------------------------------------


def transfer(state: ChainState, origin: str, p: dict) -> Events:
    dest, value = p.get("dest"), p.get("value")
    if isinstance(dest, dict):  # MultiAddress {"Id": ss58}
        dest = dest.get("Id")
    if not isinstance(dest, str) or isinstance(value, bool) or not isinstance(value, int) \
            or value < 0:
        raise DispatchError("InvalidValue", "Balances")
    if value == 0 or int(state.account(dest)["free"]) + value < EXISTENTIAL_DEPOSIT:
        # pallet_balances: a transfer may not leave the destination below the existential
        # deposit; simnet refuses zero moves too, so no transfer ever touches an empty key.
        raise DispatchError("ExistentialDeposit", "Balances")
    if state.account(origin)["free"] < value:
        raise DispatchError("InsufficientBalance", "Balances")
    state.add_free(origin, -value)
    state.add_free(dest, value)
    return [("Balances", "Transfer", {"from": origin, "to": dest, "amount": value})]


def transfer_all(state: ChainState, origin: str, p: dict) -> Events:
    free = state.account(origin)["free"]
    return transfer(state, origin, {"dest": p.get("dest"), "value": free})


# -- table ---------------------------------------------------------------------------------------

Handler = Callable[[ChainState, str, dict], Events]


def handlers() -> dict[tuple[str, str], Handler]:
    from . import weights  # local: it imports DispatchError from here

    table: dict[tuple[str, str], Handler] = {
        ("SubtensorModule", "register_network"): register_network,
        ("SubtensorModule", "register_network_with_identity"): register_network,
        ("SubtensorModule", "start_call"): start_call,
        ("SubtensorModule", "burned_register"): burned_register,
        ("SubtensorModule", "register_limit"): burned_register,
        ("SubtensorModule", "add_stake"): add_stake,
        ("SubtensorModule", "add_stake_limit"): add_stake,
        ("SubtensorModule", "remove_stake"): remove_stake,
        ("SubtensorModule", "remove_stake_limit"): remove_stake,
        ("SubtensorModule", "serve_axon"): serve_axon,
        ("SubtensorModule", "set_weights"): weights.set_weights,
        ("SubtensorModule", "set_mechanism_weights"): weights.set_weights,
        ("SubtensorModule", "commit_timelocked_weights"): weights.commit_timelocked,
        ("SubtensorModule", "commit_timelocked_mechanism_weights"): weights.commit_timelocked,
        ("Commitments", "set_commitment"): set_commitment,
        ("Balances", "transfer_keep_alive"): transfer,
        ("Balances", "transfer_allow_death"): transfer,
        ("Balances", "transfer_all"): transfer_all,
        ("MevShield", "submit_encrypted"): lambda state, origin, p: [],
        ("System", "remark"): lambda state, origin, p: [],
    }
    return table


_HANDLERS: Optional[dict] = None


def dispatch(state: ChainState, call: SimCall, origin: str) -> Events:
    """Apply ``call`` as ``origin`` or raise ``DispatchError``."""
    global _HANDLERS
    from . import admin

    if _HANDLERS is None:
        _HANDLERS = handlers()
    if not isinstance(call, SimCall) or not isinstance(call.params, dict):
        raise DispatchError("CallFiltered", "System")
    if call.module == "Sudo" and call.function == "sudo":
        if origin != state.sudo_key:
            raise DispatchError("RequireSudo", "Sudo")
        inner = call.params.get("call")
        if not isinstance(inner, SimCall):
            raise DispatchError("CallFiltered", "System")
        return dispatch(state, inner, ROOT) + [("Sudo", "Sudid", {"sudo_result": {"Ok": None}})]
    if call.module == "AdminUtils":
        return admin.dispatch(state, call, origin)
    handler = _HANDLERS.get((call.module, call.function))
    if handler is None:
        raise DispatchError("CallFiltered", "System")
    if origin == ROOT:
        raise DispatchError("BadOrigin", "System")
    return handler(state, origin, call.params)
