"""A literal transcription of subtensor's published rules (the reference pseudocode for the sparse
epoch) and the §2.1 helpers. It is deliberately plain and slow: it exists only as an
independent oracle for `simnet.yuma.epoch` in the property test. Do not import
anything from the implementation here.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

# --- §2.1 helpers, as printed in the spec -------------------------------------------------------

ONE = 1 << 32


def sat64(x):
    return max(-(1 << 63), min((1 << 63) - 1, x))


def fx_int(n):
    return sat64(n << 32)


def fmul(a, b):
    return sat64((a * b) >> 32)


def fdiv(a, b):
    if b == 0:
        return 0
    q = abs(a << 32) // abs(b)
    q = -q if (a < 0) != (b < 0) else q
    return 0 if not (-(1 << 63) <= q < (1 << 63)) else q


def to_u16(a):
    return max(0, min(65535, a >> 32))


def prop_to_u16(a):
    return to_u16(fmul(a, fx_int(65535)))


def u16_prop(x):
    return fdiv(fx_int(x), fx_int(65535))


def normalize(v):
    s = sum(v)
    return list(v) if s == 0 else [fdiv(x, s) for x in v]


# --- Appendix A.1 -------------------------------------------------------------------------------


def reference_epoch(state: dict, cb: int, E: int) -> dict:
    """Run A.1's `epoch(st, cb, E)` on a copy of `state`; return the persisted terms and emissions."""
    st = SimpleNamespace(**{k: (list(v) if isinstance(v, list) else v) for k, v in state.items()})
    st.weights = [[tuple(p) for p in row] for row in state["weights"]]
    st.bonds = [[tuple(p) for p in row] for row in state["bonds"]]
    st.cr_enabled = state["commit_reveal"]
    st.commit_block = [math.inf if c is None else c for c in state["commit_block"]]
    server, validator = _epoch(st, cb, E)
    return {
        "server_rao": server,
        "validator_rao": validator,
        "emission": st.emission,
        "incentive": st.incentive,
        "dividends": st.dividends,
        "consensus": st.consensus,
        "vtrust": st.vtrust,
        "stake_weight": st.stake_weight,
        "bonds": [[[j, v] for j, v in row] for row in st.bonds],
        "permit": st.permit,
        "active": st.active,
    }


