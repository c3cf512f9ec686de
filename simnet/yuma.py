"""Yuma Consensus: one subnet epoch as a pure function, bit-exact with subtensor.

``epoch(state, block, rao_emission)`` reproduces the chain's sparse ``epoch_mechanism`` for a
subnet with one mechanism: stake weights, validator permits (used one epoch late), activity
cutoff, weight masking, stake-weighted median consensus, clipping, incentive, bonds (Yuma 3 or
classic, with optional liquid alpha) and the split of ``rao_emission`` into server (miner) and
validator shares. All arithmetic is the chain's fixed point (``fixed_point``), so stored u16
values and rao amounts match the chain exactly.

Sparse rows are lists of ``(uid, value)`` tuples; inside the epoch values are raw I32F32 ints.
"""

from __future__ import annotations

from typing import Any, Sequence

from simnet.fixed_point import (
    ONE,
    add,
    clamp,
    exp_i32f32,
    from_int,
    mul,
    normalize,
    proportion_of_rao,
    proportion_to_u16,
    ratio_i64f64_to_i32f32,
    round_half_away,
    safe_div,
    u16_to_proportion,
)

Row = list[tuple[int, int]]
Matrix = list[Row]

# Values a subnet created with `register_network` gets.
# On a fast-blocks localnet tempo is 10 instead of 360.
NEW_SUBNET_HYPERPARAMETERS: dict[str, Any] = {
    "tempo": 360,
    "kappa": 32767,
    "bonds_penalty": 65535,
    "bonds_moving_average": 900_000,
    "yuma3": True,
    "liquid_alpha": False,
    "alpha_low": 45875,
    "alpha_high": 58982,
    "steepness": 1000,
    "max_validators": 64,
    "stake_threshold": 0,
    "activity_factor": 13_889,
    "commit_reveal": True,
}


def epoch(state: dict, block: int, rao_emission: int) -> dict:
    """Run one epoch of Yuma Consensus. Does not mutate ``state``.

    ``state`` keys: ``n``, ``tempo``, ``owner_uid`` (int or None), ``stake_rao``, ``reg``,
    ``last_update`` (lists of int), ``permit`` (the permits written by the previous epoch),
    ``weights`` and ``bonds`` (per UID a list of ``[uid, u16]`` pairs), ``lms`` (block of the
    previous epoch, 0 if none), ``kappa``, ``bonds_penalty``, ``bonds_moving_average``,
    ``yuma3``, ``liquid_alpha``, ``alpha_low``, ``alpha_high``, ``steepness``,
    ``max_validators``, ``stake_threshold``, ``activity_factor``, ``commit_reveal`` and
    ``commit_block`` (per UID the earliest pending commit block, or None).

    Returns per UID: ``server_rao`` and ``validator_rao`` (this epoch's miner and validator
    shares of ``rao_emission``, before the §7 payout rescaling), ``emission`` (the metagraph's
    emission in rao), the u16 terms ``incentive``, ``dividends``, ``consensus``, ``vtrust`` and
    ``stake_weight``, ``bonds`` (rows to store, ``[uid, u16]`` pairs; empty without a new
    permit), ``permit`` (new permits) and ``active``.

    ``rank`` and ``trust`` are all zeros: the current chain no longer computes or stores them
   , and the metagraph shows them empty.
    """
    n = state["n"]
    owner = state["owner_uid"] if state["owner_uid"] is not None and state["owner_uid"] < n else None

    active = activity(state["last_update"], block, state["tempo"], state["activity_factor"])
    stake = stake_weights(state["stake_rao"], state["stake_threshold"], owner)
    permit_old = with_owner_permit(state["permit"], owner)
    new_permit = with_owner_permit(top_k_nonzero(stake, state["max_validators"]), owner)
    active_stake = normalize([s if a and p else 0 for s, a, p in zip(stake, active, permit_old)])

    weights = masked_weights(state, permit_old, owner)
    consensus = weighted_median_consensus(active_stake, weights, n, u16_to_proportion(state["kappa"]))
    clipped = clip_to_consensus(weights, consensus)
    vtrust = [sum(v for _, v in row) for row in clipped]
    incentive = normalize(ranks(active_stake, clipped, n))

    bond_weights = interpolate(weights, clipped, u16_to_proportion(state["bonds_penalty"]))
    old_bonds = unexpired_bonds(state, block)
    alpha = ONE - ratio_i64f64_to_i32f32(state["bonds_moving_average"], 1_000_000)
    if state["yuma3"]:
        dividends, bonds = yuma3_bonds(state, bond_weights, old_bonds, consensus, incentive, active_stake, alpha)
    else:
        dividends, bonds = classic_bonds(bond_weights, old_bonds, incentive, active_stake, alpha, n)

    server, validator, emission = split_emission(incentive, dividends, active_stake, stake, rao_emission)
    return {
        "server_rao": server,
        "validator_rao": validator,
        "emission": emission,
        "incentive": _as_u16(incentive),
        "dividends": _as_u16(dividends),
        "consensus": _as_u16(consensus),
        "vtrust": _as_u16(vtrust),
        "stake_weight": _as_u16(stake),
        "rank": [0] * n,
        "trust": [0] * n,
        # §6.12: every bond row is rewritten; rows without a new permit become empty.
        "bonds": [[[j, v] for j, v in row] if new_permit[i] else [] for i, row in enumerate(bonds)],
        "permit": new_permit,
        "active": active,
    }


