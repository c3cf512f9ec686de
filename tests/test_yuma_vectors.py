"""The test vectors of subtensor's published rules (subtensor's own unit tests), run through `yuma.epoch` and
`coinbase`."""

from __future__ import annotations

import pytest

from simnet import coinbase
from simnet.fixed_point import from_float
from simnet.yuma import epoch, max_upscale_u16, weighted_median_consensus

M = 65535


def subnet(stakes, **overrides) -> dict:
    """A subnet with every UID registered at block 1 and the S1 mock's hyperparameters."""
    n = len(stakes)
    state = {
        "n": n,
        "tempo": 1,
        "owner_uid": None,
        "stake_rao": list(stakes),
        "reg": [1] * n,
        "last_update": [1] * n,
        "permit": [False] * n,
        "weights": [[] for _ in range(n)],
        "bonds": [[] for _ in range(n)],
        "lms": 0,
        "kappa": 32767,
        "bonds_penalty": 65535,
        "bonds_moving_average": 900_000,
        "yuma3": False,
        "liquid_alpha": False,
        "alpha_low": 45875,
        "alpha_high": 58982,
        "steepness": 1000,
        "max_validators": n,
        "stake_threshold": 0,
        "activity_factor": 13_889,
        "commit_reveal": False,
        "commit_block": [None] * n,
    }
    state.update(overrides)
    return state


def run_epoch(state: dict, block: int, rao_emission: int = 1_000_000_000) -> dict:
    """Run the epoch and store its bonds and permits back, as the chain does."""
    out = epoch(state, block, rao_emission)
    state["bonds"], state["permit"] = out["bonds"], out["permit"]
    return out


def set_weights(state: dict, uid: int, dests: list[int], values: list[int], block: int) -> None:
    state["weights"][uid] = [[j, w] for j, w in zip(dests, max_upscale_u16(values))]
    state["last_update"][uid] = block


def bond(out: dict, i: int, j: int) -> int:
    return dict((jj, v) for jj, v in out["bonds"][i]).get(j, 0)


# ---------------------------------------------------------------------------------------------
# §11.1 Yuma 3 with liquid alpha


def yuma3_scenario(stakes) -> dict:
    state = subnet(
        list(stakes) + [0] * (5 - len(stakes)),
        max_validators=3,
        bonds_penalty=0,
        bonds_moving_average=975_000,
        yuma3=True,
        liquid_alpha=True,
        alpha_low=6553,
        alpha_high=19660,
    )
    run_epoch(state, block=2)  # no weights yet: only sets the permits
    return state


def run_yuma3_epochs(state: dict, weights_per_epoch: list[list[list[int]] | None]) -> list[dict]:
    """Epoch e: weights (if given) set at block 2 + e, epoch at block 3 + e."""
    outs = []
    for e, rows in enumerate(weights_per_epoch):
        block = 2 + e
        if rows is not None:
            for uid, row in enumerate(rows):
                set_weights(state, uid, [3, 4], row, block)
        outs.append(run_epoch(state, block + 1))
    return outs


KAPPA_MOVES_FIRST_WEIGHTS = [
    [[M, 0], [M, 0], [M, 0]],
    [[0, M], [M, 0], [M, 0]],
    [[0, M], [0, M], [M, 0]],
    [[0, M], [0, M], [0, M]],
    None,
    None,
]
KAPPA_MOVES_FIRST_DIVIDENDS = [
    [0.8000, 0.1000, 0.1000, 0, 0],
    [1.0000, 0, 0, 0, 0],
    [0.9382, 0.0618, 0, 0, 0],
    [0.8819, 0.0773, 0.0407, 0, 0],
    [0.8564, 0.0844, 0.0592, 0, 0],
    [0.8418, 0.0884, 0.0697, 0, 0],
]
KAPPA_MOVES_FIRST_BONDS = {  # epoch -> rows A, B, C over columns uid3, uid4
    0: [[0.1013, 0], [0.1013, 0], [0.1013, 0]],
    1: [[0.0908, 0.1013], [0.3697, 0], [0.3697, 0]],
    2: [[0.0815, 0.1924], [0.3170, 0.1013], [0.5580, 0]],
    5: [[0.0588, 0.4139], [0.2157, 0.3478], [0.3089, 0.2742]],
}


