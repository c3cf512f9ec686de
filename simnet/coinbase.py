"""Alpha coinbase for one subnet: per-block minting and split and the payout of an
epoch's output to stake. Pure functions over rao amounts (Python ints), with the
chain's U96F32 arithmetic so every floored amount matches the chain to the rao.

Typical use from the simulated chain::

    pending = PendingEmission()
    every block (once the subnet is started):
        split = split_block_emission(block_emission_for_issuance(alpha_issuance))
        pending = pending.accrue(split)
    when the epoch fires:
        out = yuma.epoch(state, block, pending.rao_emission)
        payout = pay_out_epoch(out["server_rao"], out["validator_rao"], pending,
                               owner_hotkey_uids=..., delegate_take=...)
        pending = PendingEmission()
        apply payout.owner_cut, payout.miner_stake, payout.validator_take, payout.nominator_stake to stake
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Sequence

from simnet.fixed_point import (
    HALF,
    ONE,
    U16_MAX,
    U64_MAX,
    u96_div,
    u96_from_int,
    u96_mul,
    u96_sub,
    u96_to_u64,
)

DEFAULT_BLOCK_EMISSION = 1_000_000_000  # rao of alpha per block before any halving
TOTAL_SUPPLY = 21_000_000_000_000_000  # rao
DEFAULT_SUBNET_OWNER_CUT = 11_796  # u16, ~0.18
DEFAULT_DELEGATE_TAKE = 11_796  # u16, ~18%
DEFAULT_TAO_WEIGHT = 971_718_665_099_567_868  # u64 proportion of u64::MAX, ~0.0527


# ---------------------------------------------------------------------------------------------
# §5: per block


def block_emission_for_issuance(alpha_issuance: int) -> int:
    """Alpha minted per block: 1e9 rao halving at 10.5M, 15.75M, ... alpha of issuance.

    ``alpha_issuance`` = SubnetAlphaIn + SubnetAlphaOut, in rao. Mirrors
    ``get_block_emission_for_issuance``: floor(log2(1 / (1 - issuance / 21e15))) halvings,
    computed in I96F32 (the floor of a log2 is the position of the top bit).
    """
    if alpha_issuance >= TOTAL_SUPPLY:
        return 0
    fraction_issued = u96_div(u96_from_int(alpha_issuance), u96_from_int(TOTAL_SUPPLY))
    inverse_residual = u96_div(ONE, ONE - fraction_issued)
    if inverse_residual == 0:  # the division overflowed: the chain errors and emits nothing
        return 0
    halvings = max(0, inverse_residual.bit_length() - 1 - 32)
    multiplier = u96_from_int(1 << halvings) if halvings < 95 else (1 << 127) - 1
    percentage = u96_div(ONE, multiplier)
    return u96_to_u64(u96_mul(percentage, u96_from_int(DEFAULT_BLOCK_EMISSION)))


def tao_weight_proportion(tao_weight_u64: int = DEFAULT_TAO_WEIGHT) -> int:
    """``get_tao_weight``: the stored u64 TaoWeight as a U96F32 proportion of u64::MAX."""
    return u96_div(u96_from_int(tao_weight_u64), u96_from_int(U64_MAX))


def root_proportion(root_tao: int, alpha_issuance: int, tao_weight: int | None = None) -> int:
    """Share of validator emission owed to root stakers (U96F32 raw; 0 on a fresh localnet).

    root_tao x tao_weight / (root_tao x tao_weight + alpha_issuance), as in
    ``block_step.rs::root_proportion``. ``tao_weight`` is a U96F32 raw proportion.
    """
    weight = tao_weight_proportion() if tao_weight is None else tao_weight
    weighted_root = u96_mul(u96_from_int(root_tao), weight)
    return u96_div(weighted_root, weighted_root + u96_from_int(alpha_issuance))


@dataclass(frozen=True)
class BlockSplit:
    """One block's alpha, floored to rao the way each pending accumulator adds it."""

    owner_cut: int  # -> PendingOwnerCut
    server: int  # -> PendingServerEmission (miners)
    validator: int  # -> PendingValidatorEmission
    root: int  # -> PendingRootAlphaDivs (0 unless root alpha is sold)
    recycled: int  # root alpha recycled when it is not sold