def _as_u16(proportions: Sequence[int]) -> list[int]:
    """§6.12: stored terms are floor(x * 65535)."""
    return [proportion_to_u16(x) for x in proportions]


# ---------------------------------------------------------------------------------------------
# §6.2 - §6.5: who counts


def activity(last_update: Sequence[int], block: int, tempo: int, activity_factor: int) -> list[bool]:
    """§6.2: a UID is active unless its last update is more than the cutoff blocks old."""
    cutoff = max(1, activity_factor * tempo // 1000)
    return [lu + cutoff >= block for lu in last_update]


def stake_weights(stake_rao: Sequence[int], stake_threshold: int, owner: int | None) -> list[int]:
    """§6.3: stake below the threshold (owner exempt) is zeroed; normalised in I64F64, then I32F32."""
    raw = [0 if i != owner and s < stake_threshold else s for i, s in enumerate(stake_rao)]
    total = sum(raw)
    return [ratio_i64f64_to_i32f32(s, total) for s in raw]


def with_owner_permit(permit: Sequence[bool], owner: int | None) -> list[bool]:
    """§6.4: the owner UID always holds a validator permit."""
    out = list(permit)
    if owner is not None:
        out[owner] = True
    return out


def top_k_nonzero(values: Sequence[int], k: int) -> list[bool]:
    """§6.4 ``is_topk_nonzero``: nonzero entries among the k largest; ties keep the higher UIDs."""
    keep = [v != 0 for v in values]
    if len(values) < k:
        return keep
    for i in sorted(range(len(values)), key=values.__getitem__)[: len(values) - k]:
        keep[i] = False
    return keep


def masked_weights(state: dict, permit_old: Sequence[bool], owner: int | None) -> Matrix:
    """§6.5: drop rows without a permit, self-weights (except the owner's), weights older than the
    target's registration (and than commits, with commit-reveal), then row-normalise."""
    n, reg, last_update = state["n"], state["reg"], state["last_update"]
    commit_reveal, commit_block = state["commit_reveal"], state["commit_block"]
    rows: Matrix = []
    for i in range(n):
        if not permit_old[i]:
            rows.append([])
            continue
        committed = commit_block[i] if commit_reveal else None
        row = [
            (j, from_int(w))
            for j, w in state["weights"][i]
            if j < n
            and (j != i or i == owner)
            and last_update[i] > reg[j]
            and not (committed is not None and committed < reg[j])
        ]
        total = sum(w for _, w in row)
        rows.append([(j, safe_div(w, total)) for j, w in row] if total > 0 else row)
    return rows


# ---------------------------------------------------------------------------------------------
# §6.6 - §6.8: consensus, clipping, incentive


def weighted_median_consensus(active_stake: Sequence[int], weights: Matrix, n: int, kappa: int) -> list[int]:
    """§6.6: per column, the smallest weight x such that the stake voting <= x exceeds 1 - kappa.

    Only validators with active stake vote; a missing entry is a vote for 0. Their stake is
    renormalised first, exactly as the chain does.
    """
    voters = [i for i, s in enumerate(active_stake) if s > 0]
    if not voters:
        return [0] * n
    votes = normalize([active_stake[i] for i in voters])
    minority = sum(votes) - kappa
    columns: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # (weight, vote) per column
    for i, vote in zip(voters, votes):
        for j, w in weights[i]:
            columns[j].append((w, vote))
    return [_column_median(col, len(voters), sum(votes), minority) for col in columns]


def _column_median(entries: list[tuple[int, int]], n_voters: int, total_vote: int, minority: int) -> int:
    implicit_zeros = n_voters - len(entries)  # voters without an entry vote 0
    by_value: dict[int, int] = {}
    if implicit_zeros:
        by_value[0] = total_vote - sum(v for _, v in entries)
    for w, vote in entries:
        by_value[w] = by_value.get(w, 0) + vote
    cumulative = 0
    for w in sorted(by_value):
        cumulative += by_value[w]
        if cumulative > minority:
            return w
    return max(by_value)


def clip_to_consensus(weights: Matrix, consensus: Sequence[int]) -> Matrix:
    """§6.7: cut weights above consensus down to it; drop them where consensus is 0."""
    return [
        [(j, min(w, consensus[j])) for j, w in row if not (w > consensus[j] and consensus[j] == 0)]
        for row in weights
    ]


def ranks(active_stake: Sequence[int], clipped: Matrix, n: int) -> list[int]:
    """§6.8: R_j = sum_i active_stake_i * Wc_ij (saturating)."""
    rank = [0] * n
    for stake, row in zip(active_stake, clipped):
        for j, w in row:
            rank[j] = add(rank[j], mul(stake, w))
    return rank


# ---------------------------------------------------------------------------------------------
# §6.9 - §6.10: bonds


def interpolate(weights: Matrix, clipped: Matrix, ratio: int) -> Matrix:
    """§6.9: bond weights W + ratio * (Wc - W); ratio 0 gives W, ratio 1 gives Wc (as stored)."""
    if ratio == 0:
        return [list(row) for row in weights]
    if ratio == ONE:
        return [list(row) for row in clipped]
    out: Matrix = []
    for w_row, c_row in zip(weights, clipped):
        w, c = dict(w_row), dict(c_row)
        mixed = ((j, add(w.get(j, 0), mul(ratio, c.get(j, 0) - w.get(j, 0)))) for j in sorted(w.keys() | c.keys()))
        out.append([(j, v) for j, v in mixed if v > 0])
    return out


def unexpired_bonds(state: dict, block: int) -> list[list[tuple[int, int]]]:
    """§6.9: stored u16 bonds, without columns of UIDs (re)registered since the last epoch."""
    n, reg, lms = state["n"], state["reg"], state["lms"]
    last_tempo = block - state["tempo"] if lms == 0 else lms + 1
    return [[(j, v) for j, v in row if j < n and last_tempo > reg[j]] for row in state["bonds"][:n]]


def ema(new: Matrix, old: Matrix, alpha: int) -> Matrix:
    """alpha * new + (1 - alpha) * old over the union of entries; keeps values > 0 (``mat_ema_sparse``)."""
    out: Matrix = []
    for new_row, old_row in zip(new, old):
        acc: dict[int, int] = {}
        for j, v in new_row:
            acc[j] = add(acc.get(j, 0), mul(alpha, v))
        for j, v in old_row:
            acc[j] = add(acc.get(j, 0), mul(ONE - alpha, v))
        out.append([(j, acc[j]) for j in sorted(acc) if acc[j] > 0])
    return out


def column_normalize(matrix: Matrix, n: int) -> Matrix:
    """Divide each entry by its column sum; columns summing to zero are left as they are."""
    col_sum = [0] * n
    for row in matrix:
        for j, v in row:
            col_sum[j] += v
    return [[(j, safe_div(v, col_sum[j]) if col_sum[j] else v) for j, v in row] for row in matrix]


def liquid_alpha(consensus: int, weight: int, bond: int, low: int, high: int, steepness: int) -> int:
    """§6.10: per-bond EMA rate, a sigmoid of how far the weight (or bond) sits above consensus."""
    distance = clamp(weight - consensus, 0, ONE) if weight >= bond else clamp(bond - weight, 0, ONE)
    exponent = clamp(mul(safe_div(steepness, from_int(-100)), distance - ONE // 2), from_int(-20), from_int(20))
    sigmoid = safe_div(ONE, ONE + exp_i32f32(exponent))
    return clamp(low + mul(sigmoid, high - low), low, high)


def liquid_alpha_ema(state: dict, bond_weights: Matrix, old: Matrix, consensus: Sequence[int]) -> Matrix:
    """§6.10 sparse EMA with per-entry alpha. Only entries present in the bond weights survive."""
    low, high = u16_to_proportion(state["alpha_low"]), u16_to_proportion(state["alpha_high"])
    steepness = from_int(state["steepness"])
    out: Matrix = []
    for w_row, b_row in zip(bond_weights, old):
        bonds = dict(b_row)
        row: Row = []
        for j, w in w_row:
            b = bonds.get(j, 0)
            a = liquid_alpha(consensus[j], w, b, low, high, steepness)
            value = min(add(mul(ONE - a, b), max(mul(a, w), 0)), ONE)
            if value > 0:
                row.append((j, value))
        out.append(row)
    return out


def yuma3_bonds(
    state: dict,
    bond_weights: Matrix,
    old_u16: list[list[tuple[int, int]]],
    consensus: Sequence[int],
    incentive: Sequence[int],
    active_stake: Sequence[int],
    alpha: int,
) -> tuple[list[int], list[list[tuple[int, int]]]]:
    """§6.9 Yuma 3: bonds are an EMA of bond weights; dividends = stake x (normalised bonds . incentive).

    Returns the dividends (I32F32) and the bond rows to store (u16 of the unnormalised EMA).
    """
    n = len(incentive)
    old = [[(j, u16_to_proportion(v)) for j, v in row] for row in old_u16]
    if state["liquid_alpha"] and any(c != 0 for c in consensus):
        bonds = liquid_alpha_ema(state, bond_weights, old, consensus)
    else:
        bonds = ema(bond_weights, old, alpha)
    normalized = column_normalize(bonds, n)
    total_bond = [sum(mul(b, incentive[j]) for j, b in row) for row in normalized]
    dividends = normalize([mul(tb, s) for tb, s in zip(total_bond, active_stake)])
    return dividends, [[(j, proportion_to_u16(b)) for j, b in row] for row in bonds]


def classic_bonds(
    bond_weights: Matrix,
    old_u16: list[list[tuple[int, int]]],
    incentive: Sequence[int],
    active_stake: Sequence[int],
    alpha: int,
    n: int,
) -> tuple[list[int], list[list[tuple[int, int]]]]:
    """§6.9 classic Yuma: column-normalised EMA of stake-weighted bond weights.

    Old bonds are read as raw u16 integers (not divided by 65535); stored bonds are the EMA
    with each column max-upscaled to 1.
    """
    old = column_normalize([[(j, from_int(v)) for j, v in row] for row in old_u16], n)
    bought = column_normalize([[(j, mul(w, s)) for j, w in row] for row, s in zip(bond_weights, active_stake)], n)
    bonds = column_normalize(ema(bought, old, alpha), n)
    dividends = normalize([sum(mul(incentive[j], b) for j, b in row) for row in bonds])
    col_max = [0] * n
    for row in bonds:
        for j, b in row:
            col_max[j] = max(col_max[j], b)
    stored = [[(j, proportion_to_u16(safe_div(b, col_max[j]) if col_max[j] else b)) for j, b in row] for row in bonds]
    return dividends, stored


# ---------------------------------------------------------------------------------------------
# §6.11: emission


def split_emission(
    incentive: Sequence[int],
    dividends: Sequence[int],
    active_stake: Sequence[int],
    stake: Sequence[int],
    rao_emission: int,
) -> tuple[list[int], list[int], list[int]]:
    """§6.11: server, validator and total emission in rao per UID.

    Incentive and dividends share the emission in proportion to their sum; with neither, it all
    goes to validators by active stake (or by stake when nobody is active).
    """
    combined = [add(i, d) for i, d in zip(incentive, dividends)]
    total = sum(combined)
    if total != 0:
        server = [safe_div(i, total) for i in incentive]
        validator = [safe_div(d, total) for d in dividends]
        emission = normalize(combined)
    else:
        server = list(incentive)
        validator = emission = list(active_stake) if sum(active_stake) != 0 else list(stake)
    to_rao = lambda shares: [proportion_of_rao(x, rao_emission) for x in shares]  # noqa: E731
    return to_rao(server), to_rao(validator), to_rao(emission)


# ---------------------------------------------------------------------------------------------
# §9.1 step 13: what the chain stores when weights are set


def max_upscale_u16(values: Sequence[int]) -> list[int]:
    """Scale u16 weights so the largest is 65535, rounding half away from zero (``set_weights``)."""
    largest = max(values, default=0)
    if largest == 0:
        return [0] * len(values)
    top = from_int(largest)
    out = []
    for v in values:
        x = from_int(v)
        if top > from_int(32768):
            scaled = mul(x, safe_div(from_int(65535), top))
        else:
            scaled = safe_div(mul(x, from_int(65535)), top)
        out.append(min(65535, round_half_away(scaled)))
    return out
