"""A non-lead validator's check of the lead's round, every round.

The lead publishes its round record and commits the record's sha256 on chain. A follower takes
the record only if its digest is the one the lead committed, then replays the record's accepted
contributions (the bytes the follower received itself from the miners, matched by their hashes
and opened as scoring opens them) on the checkpoint the record says the round was applied to. If that gives the
lead's new checkpoint, the follower adopts the replayed state: the aggregate is checked and no
checkpoint download is needed. If it does not, the lead published a checkpoint its own record
cannot explain, and the follower says so.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic
import torch

from protocol.recipe import Recipe
from template.audit.replay import ReplayError, replayed_state
from template.audit.round_record import RoundRecord
from template.training.checkpoint import state_hash
from template.training.outer_step import OUTER_STEP_FRACTIONS
from template.training.model import ModelPreset
from template.validation.contribution import HASH

_RECORD = pydantic.TypeAdapter(RoundRecord)


@dataclass
class LeadCheck:
    status: str  # verified | unverifiable | mismatch
    detail: str
    record: RoundRecord | None = None
    state: dict[str, torch.Tensor] | None = None  # the replayed new checkpoint, when verified

    @property
    def verified(self) -> bool:
        return self.status == "verified"


def recipe_departure(record: RoundRecord, recipe: Recipe) -> str:
    """Why the record's recipe is not the round's, "" when it is: the lead may only have scaled
    the outer step down by one of the measured fractions (`measured_outer_step`)."""
    try:
        merged_with = record.training_recipe
    except (ValueError, TypeError) as exc:
        return f"the record's recipe does not validate ({str(exc).splitlines()[0]})"
    allowed = {recipe.outer_lr * f for f in OUTER_STEP_FRACTIONS}
    if merged_with.model_copy(update={"outer_lr": recipe.outer_lr}) != recipe:
        return "the record's recipe is not the round's"
    if merged_with.outer_lr not in allowed:
        return (f"the record's outer lr {merged_with.outer_lr:g} is not one the lead may take "
                f"({', '.join(f'{lr:g}' for lr in sorted(allowed))})")
    return ""


def parse_record(data: Any) -> RoundRecord:
    """A round record from untrusted JSON; pydantic.ValidationError on a malformed one."""
    return _RECORD.validate_python(data, strict=False)


def check_lead_round(record: RoundRecord, committed: set[str], round_index: int, base_checkpoint: str,
                     applied_state: Callable[[str], dict[str, torch.Tensor] | None], bodies: dict[str, bytes],
                     preset: ModelPreset | str, vocab_size: int, recipe: Recipe | None = None) -> LeadCheck:
    """Check the lead's `record` of `round_index` (whose contributions this validator scored
    against `base_checkpoint`, with the round's `recipe`) against the digests its hotkey committed
    on chain and against a replay from the bytes this validator received (`bodies`, by hotkey)
    onto the checkpoint the record says the round was applied to (`applied_state(digest)`: its
    state, None if not held)."""
    digest = record.digest()
    if digest not in committed:
        return LeadCheck("unverifiable", f"record {digest[:12]} is not what the lead committed on chain", record)
    if record.round_index != round_index or record.base_checkpoint != base_checkpoint:
        return LeadCheck("mismatch", f"committed record is for round {record.round_index} from "
                         f"{record.base_checkpoint[:12]}, expected round {round_index} from {base_checkpoint[:12]}",
                         record)
    if recipe is not None and (problem := recipe_departure(record, recipe)):
        return LeadCheck("mismatch", problem, record)
    start = applied_state(record.applied_checkpoint)
    if start is None:
        return LeadCheck("unverifiable", f"the round was applied to checkpoint {record.applied_checkpoint[:12]}, "
                         "which this validator does not hold", record)
    try:
        state = replayed_state(record, start, bodies, preset, vocab_size)
    except ReplayError as exc:
        accepted = len(record.accepted)
        if exc.missing:
            return LeadCheck("unverifiable", f"no bytes here from {len(exc.missing)} of {accepted} accepted "
                             f"miners (first {exc.missing[0][:10]})", record)
        differ = [hk for hk, rejected in exc.rejected.items() if rejected.kind == HASH]
        if differ:  # the miner answered the two validators with different bytes
            return LeadCheck("unverifiable", f"{len(differ)} accepted miners sent other bytes here than the lead "
                             f"recorded (first {differ[0][:10]})", record)
        return LeadCheck("mismatch", f"the record's accepted contributions do not replay: {exc}", record)
    except Exception as exc:  # a record naming units that do not exist, or a recipe that does not validate
        return LeadCheck("mismatch", f"the record's accepted contributions do not replay: {exc}", record)
    got = state_hash(state)
    if got != record.new_checkpoint:
        return LeadCheck("mismatch", f"accepted contributions give {got[:12]}, the lead published "
                         f"{record.new_checkpoint[:12]}", record)
    return LeadCheck("verified", f"{len(record.accepted)} accepted contributions give {got[:12]}", record, state)
