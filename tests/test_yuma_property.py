"""`yuma.epoch` agrees exactly (every u16 and every rao) with a literal transcription of the
subtensor's published rules reference pseudocode (`tests/yuma_reference.py`) on random subnets."""

from __future__ import annotations

import copy
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from simnet.yuma import epoch
from tests.yuma_reference import reference_epoch

U16 = 65535


def random_u16(rng: random.Random) -> int:
    return rng.choice([0, U16, 32767, rng.randrange(U16 + 1), rng.randrange(U16 + 1)])


def random_sparse_row(rng: random.Random, n: int, allow_out_of_range: bool) -> list[list[int]]:
    density = rng.choice([0.0, 0.1, 0.5, 1.0])
    uids = [j for j in range(n) if rng.random() < density]
    if allow_out_of_range and rng.random() < 0.05:
        uids.append(n + rng.randrange(3))  # stale entries past n are ignored by the chain
    return [[j, random_u16(rng)] for j in uids]


def random_stake(rng: random.Random) -> int:
    kind = rng.random()
    if kind < 0.25:
        return 0
    if kind < 0.5:
        return rng.randrange(1, 1000)
    return rng.randrange(1, 10**16)


def random_subnet(seed: int, n: int, yuma3: bool, liquid_alpha: bool) -> tuple[dict, int, int]:
    rng = random.Random(seed)
    block = rng.randrange(1, 20_000)
    tempo = rng.choice([1, 10, 100, 360, rng.randrange(1, 1000)])
    reg = [rng.choice([0, rng.randrange(block + 1), max(0, block - rng.randrange(1, 30))]) for _ in range(n)]
    last_update = [rng.choice([r, rng.randrange(r, block + 1), block]) for r in reg]
    owner_uid = rng.choice([None, 0, rng.randrange(n)])
    alpha_low = rng.choice([45875, 6553, rng.randrange(1638, U16 + 1)])
    stake_threshold = rng.choice([0, 0, 1000, rng.randrange(10**15)])
    commit_reveal = rng.random() < 0.3
    state = {
        "n": n,
        "tempo": tempo,
        "owner_uid": owner_uid,
        "stake_rao": [random_stake(rng) for _ in range(n)],
        "reg": reg,
        "last_update": last_update,
        "permit": [rng.random() < 0.7 for _ in range(n)],
        "weights": [random_sparse_row(rng, n, allow_out_of_range=True) for _ in range(n)],
        "bonds": [random_sparse_row(rng, n, allow_out_of_range=False) for _ in range(n)],
        "lms": rng.choice([0, max(0, block - tempo), rng.randrange(block)]),
        "kappa": rng.choice([32767, 32767, rng.randrange(U16 + 1)]),
        "bonds_penalty": rng.choice([0, U16, rng.randrange(U16 + 1)]),
        "bonds_moving_average": rng.choice([900_000, 975_000, 0, 1_000_000, rng.randrange(1_000_001)]),
        "yuma3": yuma3,
        "liquid_alpha": liquid_alpha,
        "alpha_low": alpha_low,
        "alpha_high": rng.choice([max(alpha_low, 58982), rng.randrange(alpha_low, U16 + 1)]),
        "steepness": rng.choice([1000, 0, rng.randrange(10_000)]),
        "max_validators": rng.choice([64, n, rng.randrange(1, n + 5)]),
        "stake_threshold": stake_threshold,
        "activity_factor": rng.choice([13_889, 1000, rng.randrange(1000, 50_001)]),
        "commit_reveal": commit_reveal,
        "commit_block": [rng.choice([None, rng.randrange(block + 1)]) for _ in range(n)],
    }
    rao_emission = rng.choice([0, 1_000_000_000, 147_600_823_680 * 2, rng.randrange(10**13)])
    return state, block, rao_emission


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 64),
    yuma3=st.booleans(),
    liquid_alpha=st.booleans(),
)
def test_epoch_matches_appendix_a_reference_exactly(seed, n, yuma3, liquid_alpha):
    state, block, rao_emission = random_subnet(seed, n, yuma3, liquid_alpha)
    before = copy.deepcopy(state)

    got = epoch(state, block, rao_emission)
    want = reference_epoch(state, block, rao_emission)

    assert state == before, "epoch must not mutate its input"
    for key, expected in want.items():
        assert got[key] == expected, key
