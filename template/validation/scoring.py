"""Scoring one round: gates, gain on unseen pages, the known-pages and assigned-vs-random tests,
collusion groups and pay (docs/scoring.md).

Pure functions of the contributions and a `loss_fn` the validator supplies:

    loss_fn(delta, scale, tokens) -> Tensor[B]

returns the per-sequence loss of the base model with `theta - scale * delta` applied
(`delta=None`: the base model itself). Nothing here knows the model, the network or the chain.

Score = the held-out gain mean (at least 0) of an accepted contribution; pay = what it earns
(`pay.py`: work x min(evidence, usefulness), a collusion group paid once), which the score EMA and
the weights follow. Both are exactly 0.0 when any gate fails.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from template.validation.aggregation import clip_to_norms, coldkey_capped_weights, median_tensor_norms
from template.validation.checks import (
    DuplicateFinding,
    duplicate_findings,
    duplicate_groups,
    similarity_matrices,
    is_empty,
    non_finite,
    norm_outlier,
    payload_problem,
    wrong_shape,
)
from template.validation.collusion import CrossEvidence, collusion_groups, cross_evidence, edges, welch_z
from template.validation.norms import delta_norm
from template.validation.pay import Measured, pay, work_fraction

LossFn = Callable[[Mapping[str, torch.Tensor] | None, float, Any], torch.Tensor]

# The gates, in the order they run. A contribution stops at its first failure.
CHECK_ORDER = (
    "payload",
    "finite",
    "non_empty",
    "shape",
    "norm",
    "duplicate",
    "heldout_gain",
    "known_pages",
    "assigned_vs_random",
    "pay",
)


@dataclass(frozen=True)
class ScoringConfig:
    z_min: float = 2.0  # held-out paired gain reaching this z (with a positive mean) helps
    # held-out gain at or below -harm_z (with a negative mean) hurts: rejected. The test runs once per
    # contribution per round, and a miner faces it hundreds of times: an update with no effect is refused
    # by chance once in 44 tests at 2, once in 740 at 3 (it refused one honest update of 360 in each of two
    # 120-round runs), once in 31,600 at 4; the harm that matters measures far below (sign flips z -19 to -50)
    harm_z: float = 4.0
    # ...and only a material harm counts: the loss must rise by more than this fraction of the base model's
    # held-out loss, with z <= -harm_z measured from there. Once the corpus has been seen many times an honest
    # update really moves held-out loss a little either way: in a 120-round run by at most 0.09% of the loss
    # (-0.0036 nats), and 64 pages measured one such rise (-0.0033) at z -4.38. Sign flips stay far beyond it
    harm_margin: float = 0.001
    # When held-out helps: the Welch z of assigned-minus-random gain needed, over every page tested.
    # A first sample settles clear cases alone (fails below assignment_first_fail_z, passes from
    # assignment_first_pass_z); between them a second sample as large is drawn and the test runs on
    # both. Early in training, when every update helps every page, one honest update in six or seven
    # fell below 1 on one sample; the two stages pass it nineteen times in twenty at the typical
    # margin, while an update with no margin passes less often than one in six at z >= 1 did.
    assignment_z_min: float = 1.2
    assignment_first_fail_z: float = 0.0
    assignment_first_pass_z: float = 2.0
    neutral_assignment_z_min: float = 3.0  # ...and needed when held-out neither helps nor hurts
    norm_low: float = 0.05  # norm below this multiple of the round's median is a no-op
    norm_high: float = 10.0  # norm above this multiple of the median is a replacement attempt
    empty_eps: float = 1e-12  # an update whose global norm is at most this is empty
    duplicate_cosine: float = 0.95  # cosine above this with an earlier update marks a copy
    duplicate_overlap: float = 0.5  # top-k index overlap above this with an earlier one: copy
    duplicate_topk_fraction: float = 0.01  # share of each tensor's entries in its top-k set
    eval_scale: float = 1.0  # scale an update is applied at when scored (outer lr / expected count)
    clip_before_eval: bool = True  # clip each tensor to the candidates' median norm before scoring
    originality_margin_z: float = 2.0  # a later duplicate outranks an earlier one by this much assignment z
    known_z_max: float = 3.0  # gain on the public (known) pages above the unseen score pages at this z fails
    cross_z_min: float = 3.5  # helping another miner's pages above random at this z joins the two in a group
    cross_z_min_same_coldkey: float = 1.0  # the same between two hotkeys of one coldkey (one operator is known)
    cross_pages: int = 16  # of each miner's assigned sample, the pages others are tested on
    pay_tolerance: float = 0.5  # evidence and usefulness count in full from this fraction of the round's median
    pay_evidence_floor: float = 0.25  # own-page evidence up to this fraction of the round's median counts nothing


@dataclass(frozen=True)
class GainStats:
    """Paired per-sequence gain (loss before - loss after; positive = the update helps)."""

    mean: float
    sd: float
    z: float
    n: int

    @property
    def se(self) -> float:
        """The standard error of the mean gain (0 with no pages)."""
        return self.sd / math.sqrt(self.n) if self.n > 0 else 0.0


@dataclass(frozen=True)
class AssignmentTest:
    """Did the update help the miner's assigned pages more than random control pages?"""

    assigned_gain: float
    random_gain: float
    diff: float
    z: float
    passed: bool
    pages: int = 0  # pages a side the verdict rests on
    bar: float = 0.0  # the z the verdict was taken against