def split_block_emission(
    alpha_out: int,
    owner_cut_u16: int = DEFAULT_SUBNET_OWNER_CUT,
    owner_cut_enabled: bool = True,
    root_share: int = 0,
    root_sell: bool = False,
) -> BlockSplit:
    """Split one block's ``alpha_out`` (rao) into owner, miner, validator and root parts (§5).

    All in U96F32; each part is floored on its own, so a couple of rao per block are lost.
    ``root_share`` is ``root_proportion(...)`` (U96F32 raw). ``root_sell`` is the chain's root
    sell flag (sum of EMA prices > 1); without it the root part is recycled.
    """
    remaining = u96_from_int(alpha_out)
    owner_cut = 0
    if owner_cut_enabled:
        cut = u96_div(u96_from_int(owner_cut_u16), u96_from_int(U16_MAX))
        owner_cut_raw = u96_mul(remaining, cut)
        remaining = u96_sub(remaining, owner_cut_raw)  # the unfloored cut is removed
        owner_cut = u96_to_u64(owner_cut_raw)
    root_alpha = u96_mul(u96_mul(root_share, remaining), HALF)
    server = u96_mul(remaining, HALF)
    validator = u96_sub(u96_sub(remaining, server), root_alpha)
    root = u96_to_u64(root_alpha)
    return BlockSplit(
        owner_cut=owner_cut,
        server=u96_to_u64(server),
        validator=u96_to_u64(validator),
        root=root if root_sell else 0,
        recycled=0 if root_sell else root,
    )


@dataclass(frozen=True)
class PendingEmission:
    """The four accumulators drained at each epoch (rao)."""

    server: int = 0
    validator: int = 0
    root: int = 0
    owner_cut: int = 0

    def accrue(self, split: BlockSplit) -> "PendingEmission":
        return PendingEmission(
            server=self.server + split.server,
            validator=self.validator + split.validator,
            root=self.root + split.root,
            owner_cut=self.owner_cut + split.owner_cut,
        )

    @property
    def rao_emission(self) -> int:
        """What the epoch distributes: server + validator + root (the owner cut is paid apart)."""
        return self.server + self.validator + self.root


# ---------------------------------------------------------------------------------------------
# §7: epoch output -> stake


@dataclass(frozen=True)
class Payout:
    """Where an epoch's alpha goes (rao; per-UID lists are indexed by UID).

    * ``owner_cut``: staked to (subnet owner hotkey, owner coldkey).
    * ``miner_stake``: incentive staked to each hotkey (or its auto-stake destination) under
      its owner coldkey; 0 for owner hotkeys.
    * ``burned``: incentive earned by owner hotkeys, burned (or recycled).
    * ``validator_take``: the delegate take of each validator's alpha and root dividends,
      staked to (hotkey, hotkey's owner coldkey).
    * ``nominator_stake``: the rest of the alpha dividends, added to the hotkey's stake pool so
      every nominator gains pro rata (all of it to the owner when nobody else stakes).
    * ``root_claimable``: root-alpha dividends after take, for the hotkey's root stakers.
    """

    owner_cut: int
    miner_stake: list[int]
    burned: int
    validator_take: list[int]
    nominator_stake: list[int]
    root_claimable: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.owner_cut
            + sum(self.miner_stake)
            + self.burned
            + sum(self.validator_take)
            + sum(self.nominator_stake)
            + sum(self.root_claimable)
        )