@pytest.mark.parametrize("e", range(6))
def test_yuma3_kappa_moves_first_dividends(e):
    outs = run_yuma3_epochs(yuma3_scenario([8, 1, 1]), KAPPA_MOVES_FIRST_WEIGHTS)
    got = [d / M for d in outs[e]["dividends"]]
    assert got == pytest.approx(KAPPA_MOVES_FIRST_DIVIDENDS[e], abs=1e-3)


@pytest.mark.parametrize("e", sorted(KAPPA_MOVES_FIRST_BONDS))
def test_yuma3_kappa_moves_first_bonds_match_reference_values(e):
    outs = run_yuma3_epochs(yuma3_scenario([8, 1, 1]), KAPPA_MOVES_FIRST_WEIGHTS)
    got = [[bond(outs[e], i, j) / M for j in (3, 4)] for i in range(3)]
    for got_row, want_row in zip(got, KAPPA_MOVES_FIRST_BONDS[e]):
        assert got_row == pytest.approx(want_row, abs=1e-4)


ONE_EPOCH_SWITCH_DIVIDENDS = [
    [0.33, 0.33, 0.34],
    [0.33, 0.33, 0.34],
    [0.3782, 0.3782, 0.2436],
    [0.3628, 0.3628, 0.2745],
    [0.3541, 0.3541, 0.2917],
    [0.3487, 0.3487, 0.3026],
]


@pytest.mark.parametrize("e", range(6))
def test_yuma3_one_epoch_switch_dividends(e):
    weights = [[[M, 0], [M, 0], [0, M] if epoch_ == 2 else [M, 0]] for epoch_ in range(6)]
    outs = run_yuma3_epochs(yuma3_scenario([33, 33, 34]), weights)
    got = [d / M for d in outs[e]["dividends"][:3]]
    assert got == pytest.approx(ONE_EPOCH_SWITCH_DIVIDENDS[e], abs=1e-3)


# ---------------------------------------------------------------------------------------------
# §11.2 classic Yuma