def _z(mean: float, se: float) -> float:
    if math.isnan(mean) or math.isnan(se):
        return 0.0  # losses that overflowed say nothing; a NaN's sign must not decide a test
    if se > 0:
        return mean / se
    return 0.0 if mean == 0 else math.copysign(math.inf, mean)


def _gains(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    if before.shape != after.shape or before.dim() != 1:
        raise ValueError(
            f"expected two per-sequence loss vectors of one shape, got "
            f"{tuple(before.shape)} and {tuple(after.shape)}"
        )
    return before.detach().double() - after.detach().double()


def paired_gain(loss_before: torch.Tensor, loss_after: torch.Tensor) -> GainStats:
    """Mean, sd and z = mean / (sd / sqrt(n)) of the paired per-sequence loss differences.

    Fewer than 2 sequences give z = 0 (nothing is significant on one sample); sd = 0 gives
    z = +-inf for a non-zero mean, 0 for a zero mean.
    """
    return _stats(_gains(loss_before, loss_after))


def assigned_vs_random(
    assigned_before: torch.Tensor,
    assigned_after: torch.Tensor,
    random_before: torch.Tensor,
    random_after: torch.Tensor,
    z_threshold: float = 1.0,
) -> AssignmentTest:
    """Welch-style z of (gain on assigned pages) - (gain on random control pages), each page's
    gain adjusted for its base loss (one slope, fitted within the two groups).

    How much a page gains from any update depends on how the base model does on it; the pages
    are drawn at random, so that dependence is noise to this test, and early in training it is
    most of the noise (on the tiny preset their correlation reached -0.3 to -0.8 in rounds 3-6).
    The adjustment removes it, and with it any edge an update could take from a generic slope
    on pages whose base loss it knew in advance. `diff` is the adjusted difference; the gains are
    the raw means."""
    a = _gains(assigned_before, assigned_after)
    r = _gains(random_before, random_after)
    if a.numel() < 2 or r.numel() < 2:
        mean_a = float(a.mean()) if a.numel() else 0.0
        mean_r = float(r.mean()) if r.numel() else 0.0
        return AssignmentTest(mean_a, mean_r, mean_a - mean_r, 0.0, False, min(a.numel(), r.numel()), z_threshold)
    base_a, base_r = assigned_before.detach().double(), random_before.detach().double()
    slope, slope_var = _within_slope((base_a, a), (base_r, r))
    centre = float(torch.cat([base_a, base_r]).mean())
    adjusted_a, adjusted_r = a - slope * (base_a - centre), r - slope * (base_r - centre)
    imbalance = float(base_a.mean() - base_r.mean())
    se = math.sqrt(float(adjusted_a.var(unbiased=True)) / a.numel()
                   + float(adjusted_r.var(unbiased=True)) / r.numel() + imbalance ** 2 * slope_var)
    diff = float(adjusted_a.mean() - adjusted_r.mean())
    z = _z(diff, se)
    return AssignmentTest(float(a.mean()), float(r.mean()), diff, z, z >= z_threshold, min(a.numel(), r.numel()),
                          z_threshold)


def material_harm(held: GainStats, margin: float, harm_z: float) -> str | None:
    """Why an update hurts held-out loss (None when it does not): its loss rises by more than
    `margin`, and its z measured from -margin is at most -harm_z."""
    if not (math.isfinite(held.mean) and math.isfinite(held.sd)):
        return f"held-out losses not finite with the update applied (gain {held.mean:.4g}, sd {held.sd:.4g})"
    if held.n < 2 or not held.mean < -margin:
        return None
    z = _z(held.mean + margin, held.se)
    if z > -harm_z:
        return None
    return (f"held-out gain {held.mean:.4g} with z {held.z:.3g}, z {z:.3g} beyond a harm of {margin:.3g} "
            f"(hurts: z <= -{harm_z:g})")


def _within_slope(*groups: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """Least-squares slope of y on x pooled within groups (each group around its own means) and
    its variance; (0, 0) when x does not vary or too few points are left to estimate it."""
    sxx = sxy = syy = 0.0
    points = 0
    for x, y in groups:
        dx, dy = x - x.mean(), y - y.mean()
        sxx, sxy, syy = sxx + float(dx @ dx), sxy + float(dx @ dy), syy + float(dy @ dy)
        points += x.numel()
    dof = points - len(groups) - 1
    if sxx <= 0 or dof < 1:
        return 0.0, 0.0
    slope = sxy / sxx
    residual = max(0.0, syy - slope * sxy) / dof
    return slope, residual / sxx


@dataclass
class Contribution:
    """One miner's decoded contribution for the round (delta None when nothing usable came)."""

    hotkey: str
    uid: int
    delta: Mapping[str, torch.Tensor] | None  # dense, or decoded when read (DecodedUpdate)
    arrival_index: int
    rejected_reason: str | None = None  # set by the caller: malformed payload, wrong round, ...
    assigned_tokens: Any = None  # the miner's assigned pages, as loss_fn takes them
    control_tokens: Any = None  # random unassigned training pages, as loss_fn takes them
    coldkey: str = ""  # its owner's coldkey ("": unknown)
    claimed_tokens: int | None = None  # inner-loop tokens its metadata reports (None: no claim read)
    # The next assigned and control pages of the same draws, (assigned, control), loaded only when
    # the first sample leaves the assignment test undecided
    second_sample: Callable[[], tuple[Any, Any]] | None = None


@dataclass
class CheckOutcome:
    name: str
    passed: bool | None  # None: not run because an earlier check failed
    reason: str


@dataclass
class ScoreReport:
    hotkey: str
    uid: int
    arrival_index: int
    checks: list[CheckOutcome] = field(default_factory=list)
    norm: float | None = None
    median_norm: float | None = None
    duplicate: DuplicateFinding | None = None
    heldout: GainStats | None = None
    known: AssignmentTest | None = None  # gain on the known pages minus gain on the score pages
    assignment: AssignmentTest | None = None
    work: float | None = None  # reported work over the round's full work
    evidence_factor: float | None = None
    usefulness_factor: float | None = None
    group: list[str] = field(default_factory=list)  # its collusion group (empty: none)
    merge_weight: float = 1.0  # its weight in the aggregate relative to a lone full round: work x group share
    cross: list[CrossEvidence] = field(default_factory=list)  # pages of others it helps (edges only)
    score: float = 0.0  # held-out gain mean (at least 0) of an accepted update
    pay: float = 0.0  # what it earns (pay.py): the score EMA and the weights follow this
    accepted: bool = False
    reason: str = ""  # "accepted", or "<check>: <why>" for the first failed check
    committed: bool = True  # it committed to bytes by the deadline: the round counts in its originality record

    def check(self, name: str) -> CheckOutcome:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (non-finite floats become the strings 'inf', '-inf', 'nan')."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class _Gate:
    """Records check outcomes for one report in CHECK_ORDER; fails at most once."""

    def __init__(self, report: ScoreReport):
        self.report = report

    @property
    def failed(self) -> bool:
        return any(c.passed is False for c in self.report.checks)

    def record(self, name: str, problem: str | None, ok_reason: str = "ok") -> bool:
        passed = problem is None
        self.report.checks.append(CheckOutcome(name, passed, ok_reason if passed else problem))
        if not passed:
            self.report.reason = f"{name}: {problem}"
        return passed

    def skip_rest(self) -> None:
        done = {c.name for c in self.report.checks}
        for name in CHECK_ORDER:
            if name not in done:
                self.report.checks.append(
                    CheckOutcome(name, None, "not run: " + self.report.reason)
                )


class _BaseLosses:
    """Base-model losses per token object, computed once (keyed by identity; the object is kept
    with its losses, so a short-lived one, a probe slice, never lends its id to another)."""

    def __init__(self, loss_fn: LossFn):
        self.loss_fn = loss_fn
        self.cache: dict[int, tuple[Any, torch.Tensor]] = {}

    def __call__(self, tokens: Any) -> torch.Tensor:
        if id(tokens) not in self.cache:
            self.cache[id(tokens)] = (tokens, self.loss_fn(None, 0.0, tokens))
        return self.cache[id(tokens)][1]


def _duplicates_originals_first(valid: Sequence[Contribution], loss_fn: LossFn, cfg: ScoringConfig,
                                base_loss: "_BaseLosses | None" = None) -> dict[str, DuplicateFinding]:
    """Duplicate findings where, inside each group of near-identical updates, the member with
    the strongest evidence of training on its own assigned pages counts as the original.
    Arrival order alone can be gamed (a copier that answers faster than its victim); the
    assignment test cannot, since a copy helps the victim's pages, not the copier's. Ties and
    members without pages keep arrival order."""
    keys = [c.hotkey for c in valid]
    if len(keys) < 2:
        return {}
    cosine, overlap = similarity_matrices([c.delta for c in valid], cfg.duplicate_topk_fraction)
    findings = duplicate_findings(keys, cosine, overlap, cfg.duplicate_cosine, cfg.duplicate_overlap)
    if not findings:
        return findings
    base_loss = base_loss or _BaseLosses(loss_fn)
    by_key = {c.hotkey: c for c in valid}
    order = list(keys)
    for group in duplicate_groups(findings):
        slots = sorted(order.index(k) for k in group)
        by_arrival = [order[i] for i in slots]
        evidence = {k: _assignment_z(by_key[k], loss_fn, cfg, base_loss) for k in group}
        strongest = max(by_arrival, key=lambda k: evidence[k])
        # Arrival order stands unless a later member's own pages clearly say it is the original:
        # early in training every update helps every page, and noise must not crown the copy.
        if evidence[strongest] >= max(cfg.assignment_z_min, evidence[by_arrival[0]] + cfg.originality_margin_z):
            by_arrival = [strongest] + [k for k in by_arrival if k != strongest]
        for slot, key in zip(slots, by_arrival):
            order[slot] = key
    index = torch.tensor([keys.index(k) for k in order])
    return duplicate_findings(order, cosine[index][:, index], overlap[index][:, index],
                              cfg.duplicate_cosine, cfg.duplicate_overlap)


def _assignment_z(c: Contribution, loss_fn: LossFn, cfg: ScoringConfig, base_loss: "_BaseLosses") -> float:
    if c.assigned_tokens is None or c.control_tokens is None:
        return -math.inf
    losses = _page_losses(c.delta, c.assigned_tokens, c.control_tokens, loss_fn, cfg, base_loss)
    return assigned_vs_random(*losses, cfg.assignment_z_min).z


def staged_assignment_test(first: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                           second: Callable[[], tuple[torch.Tensor, ...]] | None,
                           cfg: ScoringConfig) -> AssignmentTest:
    """Check 8 when held-out helps. `first` is the first sample's (assigned before, assigned after,
    control before, control after) losses; it decides alone below `assignment_first_fail_z` (fails)
    and from `assignment_first_pass_z` (passes). Between them `second()` gives the same four for
    the next pages of the same draws, and the test on both samples together decides, at
    `assignment_z_min`. The second sample is read only then."""
    test = assigned_vs_random(*first, cfg.assignment_z_min)
    if test.z >= cfg.assignment_first_pass_z:
        return dataclasses.replace(test, passed=True, bar=cfg.assignment_first_pass_z)
    if test.z < cfg.assignment_first_fail_z:
        return dataclasses.replace(test, passed=False, bar=cfg.assignment_first_fail_z)
    if second is None:
        return test
    both = [torch.cat([a, b]) for a, b in zip(first, second())]
    return assigned_vs_random(*both, cfg.assignment_z_min)


def _page_losses(delta: Mapping[str, torch.Tensor], assigned: Any, control: Any, loss_fn: LossFn,
                 cfg: ScoringConfig, base_loss: Callable[[Any], torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(assigned before, assigned after, control before, control after): what check 8 compares."""
    return (base_loss(assigned), loss_fn(delta, cfg.eval_scale, assigned),
            base_loss(control), loss_fn(delta, cfg.eval_scale, control))


def _assignment_test(c: Contribution, delta: Mapping[str, torch.Tensor], first: tuple[torch.Tensor, ...],
                     helps: bool, loss_fn: LossFn, cfg: ScoringConfig) -> AssignmentTest:
    """Check 8 on the first sample's losses `first`: staged when held-out helps, at
    `neutral_assignment_z_min` when not."""
    if not helps:
        return assigned_vs_random(*first, cfg.neutral_assignment_z_min)
    second = c.second_sample
    if second is None:
        return staged_assignment_test(first, None, cfg)
    # a second sample is this contribution's alone and read once: its base losses are not cached
    uncached = lambda tokens: loss_fn(None, 0.0, tokens)  # noqa: E731
    return staged_assignment_test(first, lambda: _page_losses(delta, *second(), loss_fn, cfg, uncached), cfg)


def score_round(
    contributions: Sequence[Contribution],
    loss_fn: LossFn,
    cfg: ScoringConfig | None = None,
    *,
    heldout_tokens: Any,
    expected_shapes: Mapping[str, Sequence[int]],
    known_tokens: Any = None,
    full_work_tokens: int | None = None,
) -> dict[str, ScoreReport]:
    """Score every contribution of one round (one unit of work) and say why.

    Gates in CHECK_ORDER: pre-rejected/malformed payload, non-finite, empty, shape; norm vs the
    median of the structurally valid contributions; duplicate, found among all structurally
    valid ones (a copy's victim that failed the norm gate is still the original): within a
    group of near-identical updates the earliest arrival is the original unless another
    member's assignment z reaches `assignment_z_min` and beats the earliest's by
    `originality_margin_z` (`_duplicates_originals_first`); held-out gain on `heldout_tokens`
    (the round's score pages, which no miner could know; rejects only a material loss,
    `material_harm`); known pages (the gain on `known_tokens`, pages a miner can know
    validators look at, must not exceed the gain on the score pages at z >= known_z_max);
    assigned-vs-random (in two stages when the held-out gain is significant,
    `staged_assignment_test`; z >= neutral_assignment_z_min on the first sample when not). All
    three on the update clipped per tensor to the median norm of the candidates left after the
    duplicate gate (`clip_before_eval`) and applied at `eval_scale`.

    The accepted are then tested against each other's pages (`collusion.py`) and paid
    (`pay.py`, with `full_work_tokens` the work of a full round); one that earns nothing fails
    `pay`. Score = the held-out gain mean (at least 0) of an update that passes every gate, pay =
    what its EMA and weights follow; both 0 on any failure. The base-model losses are computed
    once per token set, the updated-model losses once per contribution and set.
    """
    cfg = cfg or ScoringConfig()
    hotkeys = [c.hotkey for c in contributions]
    if len(set(hotkeys)) != len(hotkeys):
        raise ValueError("one contribution per hotkey per round")
    ordered = sorted(contributions, key=lambda c: c.arrival_index)
    reports = {c.hotkey: ScoreReport(c.hotkey, c.uid, c.arrival_index) for c in ordered}
    gates = {h: _Gate(r) for h, r in reports.items()}

    # Structure: every check is a pure function of the one delta.
    valid: list[Contribution] = []
    for c in ordered:
        gate = gates[c.hotkey]
        problem = c.rejected_reason or payload_problem(c.delta)
        if not gate.record("payload", problem):
            continue
        if not gate.record("finite", non_finite(c.delta)):
            continue
        if not gate.record("non_empty", is_empty(c.delta, cfg.empty_eps)):
            continue
        if not gate.record("shape", wrong_shape(c.delta, expected_shapes)):
            continue
        valid.append(c)

    # Norm against the median of this round's structurally valid contributions.
    norms = {c.hotkey: delta_norm(c.delta) for c in valid}
    median = statistics.median(norms.values()) if norms else 0.0
    after_norm: list[Contribution] = []
    for c in valid:
        report = reports[c.hotkey]
        report.norm, report.median_norm = norms[c.hotkey], median
        ratio = norms[c.hotkey] / median if median > 0 else math.inf
        problem = norm_outlier(norms[c.hotkey], median, cfg.norm_low, cfg.norm_high)
        if gates[c.hotkey].record("norm", problem, f"{ratio:.3g}x the median norm"):
            after_norm.append(c)

    # Duplicates among all structurally valid ones: an earlier copy victim that failed the
    # norm gate still counts as the original.
    base_loss = _BaseLosses(loss_fn)
    dups = _duplicates_originals_first(valid, loss_fn, cfg, base_loss)
    candidates = []
    for c in after_norm:
        finding = dups.get(c.hotkey)
        reports[c.hotkey].duplicate = finding
        if gates[c.hotkey].record("duplicate", finding.reason if finding else None):
            candidates.append(c)

    # Clip like the aggregate will, so the score measures what the update would contribute.
    clip_norms = median_tensor_norms([c.delta for c in candidates], _work_weights(candidates, full_work_tokens)) \
        if candidates else {}
    evaluated: dict[str, Mapping[str, torch.Tensor]] = {}
    control_gains: dict[str, torch.Tensor] = {}
    accepted: list[Contribution] = []
    for c in candidates:
        gate, report = gates[c.hotkey], reports[c.hotkey]
        delta = clip_to_norms(c.delta, clip_norms) if cfg.clip_before_eval else c.delta
        evaluated[c.hotkey] = delta
        gains = _gains(base_loss(heldout_tokens), loss_fn(delta, cfg.eval_scale, heldout_tokens))
        held = report.heldout = _stats(gains)
        helps = held.mean > 0 and held.z >= cfg.z_min
        problem = material_harm(held, cfg.harm_margin * float(base_loss(heldout_tokens).mean()), cfg.harm_z)
        verdict = "helps" if helps else f"neutral: needs assignment z >= {cfg.neutral_assignment_z_min:g}"
        if not gate.record("heldout_gain", problem, f"gain {held.mean:.4g}, z {held.z:.3g} ({verdict})"):
            continue
        if known_tokens is not None:
            known = _gains(base_loss(known_tokens), loss_fn(delta, cfg.eval_scale, known_tokens))
            diff, z = welch_z(known, gains)
            report.known = AssignmentTest(float(known.mean()), held.mean, diff, z, z < cfg.known_z_max)
            problem = None if report.known.passed else (
                f"helps the known evaluation pages more than unseen ones: {float(known.mean()):.4g} vs "
                f"{held.mean:.4g}, z {z:.3g} >= {cfg.known_z_max:g}")
            if not gate.record("known_pages", problem, f"diff {diff:.4g}, z {z:.3g}"):
                continue
        else:
            gate.record("known_pages", None, "no known pages to compare")
        if c.assigned_tokens is None or c.control_tokens is None:
            gate.record("assigned_vs_random", "no assigned or control pages to test against")
            continue
        first = _page_losses(delta, c.assigned_tokens, c.control_tokens, loss_fn, cfg, base_loss)
        control_after = first[3]
        test = _assignment_test(c, delta, first, helps, loss_fn, cfg)
        report.assignment = test
        problem = None
        if not test.passed:
            problem = (
                f"assigned gain {test.assigned_gain:.4g} vs random {test.random_gain:.4g}, "
                f"z {test.z:.3g} < {test.bar:g} on {test.pages} pages a side"
                + ("" if helps else " (held-out gain not significant)")
            )
        if gate.record("assigned_vs_random", problem, f"diff {test.diff:.4g}, z {test.z:.3g}"):
            control_gains[c.hotkey] = _gains(base_loss(c.control_tokens), control_after)
            accepted.append(c)

    _pay_accepted(accepted, reports, evaluated, control_gains, loss_fn, base_loss, cfg, full_work_tokens)
    for c in accepted:  # an update that earns nothing adds nothing of its own: it is not merged
        report = reports[c.hotkey]
        if gates[c.hotkey].record("pay", _unpaid(report), f"{report.pay:.3g}"):
            report.accepted = True
            report.score = max(0.0, report.heldout.mean)
            report.reason = "accepted"
    for gate in gates.values():
        gate.skip_rest()
    return {h: reports[h] for h in hotkeys}


def _work_weights(contributions: Sequence[Contribution], full_work_tokens: int | None) -> list[float] | None:
    """What the merge will weigh each by before collusion shares: its reported work, no coldkey
    over its cap (`coldkey_capped_weights`); None when all weigh alike."""
    work = [work_fraction(c.claimed_tokens, full_work_tokens) for c in contributions]
    return coldkey_capped_weights([c.coldkey or c.hotkey for c in contributions], base=work)


def _unpaid(report: ScoreReport) -> str | None:
    """Why an update that passed every check earns nothing (None when it earns something)."""
    if report.pay > 0:
        return None
    if not report.work:
        return "reported no work"
    if report.group and report.merge_weight == 0:
        return f"in a collusion group with {len(report.group) - 1} other(s), nothing of its own to be paid for"
    if not report.evidence_factor:
        return "too little of its own assigned pages in it (below the pay floor of the round's reference)"
    return "no gain on the score pages to pay for"


def _first(tokens: Any, count: int) -> Any:
    """The first `count` pages of a token set (one the caller passes as an opaque object: all of it)."""
    try:
        return tokens[:count]
    except TypeError:
        return tokens


def _stats(d: torch.Tensor) -> GainStats:
    n = d.numel()
    if n == 0:
        return GainStats(0.0, 0.0, 0.0, 0)
    mean = float(d.mean())
    if n < 2:
        return GainStats(mean, 0.0, 0.0, n)
    sd = float(d.std(unbiased=True))
    return GainStats(mean, sd, _z(mean, sd / math.sqrt(n)), n)


def _pay_accepted(accepted: Sequence[Contribution], reports: dict[str, ScoreReport],
                  evaluated: Mapping[str, Mapping[str, torch.Tensor]], control_gains: Mapping[str, torch.Tensor],
                  loss_fn: LossFn, base_loss: _BaseLosses, cfg: ScoringConfig, full_work_tokens: int | None) -> None:
    """Collusion groups among the accepted (each one's update on the others' probe pages), then
    each one's pay (`pay.py`)."""
    keys = [c.hotkey for c in accepted]
    probes = {c.hotkey: _first(c.assigned_tokens, cfg.cross_pages) for c in accepted}

    def probe_gains(carrier: str, owner: str) -> torch.Tensor:
        return _gains(base_loss(probes[owner]), loss_fn(evaluated[carrier], cfg.eval_scale, probes[owner]))

    coldkeys = {c.hotkey: c.coldkey for c in accepted if c.coldkey}
    found = edges(cross_evidence(keys, probe_gains, control_gains), coldkeys, cfg.cross_z_min,
                  cfg.cross_z_min_same_coldkey)
    for e in found:
        reports[e.carrier].cross.append(e)
    groups = collusion_groups(keys, found)
    measured = [Measured(c.hotkey, work_fraction(c.claimed_tokens, full_work_tokens),
                         reports[c.hotkey].assignment.diff, reports[c.hotkey].heldout.mean, c.coldkey,
                         reports[c.hotkey].heldout.z, reports[c.hotkey].heldout.se) for c in accepted]
    for key, p in pay(measured, groups, cfg.pay_tolerance, cfg.pay_evidence_floor, cfg.z_min).items():
        report = reports[key]
        report.pay, report.work = p.score, p.work
        report.evidence_factor, report.usefulness_factor = p.evidence, p.usefulness
        report.group, report.merge_weight = list(p.group), p.share * p.work
