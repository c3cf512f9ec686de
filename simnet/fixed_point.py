"""The chain's fixed-point number formats, emulated with Python ints.

Every fixed-point value here is a plain ``int`` holding the *raw* representation:

* I32F32 (the epoch):          value = raw / 2**32, raw in a signed 64-bit range.
* I64F64 (stake normalisation): value = raw / 2**64, raw in a signed 128-bit range.
* I96F32 / U96F32 (rao maths):  value = raw / 2**32, raw in a signed / unsigned 128-bit range.

Semantics follow ``substrate_fixed`` and subtensor's ``safe_math``:
multiplication floors (arithmetic shift right) and saturates; ``safe_div`` truncates toward
zero and returns 0 on division by zero *and* on overflow; conversion to integers floors and
clamps. No floats are used, except in ``exp_i32f32`` (see its docstring).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

FRAC_BITS = 32
ONE = 1 << FRAC_BITS  # I32F32 (and I96F32/U96F32) 1.0
HALF = ONE >> 1
U16_MAX = 65535
U64_MAX = (1 << 64) - 1

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1  # I32F32 raw range
I128_MIN, I128_MAX = -(1 << 127), (1 << 127) - 1  # I96F32 / I64F64 raw range
U128_MAX = (1 << 128) - 1  # U96F32 raw range


# ---------------------------------------------------------------------------------------------
# I32F32


def saturate(raw: int) -> int:
    """Clamp a raw value to the I32F32 range."""
    return max(I64_MIN, min(I64_MAX, raw))


def from_int(n: int) -> int:
    """Integer -> I32F32 (``saturating_from_num``)."""
    return saturate(n << FRAC_BITS)


def from_float(x: float) -> int:
    """Float -> I32F32 (``from_num``): round to nearest, ties to even. Used for constants and tests."""
    return saturate(round(Fraction(x) * ONE))


def to_float(raw: int) -> float:
    """I32F32 -> float, for display and tests only."""
    return raw / ONE


def add(a: int, b: int) -> int:
    """``saturating_add``."""
    return saturate(a + b)


def mul(a: int, b: int) -> int:
    """``saturating_mul``: widen, multiply, shift right (floor), clamp."""
    return saturate((a * b) >> FRAC_BITS)


def _truncating_div(num: int, den: int) -> int:
    q = abs(num) // abs(den)
    return -q if (num < 0) != (den < 0) else q


def safe_div(a: int, b: int) -> int:
    """``safe_div``: (a << 32) / b truncated toward zero; 0 if b == 0 or the quotient overflows."""
    if b == 0:
        return 0
    q = _truncating_div(a << FRAC_BITS, b)
    return q if I64_MIN <= q <= I64_MAX else 0


def to_u16(raw: int) -> int:
    """``saturating_to_num::<u16>``: drop the fraction (floor), clamp to 0..65535."""
    return max(0, min(U16_MAX, raw >> FRAC_BITS))


def proportion_to_u16(raw: int) -> int:
    """``fixed_proportion_to_u16``: floor(x * 65535), clamped."""
    return to_u16(mul(raw, from_int(U16_MAX)))


def u16_to_proportion(x: int) -> int:
    """``u16_proportion_to_fixed``: x / 65535 as I32F32."""
    return safe_div(from_int(x), from_int(U16_MAX))


def round_half_away(raw: int) -> int:
    """I32F32 ``round()`` to an integer: nearest, ties away from zero."""
    if raw >= 0:
        return (raw + HALF) >> FRAC_BITS
    return -((-raw + HALF) >> FRAC_BITS)


def normalize(values: Sequence[int]) -> list[int]:
    """``inplace_normalize``: divide by the sum; a zero sum leaves the vector unchanged."""
    total = sum(values)
    if total == 0:
        return list(values)
    return [safe_div(v, total) for v in values]


def clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, x))


def exp_i32f32(raw: int) -> int:
    """e**x for an I32F32 x clamped to [-20, 20] by the caller.

    The chain uses ``substrate_fixed::transcendental::exp``; this uses float ``exp`` and rounds
    the result to the nearest raw value, which subtensor's published rules sanction (agrees to
    about 1e-9). It is the only float in the epoch and only matters with liquid alpha on.
    """
    return round(math.exp(raw / ONE) * ONE)


# ---------------------------------------------------------------------------------------------
# I64F64 -> I32F32 (stake normalisation, bonds moving average)


def ratio_i64f64_to_i32f32(num: int, den: int) -> int:
    """num / den computed in I64F64 (num, den non-negative integers), then truncated to I32F32."""
    if den == 0:
        return 0
    return ((num << 64) // den) >> (64 - FRAC_BITS)


# ---------------------------------------------------------------------------------------------
# U96F32 / I96F32 (coinbase and rao conversion; values here are never negative)


def u96_from_int(n: int) -> int:
    return max(0, min(U128_MAX, n << FRAC_BITS))


def u96_mul(a: int, b: int) -> int:
    return max(0, min(U128_MAX, (a * b) >> FRAC_BITS))


def u96_sub(a: int, b: int) -> int:
    """``saturating_sub`` (unsigned: floors at zero)."""
    return max(0, a - b)


def u96_div(a: int, b: int) -> int:
    """``checked_div(..).unwrap_or(0)`` / ``safe_div`` for U96F32."""
    if b == 0:
        return 0
    q = (a << FRAC_BITS) // b
    return q if q <= U128_MAX else 0


def u96_to_u64(raw: int) -> int:
    """``saturating_to_num::<u64>``: floor, clamp to u64."""
    return max(0, min(U64_MAX, raw >> FRAC_BITS))


def proportion_of_rao(proportion: int, rao: int) -> int:
    """floor(I96F32(proportion) * rao): an epoch share (I32F32) turned into rao."""
    return max(0, min(U64_MAX, (proportion * rao) >> FRAC_BITS))
