"""One round as data: the plan every validator derives at its start, the round once its
commitments are closed (`OpenedRound`), and the settlement that says what the round decided. The lead settles by aggregating the accepted updates and taking the
outer step; a follower settles by the lead's record once its replay checks out. The round
record is built once, from the plan and the settlement."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from loguru import logger

from protocol.messages import UnitOfWork
from protocol.recipe import Recipe
from template.audit.lead_check import LeadCheck
from template.audit.round_record import RoundRecord
from template.training.checkpoint import state_hash
from template.training.outer_step import apply_outer_step, measured_outer_step
from template.training.model import ModelPreset
from template.validation.round import Received, aggregate_in_arrival_order
from template.utils.stopwatch import Stopwatch
from template.validation.scoring import ScoreReport
from template.validator.collection import Commitments
from template.validator.miner_client import MinerEndpoint
from template.validator.records_board import Lead
from template.chain.round_clock import RoundWindow


@dataclass(frozen=True)
class RoundPlan:
    """Everything fixed at the round's start: who leads, who trains what, with which recipe."""

    netuid: int
    window: RoundWindow
    seed: bytes
    lead: Lead
    base_checkpoint: str
    recipe: Recipe
    miners: list[MinerEndpoint]
    units: dict[str, UnitOfWork]
    assignments: dict[str, list[int]]
    coldkeys: dict[str, str]
    deadline_unix: float

    @property
    def uids(self) -> dict[str, int]:
        return {m.hotkey: m.uid for m in self.miners}

    def to_json(self) -> str:
        """Saved when the round opens, so a restarted validator can pick the same round up."""
        return json.dumps({
            "netuid": self.netuid, "window": dataclasses.asdict(self.window), "seed": self.seed.hex(),
            "lead": dataclasses.asdict(self.lead), "base_checkpoint": self.base_checkpoint,
            "recipe": self.recipe.model_dump(mode="json"), "miners": [dataclasses.asdict(m) for m in self.miners],
            "units": {hk: unit.label for hk, unit in self.units.items()}, "assignments": self.assignments,
            "coldkeys": self.coldkeys, "deadline_unix": self.deadline_unix})

    @classmethod
    def from_json(cls, text: str) -> "RoundPlan":
        fields = json.loads(text)
        return cls(netuid=int(fields["netuid"]), window=RoundWindow(**fields["window"]),
                   seed=bytes.fromhex(fields["seed"]), lead=Lead(**fields["lead"]),
                   base_checkpoint=str(fields["base_checkpoint"]), recipe=Recipe.model_validate(fields["recipe"]),
                   miners=[MinerEndpoint(**m) for m in fields["miners"]],
                   units={hk: UnitOfWork.from_label(label) for hk, label in fields["units"].items()},
                   assignments={hk: [int(p) for p in pages] for hk, pages in fields["assignments"].items()},
                   coldkeys=dict(fields["coldkeys"]), deadline_unix=float(fields["deadline_unix"]))


@dataclass
class OpenedRound:
    """A round whose commitments are closed: what its settlement (the bytes, scoring, the merge)
    needs. Saved as it is handed over, so a restarted validator can still settle it."""

    plan: RoundPlan
    commitments: Commitments
    clock: Stopwatch = field(default_factory=Stopwatch)

    def to_json(self) -> str:
        return json.dumps({"plan": self.plan.to_json(), "commitments": self.commitments.to_json()})

    @classmethod
    def from_json(cls, text: str) -> "OpenedRound":
        fields = json.loads(text)
        return cls(RoundPlan.from_json(fields["plan"]), Commitments.from_json(fields["commitments"]))


@dataclass(frozen=True)
class Settlement:
    """What the round decided for this validator's model: the accepted contributions in merge
    order and the checkpoint they give, or why the round was skipped."""

    base_checkpoint: str
    new_checkpoint: str
    new_state: dict[str, torch.Tensor] | None = None  # None: the model stays as it is
    applied_to: str = ""  # the checkpoint the merge was applied to (the head when it settled); "": the base
    accepted: list[str] = field(default_factory=list)
    recipe: Recipe | None = None  # how the accepted updates were merged (the lead's, for a follower)
    units: dict[str, str] = field(default_factory=dict)  # of the accepted, as merged
    coldkeys: dict[str, str] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)  # merge weights other than 1, as merged
    folds_round: bool = False  # the new checkpoint includes this round (announced as its round)
    lead_check: LeadCheck | None = None  # a follower's check of the lead's round
    skipped: str | None = None

    @classmethod
    def skip(cls, base_checkpoint: str, reason: str) -> "Settlement":
        return cls(base_checkpoint, base_checkpoint, skipped=reason)


