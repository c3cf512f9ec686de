"""From the bytes miners sent to score reports and the aggregated update: the validator's
torch-side work for one round, with no networking and no chain."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from protocol.messages import UnitOfWork
from protocol.recipe import Recipe
from protocol.payload import read_metadata
from protocol.limits import MAX_CONTRIBUTION_BYTES
from template.training.assignment import control_pages, heldout_pages, known_pages, score_pages
from template.training.compression import CompressionConfig, DecodedUpdate, shapes_of
from template.training.evaluation import applied_delta, per_sequence_loss
from template.training.inner_loop import steps_for
from template.training.pages import PageStore
from template.training.model import ModelPreset
from template.validation.contribution import Expected, Rejected, open_contribution
from template.validation.unit_merge import merge_units
from template.validation.scoring import Contribution, ScoreReport, ScoringConfig, score_round


@dataclass
class Received:
    """What one miner sent this round (or why nothing usable came)."""

    uid: int
    hotkey: str
    assigned: list[int]
    body: bytes | None
    arrival_index: int
    failure: str | None = None
    unit: UnitOfWork = UnitOfWork()
    committed: bool = True  # it committed to bytes by the deadline (its round counts in its record)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest() if self.body is not None else ""


@dataclass(frozen=True)
class RoundContext:
    netuid: int
    round_index: int
    base_checkpoint: str
    eval_seed: bytes


def decode_contribution(received: Received, ctx: RoundContext, shapes: dict[str, tuple[int, ...]],
                        compression: CompressionConfig) -> tuple[DecodedUpdate | None, str | None]:
    """The delta (validated, kept packed, decoded tensor by tensor when read), or None and the
    reason it cannot be used (`contribution.open_contribution`)."""
    if received.body is None:
        return None, received.failure or "no contribution"
    expected = Expected(received.hotkey, ctx.netuid, ctx.round_index, ctx.base_checkpoint, received.unit)
    try:
        return open_contribution(received.body, expected, shapes, compression), None
    except Rejected as rejected:
        return None, rejected.reason


def full_work_tokens(recipe: Recipe, page_len: int) -> int:
    """The inner-loop tokens of a full round of the recipe: what a miner reports when it trained
    every step it may (H, or fewer when `max_passes` over its pages comes first; the pay rule's
    unit of work)."""
    batch = min(recipe.batch_size, recipe.pages_per_miner)
    return steps_for(recipe, recipe.pages_per_miner, batch) * batch * page_len


def claimed_tokens(body: bytes | None) -> int | None:
    """The inner-loop tokens a contribution's metadata reports (None when it does not say)."""
    try:
        meta = read_metadata(body, MAX_CONTRIBUTION_BYTES) if body is not None else None
        return max(0, int(meta["tokens_trained"])) if meta else None
    except Exception:  # noqa: BLE001 - crafted bytes: no claim read (the decoder says what is wrong)
        return None


def _second_sample(pages: PageStore, assigned: list[int], control: list[int]):
    return lambda: (pages.pages(assigned), pages.pages(control))


def score_contributions(model: torch.nn.Module, base_state: dict[str, torch.Tensor], received: list[Received],
                        ctx: RoundContext, pages: PageStore, compression: CompressionConfig,
                        scoring: ScoringConfig, heldout_count: int, control_count: int, outer_lr: float = 1.0,
                        coldkeys: Mapping[str, str] | None = None, full_work_tokens: int | None = None,
                        ) -> tuple[dict[str, ScoreReport], dict[str, DecodedUpdate]]:
    """Score every contribution, each unit of work (whole model, or one shard) among its own
    peers; returns the reports and the decoded deltas of the accepted.

    Pages, all drawn with the eval seed: `heldout_count` score pages from the training pages
    nobody was assigned this round (`assignment.score_pages`), as many known pages (a sample of
    the public global-curve pages), and per miner its assigned sample and control pages."""
    shapes = shapes_of(base_state)
    assigned_anywhere = {p for item in received for p in item.assigned}
    unseen = pages.pages(score_pages(ctx.eval_seed, pages.train_ids, assigned_anywhere, heldout_count))
    known = pages.pages(known_pages(ctx.eval_seed, pages.heldout_ids, heldout_count))
    by_unit: dict[str, list[Contribution]] = {}
    deltas = {}
    for item in received:
        delta, problem = decode_contribution(item, ctx, shapes, compression)
        if delta is not None:
            deltas[item.hotkey] = delta
        # Twice the pages drawn; the second half is read only for an undecided assignment test
        # (both draws are rankings, so the first half is exactly the draw of `control_count`).
        assigned_sample = heldout_pages(ctx.eval_seed, item.assigned, min(2 * control_count, len(item.assigned)))
        control = control_pages(ctx.eval_seed, item.hotkey, pages.train_ids, item.assigned, 2 * control_count)
        first = min(control_count, len(assigned_sample))
        more = (assigned_sample[first:], control[control_count:])
        by_unit.setdefault(item.unit.label, []).append(Contribution(
            hotkey=item.hotkey, uid=item.uid, delta=delta, arrival_index=item.arrival_index,
            rejected_reason=problem, assigned_tokens=pages.pages(assigned_sample[:first]),
            control_tokens=pages.pages(control[:control_count]),
            second_sample=_second_sample(pages, *more) if len(more[0]) >= 2 and len(more[1]) >= 2 else None,
            coldkey=(coldkeys or {}).get(item.hotkey, ""), claimed_tokens=claimed_tokens(item.body)))

    def loss_fn(delta, scale, tokens):
        if delta is None:
            return per_sequence_loss(model, tokens)
        with applied_delta(model, delta, scale):
            return per_sequence_loss(model, tokens)

    reports: dict[str, ScoreReport] = {}
    units = {item.unit.label: item.unit for item in received}
    for label, contributions in by_unit.items():
        # Score each update at the scale it will have in the aggregate (outer lr / peers on the
        # same unit): a single miner's full step overshoots, the averaged one does not.
        peers = sum(c.delta is not None for c in contributions)
        unit_scoring = replace(scoring, eval_scale=outer_lr / max(1, peers))
        # A shard of a scheme that cuts the model in `count` parts costs about 1/count of the
        # full model's compute per token: its full round is that share of a full-model round.
        unit_work = full_work_tokens * units[label].count if full_work_tokens else None
        reports.update(score_round(contributions, loss_fn, unit_scoring, heldout_tokens=unseen,
                                   expected_shapes=shapes, known_tokens=known, full_work_tokens=unit_work))
    for item in received:
        reports[item.hotkey].committed = item.committed
    accepted = {hk: deltas[hk] for hk, report in reports.items() if report.accepted}
    return reports, accepted


def aggregate_in_arrival_order(accepted: dict[str, Mapping[str, torch.Tensor]], reports: dict[str, ScoreReport],
                               units: dict[str, UnitOfWork], preset: ModelPreset | str, vocab_size: int, min_per_unit: int = 2,
                               coldkeys: dict[str, str] | None = None
                               ) -> tuple[list[str], dict[str, torch.Tensor] | None]:
    """The outer step's update, summed in a fixed order (arrival, then hotkey) that the round
    record keeps, so anyone can replay it bit for bit (`template.audit.replay`)."""
    order = sorted(accepted, key=lambda hk: (reports[hk].arrival_index, hk))
    weights = {hk: reports[hk].merge_weight for hk in order if reports[hk].merge_weight != 1.0}
    return merge_units(order, accepted, {hk: units[hk] for hk in order}, preset, vocab_size, min_per_unit, coldkeys,
                       weights)
