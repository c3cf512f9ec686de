"""The miner's work for one round: fetch the base checkpoint, train, compress, sign, store.

One worker thread takes train requests in order. Each finished contribution is written to the
outbox on disk with its signed commitment (so a restart loses nothing), with the
error-feedback residual saved beside it.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from loguru import logger

from protocol.auth import sign_commitment
from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.messages import ContributionMeta, TrainRequest
from protocol.payload import decode_tensors, encode_tensors
from template.miner.base_sync import BaseSync, SyncedBase
from template.miner.carry_over import CarryOver
from template.miner.checkpoint_cache import CheckpointCache
from template.miner.round_ledger import RoundEntry, RoundLedger
from template.miner.outbox import Outbox
from template.miner.round_log import RoundLog
from template.miner.team_lead import TeamLead
from template.training.workload import Workload
from template.training.compression import CompressedUpdate, DecodedUpdate, compress, shapes_of
from template.training.outer_step import apply_outer_step
from template.training.inner_loop import pseudo_gradient, train_inner
from template.training.model import load_model_state
from template.training.shards import ShardSpec, shard_delta_in_full_model, extract, loss_mode, sub_state


# Training stops before the deadline by what compressing, signing and committing took last time
# (three times that, and at least MIN_COMMIT_MARGIN_SECONDS: the validator's long poll and the
# chain's block clock need their share), and by COMMIT_MARGIN_SECONDS before it is known: a
# commitment after the deadline counts for nothing.
COMMIT_MARGIN_SECONDS = 3.0
MIN_COMMIT_MARGIN_SECONDS = 1.5
# Merges in flight the eager start stands in for: one in step, two when the lead is a round behind;
# further back the last merge is no guide to the ones since.
MAX_STAND_IN_ROUNDS = 2
COPY_LAG_SECONDS = 1.0  # the copy behaviour's delay after its victim committed (`_copied`)


@dataclass
class Outcome:
    status: str  # queued | training | done | failed
    detail: str = ""


class MinerWorker:
    def __init__(self, keypair, workload: Workload, behaviour: str, state_dir: Path, copy_from_dir: Path | None,
                 device: torch.device, round_log: RoundLog | None = None, compile: bool = False,
                 team: TeamLead | None = None):
        self.keypair = keypair
        self.hotkey = keypair.ss58_address
        self.workload = workload
        self.behaviour = behaviour
        self.device = device
        self.copy_from = Outbox(copy_from_dir / "outbox") if copy_from_dir else None
        self.checkpoints = CheckpointCache(state_dir / "checkpoints")
        self.outbox = Outbox(state_dir / "outbox")
        self.state_dir = state_dir
        self.jobs: queue.Queue[TrainRequest] = queue.Queue()
        self.outcomes: dict[int, Outcome] = {}
        self.orders: dict[int, tuple[float, TrainRequest]] = {}  # round -> (priority, the order worked on)
        self.lock = threading.Lock()
        self.round_log = round_log or RoundLog(0, behaviour)
        self.compile = compile
        self._full_model: torch.nn.Module | None = None  # reused so torch.compile runs once
        self.carry = CarryOver(state_dir)
        self.team = team  # under torchrun: the other processes train each unit with this one
        self._stopping: threading.Event | None = None
        # AdamW state: (unit label, state); a team keeps its (sharded) moments in its processes
        self._optimizer_state = self.carry.moments() if team is None else ("", None)
        self.sync = BaseSync(self.checkpoints, workload)
        self.ledger = RoundLedger(state_dir / "miner_rounds.jsonl")
        self.finish_seconds: float | None = None  # how long compressing and committing took last round
        self.received: dict[int, float] = {}  # round -> when its order was accepted (time.time())
        self._sent: dict[int, tuple[CompressedUpdate, dict]] = {}  # round -> (update, shapes), the last few committed
        # An order that comes while the previous round trains has its base synced meanwhile.
        self._syncer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sync")
        self._synced: dict[int, concurrent.futures.Future] = {}  # round -> its base, being synced

    def submit(self, request: TrainRequest, priority: float = 0.0) -> str:
        """Queue a round's work order. A round has one order: a different one for the same round
        replaces it only when it comes with a higher `priority` (the sender's stake, so the lead's
        order wins over any lesser permit holder's), and the replaced work is dropped."""
        with self.lock:
            held = self.orders.get(request.round_index)
            if held is not None:
                held_priority, held_request = held
                if held_request == request:
                    return "done" if self.outbox.has(request.round_index) else "already_training"
                if priority <= held_priority:
                    return "already_training"
                logger.warning("round {}: an order from a validator with more stake replaces the one held",
                               request.round_index)
                self.outbox.remove(request.round_index)
            elif self.outbox.has(request.round_index):
                return "done"
            self.orders[request.round_index] = (priority, request)
            self.received.setdefault(request.round_index, time.time())
            self.outcomes[request.round_index] = Outcome("queued")
            self.carry.save_order(request, priority)
            if self.behaviour != "copy":
                self._synced[request.round_index] = self._syncer.submit(
                    self.sync.base_for, request, request.deadline_unix - time.time(),
                    lambda: not self.is_current(request))
        self.jobs.put(request)
        return "accepted"

    def is_current(self, request: TrainRequest) -> bool:
        """Whether `request` is still the order this miner works on for its round."""
        with self.lock:
            held = self.orders.get(request.round_index)
            return held is not None and held[1] is request

    def outcome(self, round_index: int) -> Outcome | None:
        if self.outbox.has(round_index):
            return Outcome("done")
        with self.lock:
            return self.outcomes.get(round_index)

    def resume_open_orders(self) -> None:
        """Queue again the orders accepted before a restart whose deadline is still ahead."""
        for priority, order in self.carry.open_orders():
            if time.time() < order.deadline_unix and self.submit(order, priority) == "accepted":
                logger.info("round {}: resuming the order accepted before the restart", order.round_index)
            else:
                self.carry.forget_order(order.round_index)

    def run(self, stop: threading.Event) -> None:
        self._stopping = stop
        self.resume_open_orders()
        while not stop.is_set():
            try:
                request = self.jobs.get(timeout=0.5)
            except queue.Empty:
                if self.team is not None:
                    self.team.idle()
                continue
            if not self.is_current(request):
                continue  # replaced while queued
            if time.time() > request.deadline_unix:
                self._set(request.round_index, Outcome("failed", "deadline passed before the job started"))
                self.round_log.failed(request.round_index, "deadline passed before the job started")
                self.carry.forget_order(request.round_index)
                continue
            self._set(request.round_index, Outcome("training"))
            try:
                body, entry = self._contribution(request)
                if not self.is_current(request):
                    logger.info("round {}: dropped the work of a replaced order", request.round_index)
                    continue
                self.outbox.put(request.round_index, body,
                                sign_commitment(self.keypair, request.netuid, request.round_index, body))
                self._set(request.round_index, Outcome("done"))
                self.round_log.committed(request.round_index, len(body))
                self.carry.forget_order(request.round_index)
                self.finish_seconds = time.time() - entry.trained_until
                self.ledger.append(dataclasses.replace(entry, committed=time.time()))
            except Exception as exc:  # one bad round must not end the miner
                logger.exception("round {} failed: {}", request.round_index, exc)
                if self.is_current(request):
                    self._set(request.round_index, Outcome("failed", str(exc)))
                    self.round_log.failed(request.round_index, str(exc))
                    self.carry.forget_order(request.round_index)
        if self.team is not None:
            self.team.finish()

    def _set(self, round_index: int, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes[round_index] = outcome
            for old in [r for r in self.outcomes if r < round_index - 16]:
                del self.outcomes[old]
                self.orders.pop(old, None)
            for old in [r for r in self._synced if r < round_index]:  # work never started: its base is not needed
                self._synced.pop(old).cancel()

    @property
    def commit_margin(self) -> float:
        """How long before the deadline training stops (see COMMIT_MARGIN_SECONDS)."""
        if self.finish_seconds is None:
            return COMMIT_MARGIN_SECONDS
        return min(COMMIT_MARGIN_SECONDS, max(MIN_COMMIT_MARGIN_SECONDS, 3 * self.finish_seconds))

    def _contribution(self, request: TrainRequest) -> tuple[bytes, RoundEntry]:
        entry = RoundEntry(request.round_index, received=self.received.get(request.round_index, time.time()),
                           started=time.time())
        if self.behaviour == "copy":
            body = self._copied(request)
            self.round_log.made(request.round_index, "copied")
            return body, dataclasses.replace(entry, trained_until=time.time())
        started = time.monotonic()
        # Bounded by the round (a download past the deadline is worthless) and given up the moment
        # the order is replaced: another permit holder's order must not hold the worker.
        with self.lock:
            syncing = self._synced.pop(request.round_index, None)
        synced = syncing.result() if syncing is not None else self.sync.base_for(
            request, timeout=request.deadline_unix - time.time(), should_stop=lambda: not self.is_current(request))
        base = synced.state
        entry = dataclasses.replace(entry, sync=synced.how, sync_bytes=synced.bytes_fetched)
        if self.behaviour == "zero":
            delta = {name: torch.zeros_like(t, dtype=torch.float32) for name, t in base.items()}
            stats = None
            self.round_log.made(request.round_index, "zero")
        else:
            delta, stats = self._train(request, self.eager_start(request, synced))
        entry = dataclasses.replace(entry, trained_until=time.time(), steps=stats.steps if stats else 0,
                                    train_seconds=stats.seconds if stats else 0.0)
        # Error feedback is per unit of work: what a shard did not send belongs to that shard.
        update, residual = compress(delta, self.carry.residual(request.unit.label), request.recipe.compression)
        self.carry.save_residual(request.unit.label, residual)
        self._sent = {r: sent for r, sent in self._sent.items() if r > request.round_index - MAX_STAND_IN_ROUNDS - 1}
        self._sent[request.round_index] = (update, shapes_of(delta))
        meta = ContributionMeta(
            netuid=request.netuid, round_index=request.round_index, base_checkpoint=request.base_checkpoint,
            hotkey=self.hotkey, unit=request.unit, tokens_trained=stats.tokens if stats else 0,
            inner_steps=stats.steps if stats else 0, loss_first=stats.loss_first if stats else 0.0,
            loss_last=stats.loss_last if stats else 0.0, train_seconds=time.monotonic() - started,
            compression=request.recipe.compression.codec_id,
        )
        if stats:
            logger.info("round {} trained {} steps, loss {:.3f} -> {:.3f}, {:.0f} tok/s",
                        request.round_index, stats.steps, stats.loss_first, stats.loss_last,
                        stats.tokens_per_second)
            self.round_log.made(request.round_index, "trained", stats)
        return encode_tensors(update.to_tensors(), meta.model_dump(mode="json")), entry

    def eager_start(self, request: TrainRequest, synced: SyncedBase) -> dict[str, torch.Tensor]:
        """Where to train from. With overlapping rounds the base lacks the merge of the round still
        being scored (round r-1's merge reaches the model after round r starts), and of the round
        before too when the lead is a round behind (its head had not moved when it sent the order).
        As in DiLoCo with eager updates, a stand-in for each merge in flight moves the start: this
        miner's own update of that round for its 1/n share, and the last merge (the base's own
        step, known when the base was replayed here) for the other (n-1)/n. The scores are taken
        against the head, which holds those merges: a start without them trains the same steps
        again, and in a 120-round run both other honest updates of a round that started two merges
        behind hurt or left the held-out loss. Without the last merge (a downloaded base, as in a
        run's second round) it starts from the base: its own update alone at full size overshoots,
        and the round's merge, built from such starts, then made a poor stand-in two rounds
        later."""
        base = synced.state
        lr = request.recipe.outer_lr
        in_flight = range(max(request.base_round + 1, request.round_index - MAX_STAND_IN_ROUNDS), request.round_index)
        own = [DecodedUpdate(*self._sent[r]) for r in in_flight
               if r in self._sent and set(self._sent[r][1]) == set(base)]
        if not own or synced.previous is None or synced.merged < 2 or lr <= 0:
            return base
        n = synced.merged
        others = len(in_flight) - len(own) / n  # the last merge's share of the stand-ins
        stand_in = {name: sum(o[name] for o in own) / n + (synced.previous[name] - base[name]) / lr * others
                    for name in base}
        return apply_outer_step(base, stand_in, lr)

    def _train(self, request: TrainRequest, base: dict[str, torch.Tensor]):
        """H inner steps on the assigned unit from `base`; the pseudo-gradient in full-model
        coordinates."""
        if self.team is not None:
            stopping = self._stopping
            return self.team.train(request, self.workload, base, int(request.seed[:8], 16),
                                   request.deadline_unix - self.commit_margin,
                                   lambda: not self.is_current(request) or bool(stopping and stopping.is_set()))
        spec = ShardSpec(request.unit.scheme, request.unit.index, request.unit.count)
        if spec.scheme == "full":
            if self._full_model is None:
                self._full_model = self.workload.model_from(base, self.device)
            else:
                load_model_state(self._full_model, base)
            model, start = self._full_model, base
        else:
            model, plan = extract(base, spec, self.workload.architecture, self.workload.vocab_size, self.device)
            start = sub_state(model)
        # AdamW's moments carry over while the miner trains the same unit (as DiLoCo's workers
        # keep theirs): bench/collective.py measured 6.32 vs 6.78 held-out after 10 rounds at top-32.
        label, kept = self._optimizer_state
        self._optimizer_state = ("", None)
        if label != request.unit.label:
            kept = None  # another unit's moments must not sit in memory beside this one's
        stats = train_inner(model, self.workload.pages.pages(request.pages), request.recipe,
                            seed=int(request.seed[:8], 16),
                            deadline=request.deadline_unix - self.commit_margin,
                            compile=self.compile, loss_mode=loss_mode(spec), optimizer_state=kept,
                            should_stop=lambda: not self.is_current(request))
        self._optimizer_state = (request.unit.label, stats.optimizer_state)
        self.carry.save_moments(self._optimizer_state)
        delta = pseudo_gradient(start, model)
        if spec.scheme != "full":
            delta = shard_delta_in_full_model(delta, plan, shapes_of(base))
        return delta, stats

    def _copied(self, request: TrainRequest) -> bytes:
        """Freeloader: send another miner's contribution for this round as its own. Bytes are
        revealed only after commitments close, so in time only a colluder can hand them over, and
        only once its own work is done: the copy starts COPY_LAG_SECONDS after the victim committed
        (the demo reads the victim's disk; the lag stands for the hand-over, and keeps a copier on
        an idle CPU from answering a validator before its busy victim). Whichever of the pair
        counts as the original, the pair is paid for one update."""
        while time.time() < request.deadline_unix:
            found = None
            if self.copy_from.has(request.round_index):
                time.sleep(max(0.0, min(COPY_LAG_SECONDS, request.deadline_unix - time.time() - 0.5)))
                found = self.copy_from.body(request.round_index)
            if found is not None:
                tensors, meta = decode_tensors(found, MAX_CONTRIBUTION_BYTES)
                meta = dict(meta or {}, hotkey=self.hotkey)
                logger.info("round {}: copied {} bytes from another miner", request.round_index, len(found))
                return encode_tensors(tensors, meta)
            time.sleep(0.2)
        raise RuntimeError("nothing to copy before the deadline")