def settle_as_lead(plan: RoundPlan, head: str, head_state: dict[str, torch.Tensor], accepted: dict[str, Mapping],
                   reports: dict[str, ScoreReport], preset: ModelPreset | str, vocab_size: int,
                   heldout_loss: Callable[[dict[str, torch.Tensor]], float] | None = None) -> Settlement:
    """Merge the accepted updates in their fixed order and take the outer step from the head
    (`head_state`, hash `head`): the round's base, or, when rounds overlap, the base moved by the
    rounds settled since the miners started. With `heldout_loss` (the round's held-out pages) the
    step's size is the fraction of the recipe's outer lr that lowers it most
    (`measured_outer_step`), and the recipe in the settlement carries the lr taken."""
    order, merged = aggregate_in_arrival_order(accepted, reports, plan.units, preset, vocab_size,
                                               coldkeys=plan.coldkeys)
    recipe, new_state = plan.recipe, None
    if merged is not None and heldout_loss is None:
        new_state = apply_outer_step(head_state, merged, recipe.outer_lr)
    elif merged is not None:
        outer_lr, new_state, losses = measured_outer_step(head_state, merged, recipe.outer_lr, heldout_loss)
        logger.info("round {}: outer step {:.3g} of {:g} (held-out loss by fraction: {})", plan.window.index,
                    outer_lr, recipe.outer_lr, ", ".join(f"{f:g}: {loss:.4f}" for f, loss in losses.items()))
        recipe = recipe.model_copy(update={"outer_lr": outer_lr})
    return Settlement(plan.base_checkpoint, head if new_state is None else state_hash(new_state),
                      new_state, head, order, recipe, {hk: plan.units[hk].label for hk in order},
                      {hk: plan.coldkeys[hk] for hk in order if hk in plan.coldkeys},
                      {hk: reports[hk].merge_weight for hk in order if reports[hk].merge_weight != 1.0},
                      folds_round=True)


def settle_as_follower(plan: RoundPlan, head: str, check: LeadCheck) -> Settlement:
    """Adopt the lead's round when its committed record replays to its checkpoint here; else keep
    the model (the head, `head`) and say why in the check."""
    if not check.verified:
        return Settlement(plan.base_checkpoint, head, applied_to=head, recipe=plan.recipe, lead_check=check)
    lead = check.record
    return Settlement(plan.base_checkpoint, lead.new_checkpoint, check.state, lead.applied_checkpoint,
                      list(lead.accepted), lead.training_recipe,
                      {hk: lead.units[hk] for hk in lead.accepted if hk in lead.units},
                      {hk: lead.coldkeys[hk] for hk in lead.accepted if hk in lead.coldkeys}, dict(lead.weights),
                      folds_round=True, lead_check=check)


def round_record(plan: RoundPlan, received: list[Received], reports: dict[str, ScoreReport], settlement: Settlement,
                 loss_before: float | None, loss_after: float | None) -> RoundRecord:
    """The round's record: what anyone needs to replay the merge and check the new checkpoint."""
    window = plan.window
    recipe = settlement.recipe or plan.recipe
    return RoundRecord(
        netuid=plan.netuid, round_index=window.index, start_block=window.start_block, seed=plan.seed.hex(),
        eval_block=window.eval_block, base_checkpoint=settlement.base_checkpoint,
        new_checkpoint=settlement.new_checkpoint, recipe=recipe.model_dump(), assignments=plan.assignments,
        units={**{hk: u.label for hk, u in plan.units.items()}, **settlement.units},
        coldkeys={**plan.coldkeys, **settlement.coldkeys},
        contributions={r.hotkey: r.digest for r in received if r.body is not None},
        accepted=list(settlement.accepted), weights=dict(settlement.weights),
        scores={hk: r.pay for hk, r in reports.items()},
        heldout_loss_before=loss_before, heldout_loss_after=loss_after,
        applied_to="" if settlement.applied_to in ("", settlement.base_checkpoint) else settlement.applied_to)