def _epoch(st, cb, E):
    n = st.n
    cutoff = max(1, st.activity_factor * st.tempo // 1000)
    inactive = [st.last_update[i] + cutoff < cb for i in range(n)]

    # stake (I64F64 normalise, then truncate to I32F32)
    raw = [0 if (i != st.owner_uid and s < st.stake_threshold) else s for i, s in enumerate(st.stake_rao)]
    tot = sum(raw)
    stake = [0] * n if tot == 0 else [((s << 64) // tot) >> 32 for s in raw]

    permit_old = list(st.permit)
    if st.owner_uid is not None:
        permit_old[st.owner_uid] = True
    new_permit = is_topk_nonzero(stake, st.max_validators)
    if st.owner_uid is not None:
        new_permit[st.owner_uid] = True

    act = normalize([0 if (inactive[i] or not permit_old[i]) else stake[i] for i in range(n)])

    W = []
    for i in range(n):
        row = (
            []
            if not permit_old[i]
            else [
                (j, fx_int(v))
                for (j, v) in st.weights[i]
                if j < n
                and (j != i or i == st.owner_uid)
                and not (st.last_update[i] <= st.reg[j])
                and not (st.cr_enabled and st.commit_block[i] < st.reg[j])
            ]
        )
        s = sum(v for _, v in row)
        W.append([(j, fdiv(v, s)) for j, v in row] if s > 0 else row)

    kappa = fdiv(fx_int(st.kappa), fx_int(65535))
    C = weighted_median_cols(act, W, n, kappa)
    Wc = [[(j, min(v, C[j])) for j, v in row if not (v > C[j] and C[j] == 0)] for row in W]
    vtrust = [sum(v for _, v in row) for row in Wc]
    R = [0] * n
    for i, row in enumerate(Wc):
        for j, v in row:
            R[j] = sat64(R[j] + fmul(act[i], v))
    I = normalize(R)  # noqa: E741

    bp = fdiv(fx_int(st.bonds_penalty), fx_int(65535))
    Wb = interpolate_sparse(W, Wc, n, bp)
    last_tempo = cb - st.tempo if st.lms == 0 else st.lms + 1
    alpha = ONE - (((st.bonds_moving_average << 64) // 1_000_000) >> 32)

    if st.yuma3:
        B = [[(j, u16_prop(v)) for j, v in row if not (last_tempo <= st.reg[j])] for row in st.bonds]
        if st.liquid_alpha and any(c != 0 for c in C):
            lo, hi = u16_prop(st.alpha_low), u16_prop(st.alpha_high)
            ema = []
            for wr, br in zip(Wb, B):
                bd = dict(br)
                out = []
                for j, w in wr:
                    a = liquid_alpha(C[j], w, bd.get(j, 0), lo, hi, fx_int(st.steepness))
                    val = min(sat64(fmul(ONE - a, bd.get(j, 0)) + max(fmul(a, w), 0)), ONE)
                    if val > 0:
                        out.append((j, val))
                ema.append(out)
        else:
            ema = ema_union(Wb, B, alpha, n)
        Bn = col_normalize(ema, n)
        tb = [sum(fmul(v, I[j]) for j, v in row) for row in Bn]
        D = normalize([fmul(tb[i], act[i]) for i in range(n)])
        bonds_to_store = [[(j, prop_to_u16(v)) for j, v in row] for row in ema]
    else:
        B = col_normalize([[(j, fx_int(v)) for j, v in row if not (last_tempo <= st.reg[j])] for row in st.bonds], n)
        dB = col_normalize([[(j, fmul(v, act[i])) for j, v in row] for i, row in enumerate(Wb)], n)
        ema = col_normalize(ema_union(dB, B, alpha, n), n)
        D = normalize([sum(fmul(I[j], v) for j, v in row) for row in ema])
        colmax = column_max(ema, n)
        bonds_to_store = [[(j, prop_to_u16(fdiv(v, colmax[j]) if colmax[j] else v)) for j, v in row] for row in ema]

    comb = [sat64(a + b) for a, b in zip(I, D)]
    T = sum(comb)
    if T != 0:
        nse = [fdiv(x, T) for x in I]
        nve = [fdiv(x, T) for x in D]
        nce = normalize(comb)
    else:
        nse = list(I)
        nve = nce = list(act) if sum(act) != 0 else list(stake)

    def to_rao(x):
        return (x * E) >> 32

    st.bonds = [bonds_to_store[i] if new_permit[i] else [] for i in range(n)]
    st.permit = new_permit
    st.incentive = [prop_to_u16(x) for x in I]
    st.dividends = [prop_to_u16(x) for x in D]
    st.consensus = [prop_to_u16(x) for x in C]
    st.vtrust = [prop_to_u16(x) for x in vtrust]
    st.stake_weight = [prop_to_u16(x) for x in stake]
    st.active = [not x for x in inactive]
    st.emission = [to_rao(x) for x in nce]
    return [to_rao(x) for x in nse], [to_rao(x) for x in nve]


def weighted_median_cols(act, W, n, kappa):
    idx = [i for i in range(len(act)) if act[i] > 0]
    use = normalize([act[i] for i in idx])
    S = sum(use)
    minority = S - kappa
    out = []
    for j in range(n):
        col = {i: 0 for i in idx}
        for i in idx:
            for jj, v in W[i]:
                if jj == j:
                    col[i] = v
        scores = [col[i] for i in idx]
        if not scores:
            out.append(0)
            continue
        cum, res = 0, max(scores)
        for x in sorted(set(scores)):
            cum += sum(u for u, s in zip(use, scores) if s == x)
            if cum > minority:
                res = x
                break
        out.append(res)
    return out


def interpolate_sparse(m1, m2, n, r):
    if r == 0:
        return [list(x) for x in m1]
    if r == ONE:
        return [list(x) for x in m2]
    out = []
    for a_row, b_row in zip(m1, m2):
        a = dict(a_row)
        b = dict(b_row)
        row = [(j, sat64(a.get(j, 0) + fmul(r, b.get(j, 0) - a.get(j, 0)))) for j in range(n)]
        out.append([(j, v) for j, v in row if v > 0])
    return out


def ema_union(new, old, alpha, n):
    out = []
    for nr, orow in zip(new, old):
        acc = [0] * n
        for j, v in nr:
            acc[j] = sat64(acc[j] + fmul(alpha, v))
        for j, v in orow:
            acc[j] = sat64(acc[j] + fmul(ONE - alpha, v))
        out.append([(j, x) for j, x in enumerate(acc) if x > 0])
    return out


def col_normalize(M, n):
    s = [0] * n
    for row in M:
        for j, v in row:
            s[j] += v
    return [[(j, fdiv(v, s[j]) if s[j] != 0 else v) for j, v in row] for row in M]


def column_max(M, n):
    m = [0] * n
    for row in M:
        for j, v in row:
            m[j] = max(m[j], v)
    return m


def liquid_alpha(c, w, b, lo, hi, steep):
    def clamp(x, l, h):  # noqa: E741
        return max(l, min(h, x))

    d = clamp(w - c, 0, ONE) if w >= b else clamp(b - w, 0, ONE)
    e = clamp(fmul(fdiv(steep, fx_int(-100)), d - ONE // 2), fx_int(-20), fx_int(20))
    sig = fdiv(ONE, ONE + round(math.exp(e / ONE) * ONE))
    return clamp(lo + fmul(sig, hi - lo), lo, hi)


def is_topk_nonzero(v, k):
    res = [x != 0 for x in v]
    if len(v) < k:
        return res
    for i in sorted(range(len(v)), key=lambda i: v[i])[: len(v) - k]:
        res[i] = False
    return res