def test_classic_bonds_match_subtensor_test_bonds_exactly():
    state = subnet([1, 2, 3, 4, 0, 0, 0, 0])
    run_epoch(state, block=1)  # permits only
    servers, values = [4, 5, 6, 7], [M // 4, M // 2, (M // 4) * 3, M]
    for uid in range(4):
        set_weights(state, uid, servers, values, block=2)
    steps = [  # (changes before the epoch, epoch block, column, expected bonds of UIDs 0-3)
        (lambda: None, 2, 4, [16383, 32767, 49151, 65535]),
        (lambda: set_weights(state, 0, [0], [M], block=2), 3, 4, [14582, 32767, 49151, 65535]),
        (lambda: set_weights(state, 1, [1], [M], block=3), 4, 4, [12603, 28321, 49151, 65535]),
        (lambda: set_weights(state, 2, [2], [M], block=4), 5, 7, [12602, 28320, 49150, 65535]),
        (lambda: set_weights(state, 2, [7], [M], block=5), 6, 7, [10951, 24609, 49150, 65535]),
        (lambda: None, 7, 7, [9559, 21482, 49150, 65535]),
        (lambda: None, 8, 7, [8376, 18824, 49150, 65535]),
    ]
    for change, block, column, expected in steps:
        change()
        out = run_epoch(state, block)
        assert [bond(out, i, column) for i in range(4)] == expected, f"epoch at block {block}"


def zero_weights_subnet() -> dict:
    """UID 0 a validator with stake 1, UID 1 a server; both registered at block 0."""
    return subnet([1, 0], reg=[0, 0], last_update=[0, 0])


def test_zero_weights_without_weights_all_emission_goes_to_validator_stake():
    state = zero_weights_subnet()
    assert run_epoch(state, block=0)["emission"] == [1_000_000_000, 0]


def test_zero_weights_server_self_weight_only_gives_validator_everything():
    state = zero_weights_subnet()
    run_epoch(state, block=0)
    set_weights(state, 1, [1], [M], block=1)
    assert run_epoch(state, block=1)["emission"] == [1_000_000_000, 0]


def test_zero_weights_outdated_weights_give_validator_everything():
    state = zero_weights_subnet()
    run_epoch(state, block=0)
    set_weights(state, 0, [1], [M], block=0)  # last_update 0 <= reg 0: outdated
    assert run_epoch(state, block=1)["emission"] == [1_000_000_000, 0]


def test_zero_weights_valid_weights_split_emission_in_half():
    state = zero_weights_subnet()
    run_epoch(state, block=0)
    set_weights(state, 0, [1], [M], block=1)
    assert run_epoch(state, block=2)["emission"] == [500_000_000, 500_000_000]


def test_10_graph_self_weights_fall_back_to_stake():
    state = subnet([1] * 10, reg=[0] * 10, last_update=[0] * 10)
    for uid in range(10):
        set_weights(state, uid, [uid], [M], block=1)
    assert run_epoch(state, block=1)["emission"] == [99_999_999] * 10


# ---------------------------------------------------------------------------------------------
# §6.6 weighted median unit vectors (S1 tests/math.rs)


def rows(matrix):
    return [[(j, from_float(v)) for j, v in enumerate(r)] for r in matrix]


@pytest.mark.parametrize(
    "kappa, expected", [(0.24, [0, 0.3, 0.4]), (0.26, [0, 0.2, 0.4]), (0.76, [0, 0.2, 0.1])]
)
def test_weighted_median_columns_follow_kappa(kappa, expected):
    stake = [from_float(x) for x in [0, 0.75, 0.25, 0]]
    weights = rows([[0, 0.1, 0], [0, 0.2, 0.4], [0, 0.3, 0.1], [0, 0.4, 0.5]])
    got = weighted_median_consensus(stake, weights, 3, from_float(kappa))
    assert got == [from_float(x) for x in expected]


def test_weighted_median_counts_missing_weights_as_zero_votes():
    stake = [from_float(x) for x in [0, 0.3, 0.2, 0.5]]
    weights = rows([[0, 0.1, 0], [0, 0.2, 0.4], [0, 0.3, 0.1], [0, 0, 0.5]])
    got = weighted_median_consensus(stake, weights, 3, from_float(0.51))
    assert got == [from_float(x) for x in [0, 0, 0.4]]


# ---------------------------------------------------------------------------------------------
# §11.4 coinbase


def test_block_split_matches_chain_numbers():
    split = coinbase.split_block_emission(1_000_000_000)
    assert (split.owner_cut, split.server, split.validator) == (179_995_422, 410_002_288, 410_002_288)


def test_block_split_loses_two_rao_to_flooring():
    split = coinbase.split_block_emission(1_000_000_000)
    assert split.owner_cut + split.server + split.validator == 1_000_000_000 - 2


def test_one_tempo_of_360_blocks_accrues_chain_numbers():
    pending = coinbase.PendingEmission()
    for _ in range(360):
        pending = pending.accrue(coinbase.split_block_emission(1_000_000_000))
    assert pending.server == pending.validator == 147_600_823_680
    assert pending.owner_cut == 64_798_351_920


@pytest.mark.parametrize("cut, expected", [(0, 0), (65535, 1_000_000_000)])
def test_owner_cut_extremes(cut, expected):
    assert coinbase.split_block_emission(1_000_000_000, owner_cut_u16=cut).owner_cut == expected


def test_two_stakers_without_weights_each_receive_half_of_the_emission():
    """S1 test_drain_base_with_subnet_with_two_stakers_registered (§7)."""
    state = subnet([1_000_000_000, 1_000_000_000], reg=[0, 0], last_update=[0, 0])
    pending = coinbase.PendingEmission(server=500_000_000, validator=500_000_000)
    out = epoch(state, 1, pending.rao_emission)
    payout = coinbase.pay_out_epoch(out["server_rao"], out["validator_rao"], pending)
    for uid in range(2):
        gained = payout.miner_stake[uid] + payout.validator_take[uid] + payout.nominator_stake[uid]
        assert gained == pytest.approx(500_000_000, abs=10)
