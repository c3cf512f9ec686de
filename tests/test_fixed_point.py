"""The fixed-point primitives follow substrate_fixed / safe_math exactly."""

from __future__ import annotations

from simnet import fixed_point as fx
from simnet.fixed_point import ONE

I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)


def test_mul_floors_the_product():
    assert fx.mul(3, ONE // 2) == 1  # 1.5 raw units floor to 1
    assert fx.mul(-3, ONE // 2) == -2  # arithmetic shift floors toward -inf


def test_mul_saturates_at_the_i32f32_range():
    big = fx.from_int(1 << 30)
    assert fx.mul(big, big) == I64_MAX
    assert fx.mul(big, -big) == I64_MIN


def test_safe_div_truncates_toward_zero():
    assert fx.safe_div(ONE, 3 * ONE) == 1431655765  # floor(2**32 / 3)
    assert fx.safe_div(-ONE, 3 * ONE) == -1431655765
    assert fx.safe_div(ONE, -3 * ONE) == -1431655765


def test_safe_div_by_zero_is_zero():
    assert fx.safe_div(ONE, 0) == 0


def test_safe_div_overflow_is_zero_not_saturated():
    assert fx.safe_div(fx.from_int(1 << 30), 1) == 0


def test_to_u16_floors_and_clamps():
    assert fx.to_u16(fx.from_int(7) + ONE - 1) == 7
    assert fx.to_u16(fx.from_int(70_000)) == 65535
    assert fx.to_u16(-ONE) == 0


def test_proportion_round_trip_of_one_is_65535():
    assert fx.u16_to_proportion(65535) == ONE
    assert fx.proportion_to_u16(ONE) == 65535


def test_proportion_to_u16_floors():
    assert fx.proportion_to_u16(ONE // 2) == 32767  # 0.5 x 65535 = 32767.5


def test_kappa_constant_matches_spec():
    kappa = fx.u16_to_proportion(32767)
    assert kappa == fx.safe_div(fx.from_int(32767), fx.from_int(65535))
    assert abs(fx.to_float(kappa) - 0.49999237037) < 1e-10


def test_bonds_moving_average_alpha_raw_value():
    assert ONE - fx.ratio_i64f64_to_i32f32(900_000, 1_000_000) == 429496730


def test_round_half_away_from_zero():
    assert fx.round_half_away(ONE // 2) == 1
    assert fx.round_half_away(ONE // 2 - 1) == 0
    assert fx.round_half_away(-(ONE // 2)) == -1
    assert fx.round_half_away(5 * ONE // 2) == 3


def test_from_float_rounds_ties_to_even():
    assert fx.from_float(0.5 / ONE) == 0  # exactly half a raw unit: tie to even 0
    assert fx.from_float(1.5 / ONE) == 2
    assert fx.from_float(0.1) == 429496730


def test_normalize_leaves_zero_sum_unchanged():
    assert fx.normalize([0, 0, 0]) == [0, 0, 0]


def test_normalize_divides_by_sum():
    assert fx.normalize([ONE, ONE, 2 * ONE]) == [ONE // 4, ONE // 4, ONE // 2]


def test_stake_normalisation_truncates_i64f64_to_i32f32():
    assert fx.ratio_i64f64_to_i32f32(1, 10) == 429496729  # floor(2**32 / 10)


def test_u96_to_u64_floors_and_clamps():
    assert fx.u96_to_u64(fx.u96_from_int(5) + ONE - 1) == 5
    assert fx.u96_to_u64(fx.u96_from_int(1 << 70)) == (1 << 64) - 1


def test_u96_sub_saturates_at_zero():
    assert fx.u96_sub(ONE, 2 * ONE) == 0


def test_proportion_of_rao_floors():
    tenth = fx.ratio_i64f64_to_i32f32(1, 10)
    assert fx.proportion_of_rao(tenth, 1_000_000_000) == 99_999_999
