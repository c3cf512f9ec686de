"""Reads of subtensor features simnet does not model, answered as subtensor answers them on a
chain where nobody has used the feature (so btcli's wallet and subnet views work unchanged).

simnet has no root network (so no root stake and no validator baskets), no conviction locks,
no identities, no TAO flow or TAO emission per subnet, no miner collateral, no auto-stake and
no queued subnet registration. Each item below is one of those; an item that is in no table raises
``UnknownItem`` instead of answering something made up.
"""

from __future__ import annotations

from typing import Any, Callable

# Storage maps that are empty on such a chain (query_map answers []).
EMPTY_MAPS: frozenset[tuple[str, str]] = frozenset({
    ("SubtensorModule", "Lock"),                 # conviction locks [coldkey] -> ...
    ("SubtensorModule", "LockingColdkeys"),      # their reverse index [netuid, hotkey]
    ("SubtensorModule", "SubnetIdentitiesV3"),   # subnet identities
    ("SubtensorModule", "SubnetEmaTaoFlow"),     # TAO flow EMA per subnet
    ("SubtensorModule", "SubnetTaoInEmission"),  # TAO emission per subnet
    ("SubtensorModule", "AutoStakeDestination"), # auto-stake of emissions [coldkey] -> ...
    ("Commitments", "RevealedCommitments"),      # timelocked commitments (no drand offline)
})

# Optional storage values (OptionQuery) that are never set on such a chain: None.
NONE_VALUES: frozenset[str] = frozenset({
    "NetworkRegistrationQueue", "CurrentDissolveCleanupStatus", "DissolveCleanupQueue",
    "MinerCollateral", "SubnetIdentitiesV3", "LastPowRegistrationBlock", "AutoStakeDestination",
})


def _root_basket_owed(*_: Any) -> int:
    """``get_root_basket_owed(coldkey)``: TAO owed from root dividends (rao); no root stake."""
    return 0


def _root_basket_positions(*_: Any) -> list:
    """``get_root_basket_positions(coldkey)``: ``[(hotkey, beta, payout)]``; no root stake."""
    return []


RUNTIME_APIS: dict[tuple[str, str], Callable[..., Any]] = {
    ("BetaBasketRuntimeApi", "get_root_basket_owed"): _root_basket_owed,
    ("BetaBasketRuntimeApi", "get_root_basket_positions"): _root_basket_positions,
}