def pay_out_epoch(
    server_rao: Sequence[int],
    validator_rao: Sequence[int],
    pending: PendingEmission,
    owner_hotkey_uids: Collection[int] = (),
    delegate_take: Sequence[int] | None = None,
    alpha_stake: Sequence[int] | None = None,
    root_stake: Sequence[int] | None = None,
    tao_weight: int | None = None,
) -> Payout:
    """Turn ``epoch`` output plus the drained accumulators into stake changes (§7).

    * ``server_rao`` / ``validator_rao``: the epoch's per-UID miner and validator emission.
    * ``pending``: the accumulators drained for this epoch.
    * ``owner_hotkey_uids``: UIDs whose hotkey is the subnet owner hotkey or owned by the owner
      coldkey; their incentive is burned.
    * ``delegate_take``: u16 take per UID (default 11796 each).
    * ``alpha_stake`` / ``root_stake``: per-UID alpha stake and root TAO stake; only needed to
      split dividends between alpha and root when root stake exists (default: none).
    * ``tao_weight``: U96F32 raw proportion (default: the chain's TaoWeight).

    Childkeys are not modelled (each hotkey keeps all its dividends). Miners are paid their
    epoch amounts; validators share the pending validator pot (plus the server pot when no
    miner earned incentive) in proportion to their epoch dividends.
    """
    n = len(server_rao)
    takes = list(delegate_take) if delegate_take is not None else [DEFAULT_DELEGATE_TAKE] * n
    owners = set(owner_hotkey_uids)

    miner_stake = [0 if uid in owners else rao for uid, rao in enumerate(server_rao)]
    burned = sum(rao for uid, rao in enumerate(server_rao) if uid in owners)
    validator_pot = pending.validator if sum(server_rao) > 0 else pending.validator + pending.server

    alpha_divs, root_divs = split_alpha_and_root_dividends(
        validator_rao,
        alpha_stake or [0] * n,
        root_stake or [0] * n,
        tao_weight_proportion() if tao_weight is None else tao_weight,
    )
    alpha_paid = share_out(alpha_divs, validator_pot)
    root_paid = share_out(root_divs, pending.root)

    validator_take, nominator_stake, root_claimable = [], [], []
    for uid in range(n):
        take = u96_div(u96_from_int(takes[uid]), u96_from_int(U16_MAX))
        alpha_take = u96_mul(take, alpha_paid[uid])
        root_take = u96_mul(take, root_paid[uid])
        validator_take.append(u96_to_u64(alpha_take) + u96_to_u64(root_take))
        nominator_stake.append(u96_to_u64(u96_sub(alpha_paid[uid], alpha_take)))
        root_claimable.append(u96_to_u64(u96_sub(root_paid[uid], root_take)))

    return Payout(
        owner_cut=pending.owner_cut,
        miner_stake=miner_stake,
        burned=burned,
        validator_take=validator_take,
        nominator_stake=nominator_stake,
        root_claimable=root_claimable,
    )


def split_alpha_and_root_dividends(
    validator_rao: Sequence[int],
    alpha_stake: Sequence[int],
    root_stake: Sequence[int],
    tao_weight: int,
) -> tuple[list[int], list[int]]:
    """Split each validator's dividend (U96F32) by its stake mix: root x w / (alpha + root x w)."""
    alpha_divs, root_divs = [], []
    for dividend_rao, alpha, root in zip(validator_rao, alpha_stake, root_stake):
        dividend = u96_from_int(dividend_rao)
        weighted_root = u96_mul(u96_from_int(root), tao_weight)
        root_prop = u96_div(weighted_root, u96_from_int(alpha) + weighted_root)
        root_part = u96_mul(dividend, root_prop)
        root_divs.append(root_part)
        alpha_divs.append(u96_sub(dividend, root_part))
    return alpha_divs, root_divs


def share_out(dividends: Sequence[int], pot_rao: int) -> list[int]:
    """Each hotkey's U96F32 share of ``pot_rao``: pot x dividend / total dividends."""
    total = sum(dividends)
    pot = u96_from_int(pot_rao)
    return [u96_mul(pot, u96_div(d, total)) for d in dividends]
