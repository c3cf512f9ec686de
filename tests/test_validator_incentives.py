"""What Yuma Consensus (simnet's epoch, bit-exact with subtensor; Yuma 3 bonds as a new subnet
gets them) does to validators that do not evaluate honestly.

- A validator that puts its weight on its own miner is clipped to the stake-weighted median of
  the others: the miner gets nothing and the validator earns less than it would evaluating.
- A validator that copies another's weights earns no more than one that evaluates: with the same
  epoch's weights (commit-reveal off, as local runs have it) exactly as much; with the weights
  commit-reveal lets it see (the previous epoch's) less, because Yuma 3 bonds reward a validator
  for weighting a miner before the others do.
"""
from __future__ import annotations

import pytest

from simnet.yuma import NEW_SUBNET_HYPERPARAMETERS, epoch, max_upscale_u16

M = 65535


def subnet(stakes: list[int]) -> dict:
    n = len(stakes)
    state = {"n": n, "tempo": 1, "owner_uid": None, "stake_rao": list(stakes), "reg": [1] * n,
             "last_update": [1] * n, "permit": [False] * n, "weights": [[] for _ in range(n)],
             "bonds": [[] for _ in range(n)], "lms": 0, "commit_block": [None] * n}
    state.update({k: v for k, v in NEW_SUBNET_HYPERPARAMETERS.items() if k != "tempo"})
    state.update(commit_reveal=False, max_validators=sum(1 for s in stakes if s > 0))
    epoch_into(state, block=2)  # permits first: no weights yet
    return state


def epoch_into(state: dict, block: int) -> dict:
    out = epoch(state, block, 1_000_000_000)
    state["bonds"], state["permit"], state["lms"] = out["bonds"], out["permit"], block
    return out


def run(state: dict, weights_per_epoch: list[dict[int, dict[int, float]]]) -> list[dict]:
    """Epoch e: each validator's weights (uid -> weight) set at block 3 + 2e, the epoch at 4 + 2e."""
    outs = []
    for e, rows in enumerate(weights_per_epoch):
        block = 3 + 2 * e
        for uid, row in rows.items():
            dests = sorted(row)
            values = max_upscale_u16([round(row[j] * M) for j in dests])
            state["weights"][uid] = [[j, w] for j, w in zip(dests, values)]
            state["last_update"][uid] = block
        outs.append(epoch_into(state, block + 1))
    return outs


def total(outs: list[dict], key: str, uid: int) -> int:
    return sum(out[key][uid] for out in outs)


# uids 0-3 validators, 4-6 miners; miner 6 does no useful work and belongs to validator 3.
STAKES = [30, 30, 20, 20, 0, 0, 0]
HONEST = {4: 0.6, 5: 0.4}
SELF_DEALING = {4: 0.3, 5: 0.2, 6: 0.5}
EPOCHS = 12


def scenario(dealer_weights: dict[int, float]) -> list[dict]:
    return run(subnet(STAKES), [{0: HONEST, 1: HONEST, 2: HONEST, 3: dealer_weights}] * EPOCHS)


def test_weight_to_own_miner_is_clipped_by_consensus_and_the_miner_earns_nothing():
    outs = scenario(SELF_DEALING)
    assert all(out["consensus"][6] == 0 and out["incentive"][6] == 0 for out in outs)
    assert all(out["server_rao"][6] == 0 for out in outs)
    assert outs[-1]["incentive"][4] > outs[-1]["incentive"][5] > 0


def test_self_dealing_validator_earns_less_than_it_would_evaluating():
    honest, dealing = scenario(HONEST), scenario(SELF_DEALING)
    assert dealing[-1]["vtrust"][3] < honest[-1]["vtrust"][3]
    assert total(dealing, "validator_rao", 3) < total(honest, "validator_rao", 3)
    # the honest validators lose nothing to it
    assert total(dealing, "validator_rao", 0) >= total(honest, "validator_rao", 0)


# uids 0-2 validators (A leads the copy, E evaluates, C copies A), 3-4 miners; miner 4 overtakes
# miner 3 at epoch SWITCH.
COPY_STAKES = [40, 30, 30, 0, 0]
SWITCH, COPY_EPOCHS = 4, 14


def quality(e: int) -> dict[int, float]:
    return {3: 1.0, 4: 0.0} if e < SWITCH else {3: 0.1, 4: 0.9}


def copy_scenario(lag: int) -> list[dict]:
    """A and E evaluate every epoch; C sets A's weights of `lag` epochs before (0: the same epoch)."""
    rows = [{0: quality(e), 1: quality(e), 2: quality(max(0, e - lag))} for e in range(COPY_EPOCHS)]
    return run(subnet(COPY_STAKES), rows)


def test_copying_the_same_epochs_weights_earns_exactly_what_evaluating_does():
    outs = copy_scenario(lag=0)
    assert total(outs, "validator_rao", 2) == total(outs, "validator_rao", 1)


def test_copying_the_weights_commit_reveal_shows_earns_less_than_evaluating():
    outs = copy_scenario(lag=1)
    copier, evaluator = total(outs, "validator_rao", 2), total(outs, "validator_rao", 1)
    assert copier < evaluator
    assert outs[SWITCH]["dividends"][2] < outs[SWITCH]["dividends"][1]  # it bonds to the rising miner late
    assert copier / evaluator == pytest.approx(1.0, abs=0.2)  # and never catches up by more than that
