"""A validator's start after a crash: the state file, the round records and the checkpoints are
reconciled so that nothing committed is lost and the model continues from the newest intact
checkpoint, never silently from the initial weights."""
from __future__ import annotations

import json
import re
from pathlib import Path

from loguru import logger

from template.audit.lead_check import parse_record
from template.audit.round_record import RoundRecord, append_record, read_records
from template.training.checkpoint import CheckpointError
from template.utils.files import write_text_atomically
from template.validation.score_ema import ScoreBook
from template.validator.state import CheckpointStore, ValidatorState


def recover(state: ValidatorState | None, state_dir: Path, checkpoints: CheckpointStore, alpha: float
            ) -> tuple[ValidatorState, str | None]:
    """The state to resume from, and the digest of a record still to commit on chain (a lead's
    round settled just before a crash). `state` None: the state file was corrupt."""
    records_path = state_dir / "rounds.jsonl"
    records = read_records(records_path)
    to_commit = None
    if state is not None and state.pending_record:
        pending = parse_record(json.loads(state.pending_record))
        if not any(r.digest() == pending.digest() for r in records[-3:]):
            append_record(records_path, pending)
            records.append(pending)
            logger.warning("round {}: its record was settled but not written before the stop; written now",
                           pending.round_index)
        to_commit = pending.digest() if state.pending_commit else None
        state.pending_record, state.pending_commit = "", False
    if state is None:
        state = rebuilt_from_records(records, state_dir / "scores.jsonl", alpha)
    marked = commit_mark(state_dir)
    if to_commit is None and marked in {r.digest() for r in records[-3:]}:
        to_commit = marked  # the state that said so is gone, the mark beside it is not
    return with_intact_checkpoint(state, records, checkpoints), to_commit


COMMIT_MARK = "record_to_commit"  # a lead's record digest between its append and its commit on chain


def mark_commit(state_dir: Path, digest: str) -> None:
    """Note, in a file of its own, that the record `digest` is to be committed: a restart whose
    state file was torn still commits it."""
    write_text_atomically(state_dir / COMMIT_MARK, digest)


def clear_commit_mark(state_dir: Path) -> None:
    (state_dir / COMMIT_MARK).unlink(missing_ok=True)


def commit_mark(state_dir: Path) -> str | None:
    try:
        text = (state_dir / COMMIT_MARK).read_text(errors="replace").strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def rebuilt_from_records(records: list[RoundRecord], scores_path: Path, alpha: float) -> ValidatorState:
    """A state from the audit trail alone: round counter, checkpoint, held-out curve, score EMA."""
    state = ValidatorState()
    if not records:
        return state
    last = records[-1]
    state.last_round = last.round_index
    state.checkpoint = last.new_checkpoint
    folded = [r for r in records if r.new_checkpoint == last.new_checkpoint
              and r.new_checkpoint != r.applied_checkpoint]
    state.checkpoint_round = folded[-1].round_index if folded else last.round_index
    if records[0].heldout_loss_before is not None:
        state.heldout_history.append({"round": -1, "heldout_loss": records[0].heldout_loss_before})
    state.heldout_history += [{"round": r.round_index, "heldout_loss": r.heldout_loss_after} for r in records
                              if r.heldout_loss_after is not None]
    state.scores_json = scores_replayed(scores_path, alpha).to_json()
    logger.warning("state rebuilt from {} round records: round {}, checkpoint {}", len(records), state.last_round,
                   state.checkpoint[:12])
    return state


def scores_replayed(path: Path, alpha: float) -> ScoreBook:
    """The score EMA folded again from the per-round reports in `scores.jsonl`."""
    book = ScoreBook(alpha=alpha)
    if not path.exists():
        return book
    for line in path.read_text(errors="replace").splitlines():
        try:
            reports = json.loads(line)["reports"]
            scores = {hk: float(r.get("pay", r["score"])) for hk, r in reports.items()}  # the EMA follows pay
            uids = {hk: int(r["uid"]) for hk, r in reports.items()}
            unrecorded = {hk for hk, r in reports.items() if r.get("committed", True) is False}
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a half-written last line
        book.update(scores, uids, unrecorded)
    return book


def with_intact_checkpoint(state: ValidatorState, records: list[RoundRecord], checkpoints: CheckpointStore
                           ) -> ValidatorState:
    """Keep the state's checkpoint when it loads and matches its hash; else set the broken file
    aside and fall back to the newest checkpoint the records name that does."""
    if not state.checkpoint or _intact(checkpoints, state.checkpoint):
        return state
    logger.error("checkpoint {} is missing or corrupt; falling back to the newest intact one",
                 checkpoints.path(state.checkpoint))
    checkpoints.set_aside(state.checkpoint)
    for record in reversed(records):
        for digest, round_index in ((record.new_checkpoint, record.round_index),
                                    (record.base_checkpoint, record.round_index - 1)):
            if digest != state.checkpoint and _intact(checkpoints, digest):
                state.checkpoint, state.checkpoint_round = digest, round_index
                logger.warning("resuming from checkpoint {} (round {})", digest[:12], round_index)
                return state
    logger.error("no intact checkpoint on disk: starting from the subnet's initial weights")
    state.checkpoint, state.checkpoint_round = "", -1
    return state


def _intact(checkpoints: CheckpointStore, digest: str) -> bool:
    if not checkpoints.has(digest):
        return False
    try:
        checkpoints.load(digest)
        return True
    except (CheckpointError, OSError) as exc:
        logger.error("{}: {}", checkpoints.path(digest), exc)
        return False
