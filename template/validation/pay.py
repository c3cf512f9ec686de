"""The pay rule: what an accepted contribution earns (docs/scoring.md, "Pay").

    pay = work x min(evidence, usefulness)

- `work`: the inner-loop tokens the miner reports (`ContributionMeta.tokens_trained`) over the
  recipe's full round (H x batch x page length), at most 1. Pay is never more than proportional
  to the work claimed, so n hotkeys that split one round's compute claim n parts of it.
- `evidence`: how strongly the update carries its own assigned pages (assigned-minus-control
  gain, the assignment test's difference) against the round's typical accepted update: 0 up to
  `floor` x the round's reference (a replay that passed the assignment test by chance shows
  about a fifth of it), rising linearly to 1 at `tolerance` x the reference, and
- `usefulness`: its gain on the round's unseen score pages, plus `gain_z_min` of its standard
  errors, over `tolerance` x the round's reference, at most 1, counted only while the round's
  reference update's gain is significant (z >= `gain_z_min`): late in training one honest update
  moves the score pages by less than their noise (the reason check 7 refuses only harm,
  docs/scoring.md), and a gain within the noise says nothing about usefulness, so pay then
  follows work and evidence alone; and since one update's gain can look significant by chance
  while another's sits within its noise of the bar, each gain is only held short of the bar
  when it is short by more than its noise. Measured
  gain and evidence hardly grow with inner steps (docs/scoring.md, "Why this rule"), so neither
  can stand for work; they cap it: an
  update that claims a full round but carries little of its own pages (a copy, a replay, a
  partial mix) or helps unseen text little (an overfit) is paid that little.
- A collusion group (`collusion.py`, duplicates in disguise) is paid as one contribution: the
  largest pay among its members, shared in proportion to what each would be paid alone (a copy
  inside a group, paid nothing alone, takes nothing from its source); its merge weight is
  shared the same way.

The round's reference is the upper quartile over independent units (a collusion group or one
coldkey's hotkeys give one value, their largest): copies and many weak hotkeys cannot pull it
down while a quarter of the units are honest, and honest updates, which scatter about +-30%
around each other, stay above half of it.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    """What scoring measured of one accepted contribution."""

    hotkey: str
    work: float  # reported tokens over the round's full work, in [0, 1]
    evidence: float  # assigned-minus-control gain
    gain: float  # mean gain on the score pages
    owner: str = ""  # its coldkey ("": its own)
    gain_z: float = math.inf  # the paired z of that gain
    gain_se: float = 0.0  # its standard error


@dataclass(frozen=True)
class Pay:
    score: float
    work: float
    evidence: float  # factor in [0, 1]
    usefulness: float  # factor in [0, 1]
    share: float = 1.0  # of its group's pay and merge weight (1 alone)
    group: tuple[str, ...] = ()


def work_fraction(tokens: int | None, full_tokens: int | None) -> float:
    """Reported work over the full round's; 1 when either is unknown (no metadata to read)."""
    if tokens is None or not full_tokens:
        return 1.0
    return max(0.0, min(1.0, tokens / full_tokens))


def _factor(value: float, reference: float, tolerance: float, floor: float = 0.0) -> float:
    """0 up to floor x reference, 1 from tolerance x reference, linear between."""
    if reference <= 0:
        return 1.0 if value > 0 else 0.0
    return max(0.0, min(1.0, (value / reference - floor) / (tolerance - floor)))


def reference(measured: Sequence[Measured], groups: Sequence[Sequence[str]], value) -> float:
    """The round's typical value: the upper quartile over independent units (a collusion group,
    or all of one coldkey's hotkeys, gives one value: its largest), so neither copies nor many
    weak hotkeys can pull it down while a quarter of the units are honest."""
    unit_of = {m.hotkey: m.owner or m.hotkey for m in measured}
    for group in groups:
        for key in group[1:]:
            for other, unit in list(unit_of.items()):
                if unit == unit_of[key]:
                    unit_of[other] = unit_of[group[0]]
    best: dict[str, float] = {}
    for m in measured:
        unit = unit_of[m.hotkey]
        best[unit] = max(best.get(unit, float("-inf")), value(m))
    if not best:
        return 0.0
    if len(best) < 2:
        return next(iter(best.values()))
    return statistics.quantiles(best.values(), n=4, method="inclusive")[2]


def pay(measured: Sequence[Measured], groups: Sequence[Sequence[str]], tolerance: float = 0.5,
        floor: float = 0.25, gain_z_min: float = 2.0) -> dict[str, Pay]:
    """Each accepted contribution's pay (see the module doc)."""
    ref_evidence = reference(measured, groups, lambda m: m.evidence)
    ref_gain = reference(measured, groups, lambda m: m.gain)
    gain_measurable = reference(measured, groups, lambda m: m.gain_z) >= gain_z_min
    alone: dict[str, Pay] = {}
    for m in measured:
        evidence = _factor(m.evidence, ref_evidence, tolerance, floor)
        # judged at the top of its own noise: only a gain measurably short of the bar pays less
        usefulness = _factor(m.gain + gain_z_min * m.gain_se, ref_gain, tolerance) if gain_measurable else 1.0
        alone[m.hotkey] = Pay(m.work * min(evidence, usefulness), m.work, evidence, usefulness)
    out = dict(alone)
    for group in groups:
        total = max(alone[k].score for k in group)
        own = [alone[k].score for k in group]
        shares = [o / sum(own) for o in own] if sum(own) > 0 else [0.0] * len(group)
        for key, share in zip(group, shares):
            p = alone[key]
            out[key] = Pay(total * share, p.work, p.evidence, p.usefulness, share, tuple(group))
    return out
