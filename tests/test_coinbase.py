"""Per-block alpha split and epoch payout to stake (§7)."""

from __future__ import annotations

import pytest

from simnet import coinbase
from simnet.coinbase import PendingEmission, pay_out_epoch
from simnet.fixed_point import HALF, ONE


@pytest.mark.parametrize(
    "issuance, emission",
    [
        (0, 1_000_000_000),
        (10_500_000_000_000_000 - 1, 1_000_000_000),
        (10_500_000_000_000_000, 500_000_000),
        (15_750_000_000_000_000, 250_000_000),
        (21_000_000_000_000_000, 0),
    ],
)
def test_block_emission_halves_with_issuance(issuance, emission):
    assert coinbase.block_emission_for_issuance(issuance) == emission


def test_owner_cut_disabled_leaves_everything_to_participants():
    split = coinbase.split_block_emission(1_000_000_000, owner_cut_enabled=False)
    assert (split.owner_cut, split.server, split.validator) == (0, 500_000_000, 500_000_000)


def test_root_share_comes_out_of_the_validator_half_only():
    split = coinbase.split_block_emission(1_000_000_000, owner_cut_enabled=False, root_share=HALF, root_sell=True)
    assert (split.server, split.validator, split.root) == (500_000_000, 250_000_000, 250_000_000)


def test_unsold_root_alpha_is_recycled():
    split = coinbase.split_block_emission(1_000_000_000, owner_cut_enabled=False, root_share=HALF)
    assert (split.root, split.recycled) == (0, 250_000_000)


def test_root_proportion_is_zero_without_root_stake():
    assert coinbase.root_proportion(root_tao=0, alpha_issuance=10**15) == 0


def test_pending_emission_excludes_owner_cut_from_rao_emission():
    pending = PendingEmission().accrue(coinbase.split_block_emission(1_000_000_000))
    assert pending.rao_emission == 410_002_288 * 2


def test_miners_are_paid_their_epoch_amounts():
    payout = pay_out_epoch([0, 300, 700], [1000, 0, 0], PendingEmission(server=1000, validator=1000))
    assert payout.miner_stake == [0, 300, 700]


def test_owner_hotkey_incentive_is_burned():
    payout = pay_out_epoch([400, 600], [1000, 0], PendingEmission(server=1000, validator=1000), owner_hotkey_uids={0})
    assert (payout.miner_stake, payout.burned) == ([0, 600], 400)


def test_validators_take_both_pots_when_no_miner_earns():
    payout = pay_out_epoch([0, 0], [500, 500], PendingEmission(server=1000, validator=1000), delegate_take=[0, 0])
    assert payout.nominator_stake == [1000, 1000]


def test_validator_pot_is_shared_by_epoch_dividends():
    pending = PendingEmission(server=1000, validator=2000)
    payout = pay_out_epoch([1000, 0, 0], [0, 250, 750], pending, delegate_take=[0, 0, 0])
    assert payout.nominator_stake == [0, 500, 1500]


def test_delegate_take_is_split_from_nominator_share():
    payout = pay_out_epoch([0], [1_000_000_000], PendingEmission(validator=1_000_000_000))
    assert payout.validator_take == [179_995_422]
    assert payout.nominator_stake == [820_004_577]


def test_owner_cut_is_paid_in_full():
    payout = pay_out_epoch([1], [1], PendingEmission(server=1, validator=1, owner_cut=12345))
    assert payout.owner_cut == 12345


def test_root_stake_diverts_dividends_to_root_claimable():
    payout = pay_out_epoch(
        [0],
        [1_000_000],
        PendingEmission(validator=1_000_000, root=1_000_000),
        delegate_take=[0],
        alpha_stake=[100],
        root_stake=[100],
        tao_weight=ONE,
    )
    assert payout.nominator_stake == [1_000_000]
    assert payout.root_claimable == [1_000_000]
