"""Validator lifecycle: rounds on the chain's clock, scoring, weights, and (as lead) the outer step.

Each round is planned (`plan_round`), collected, scored and settled (`template.validator.round`);
`settle` is the one place the validator's model and state change. The decisions live in pure
functions (`template.validation`, `template.validator.round`). State is saved after every
round and resumed on restart.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import bittensor as bt
import httpx
import torch
from loguru import logger

from protocol.messages import CheckpointInfo, TrainRequest, UnitOfWork
from protocol.version import WEIGHTS_VERSION_KEY
from template.audit.lead_check import LeadCheck, check_lead_round
from template.audit.replay import archive_dir
from template.audit.round_record import RoundRecord, append_record
from template.chain.neuron_chain import MetagraphView, NeuronChain
from template.config import Config, build_workload, expand, log_level, neuron_folder, open_neuron_run
from template.net.addresses import published_ip
from template.net.checkpoint_client import (MIN_TRANSFER_BYTES_PER_S, CheckpointFetchError, download_checkpoint,
                                            fetch_round_base)
from template.net.monitoring import Monitoring, install_monitoring
from template.net.server import BackgroundServer
from template.training.checkpoint import CheckpointError
from template.training.assignment import assigned_pages, eval_seed, global_eval_pages, heldout_pages, round_seed
from template.training.evaluation import per_sequence_loss, state_loss
from template.training.model import load_model_state, model_state, pick_device
from template.training.workload import Workload, initial_seed
from template.utils.logging import setup_logging
from template.utils.neuron_folder import claim_folder
from template.utils.stopwatch import Stopwatch
from template.utils.versions import versions
from template.utils.wandb_run import WandbRun
from template.validation.round import Received, RoundContext, full_work_tokens, score_contributions
from template.validation.score_ema import ScoreBook
from template.validation.scoring import ScoreReport, ScoringConfig
from template.validator.checkpoint_app import create_checkpoint_app
from template.validator.collection import collect_commitments, fetch_revealed, received_from
from template.validator.lead_election import (announced_rounds, candidates_of, conflicting_checkpoint, elect,
                                              starting_peer_to_wait_for)
from template.validator.miner_client import MinerClient, MinerEndpoint
from template.validator.records_board import Lead, RoundRecordBoard
from template.validator.round import (OpenedRound, RoundPlan, Settlement, round_record, settle_as_follower,
                                     settle_as_lead)
from template.chain.round_clock import RoundWindow, next_round, round_at
from template.validator.recovery import clear_commit_mark, mark_commit, recover
from template.validator.reporting import (ValidatorMetrics, WeightsSet, report_metrics, weights_line,
                                          weights_metrics)
from template.validator.state import CheckpointStore, ValidatorState
from template.validator.unit_sizing import full_training_gb, units_by_capacity

FOLLOWER_JOIN_MARGIN_BLOCKS = 4  # a follower joins a round at the latest this many blocks before its deadline
REVEAL_FLOOR_SECONDS = 2.0  # a round settled late still gets this long to fetch the committed bytes


@dataclass(frozen=True)
class PreparedRound:
    window: RoundWindow
    graph: MetagraphView
    lead: Lead
    miners: list[MinerEndpoint]
    units: dict[str, UnitOfWork]


class RoundSkipped(RuntimeError):
    """This validator cannot take part in the round (said in one line, not as a crash)."""


async def completed(settling: asyncio.Future) -> int:
    """1 when the settlement finished with the round settled, else 0 (skipped, or it broke)."""
    settlement = await settling
    return int(settlement is not None and not settlement.skipped)


class Validator:
    """`miners`, `lead_records` and `fetch_checkpoint` (a lead's announced base of a round) default
    to the HTTP implementations; tests pass in-process ones to drive whole rounds without sockets."""

    def __init__(self, config: Config, chain: NeuronChain, workload: Workload, state_dir: Path, run: WandbRun,
                 miners: MinerClient | None = None, lead_records: RoundRecordBoard | None = None,
                 fetch_checkpoint=fetch_round_base, monitoring: Monitoring | None = None):
        self.config = config
        self.chain = chain
        self.workload = workload
        self.rounds = config.round
        self.recipe = workload.recipe
        self.state_dir = state_dir
        self.checkpoints = CheckpointStore(state_dir / "checkpoints")
        self.state_path = state_dir / "validator_state.json"
        self.state, self.record_to_commit = recover(ValidatorState.load(self.state_path), state_dir, self.checkpoints,
                                                    config.validator.ema_alpha)
        self.scores = ScoreBook.from_json(self.state.scores_json) if self.state.scores_json else \
            ScoreBook(alpha=config.validator.ema_alpha)
        self.device = pick_device(config.neuron.device)
        self.model = workload.initial_model(initial_seed(config.netuid), self.device)
        self.run = run
        self.scoring = ScoringConfig()
        self.global_eval = workload.pages.pages(
            global_eval_pages(workload.pages.heldout_ids, config.round.global_eval_pages))
        self.miners = miners or MinerClient(chain.wallet.hotkey, timeout=config.validator.query_timeout + 6.0)
        self.lead_records = lead_records or RoundRecordBoard(chain.committed_digests)
        self.fetch_checkpoint = fetch_checkpoint
        self.base_url = ""
        self.capacities: dict[str, float] = {}  # hotkey -> declared GB (from /v1/info)
        self.rounds_started = 0  # since this process started
        self.following = False  # whether this validator followed another's lead in its last round
        # Held while a settlement moves the head and publishes its record, and while a round is
        # planned from the head: a round's base always has its record served.
        self.head_lock = asyncio.Lock()
        self.metrics = ValidatorMetrics(monitoring) if monitoring is not None else None
        if monitoring is not None:  # what /health says before this process finishes a round
            if self.state.last_round >= 0:
                monitoring.round_resumed(self.state.last_round)
            if self.state.last_weights_block:
                monitoring.weights_set(self.state.last_weights_block)
        self.last_weights: WeightsSet | None = None  # set (or computed) this round, for report_round

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoints.directory

    # --- checkpoints -------------------------------------------------------------------------
    def ensure_checkpoint(self) -> None:
        if self.checkpoints.has(self.state.checkpoint):
            load_model_state(self.model, self.checkpoints.load(self.state.checkpoint))
            logger.info("resumed at round {} from checkpoint {}", self.state.last_round, self.state.checkpoint[:12])
            return
        self.state.checkpoint = self.checkpoints.save(model_state(self.model))
        loss = self.global_loss()
        self.state.heldout_history.append({"round": -1, "heldout_loss": loss})
        logger.info("initial checkpoint {} (held-out loss {:.4f})", self.state.checkpoint[:12], loss)

    def latest_info(self) -> CheckpointInfo | None:
        if not self.state.checkpoint:
            return None
        path = self.checkpoints.path(self.state.checkpoint)
        return CheckpointInfo(round_index=self.state.checkpoint_round, sha256=self.state.checkpoint,
                              size_bytes=path.stat().st_size if path.exists() else 0,
                              model_preset=self.workload.preset_name, vocab_size=self.workload.vocab_size)

    def round_base_info(self, round_index: int) -> CheckpointInfo | None:
        """The checkpoint this validator sent round `round_index`'s miners (as its lead)."""
        found = self.state.round_bases.get(str(round_index))
        if found is None or not self.checkpoints.has(found[0]):
            return None
        return CheckpointInfo(round_index=int(found[1]), sha256=found[0],
                              size_bytes=self.checkpoints.path(found[0]).stat().st_size,
                              model_preset=self.workload.preset_name, vocab_size=self.workload.vocab_size)

    def remember_round_base(self, round_index: int, keep: int = 16) -> None:
        self.state.round_bases[str(round_index)] = [self.state.checkpoint, self.state.checkpoint_round]
        for old in sorted(self.state.round_bases, key=int)[:-keep]:
            del self.state.round_bases[old]

    def global_loss(self) -> float:
        return float(per_sequence_loss(self.model, self.global_eval).mean())

    def adopt_checkpoint(self, digest: str, round_index: int, state: dict[str, torch.Tensor] | None) -> None:
        """The one place the model and the announced checkpoint change."""
        if state is not None:
            self.checkpoints.save(state)
            load_model_state(self.model, state)
        self.state.checkpoint, self.state.checkpoint_round = digest, round_index

    def held_state(self, digest: str) -> dict[str, torch.Tensor] | None:
        """A checkpoint this validator holds, intact, by hash; None when it does not."""
        if not self.checkpoints.has(digest):
            return None
        try:
            return self.checkpoints.load(digest)
        except CheckpointError as exc:
            logger.error("{}", exc)
            self.checkpoints.set_aside(digest)
            return None

    def load_head(self) -> None:
        """Put the head (the announced checkpoint) back in the model, e.g. after scoring against a
        round's older base."""
        load_model_state(self.model, self.checkpoints.load(self.state.checkpoint))

    async def round_base_from_lead(self, plan: RoundPlan) -> str:
        """The checkpoint the lead sent this round's miners to train from (each contribution must
        name it). A validator whose head already includes the rounds merged into it needs nothing
        more; one behind the lead (joining, or back from a restart) syncs its head to it, unless an
        unbacked checkpoint conflicts with one held for the same or a later round
        (`lead_election.conflicting_checkpoint`): then the round is skipped rather than let any
        permitted validator swap the model."""
        lead, index = plan.lead, plan.window.index

        def behind(info: CheckpointInfo) -> bool:
            return info.round_index > self.state.checkpoint_round and not self.checkpoints.has(info.sha256)

        try:
            info, state = await self.fetch_checkpoint(lead.url, index, behind)
        except (CheckpointFetchError, httpx.HTTPError) as exc:
            raise RoundSkipped(f"the lead's checkpoint is unavailable ({str(exc) or type(exc).__name__}); "
                               "the miners' updates cannot be scored against another base") from exc
        if info.round_index <= self.state.checkpoint_round or info.sha256 == self.state.checkpoint:
            return info.sha256  # an earlier checkpoint of the line this head continues
        backed, detail = await self.lead_records.backs_checkpoint(lead, info.round_index, info.sha256)
        conflict = conflicting_checkpoint(info.round_index, info.sha256, self.state.checkpoint_round,
                                          self.state.checkpoint, backed)
        if conflict:
            raise RoundSkipped(f"not adopting the lead's checkpoint: {conflict} ({detail})")
        self.adopt_checkpoint(info.sha256, info.round_index, state if state is not None else self.held_state(info.sha256))
        (logger.info if backed else logger.warning)("synced checkpoint {} from the lead: {}", info.sha256[:12], detail)
        return info.sha256

    async def choose_lead(self, graph: MetagraphView, round_index: int) -> Lead:
        me = Lead(self.chain.hotkey, self.base_url, is_me=True)
        choice = self.config.validator.lead
        if choice == "self":
            return me
        candidates = candidates_of(graph, me.hotkey, me.url)
        if choice != "auto":  # pinned by the operator: no election, no failover
            pinned = next((c for c in candidates if c.hotkey == choice), None)
            return me if pinned is None or pinned.hotkey == me.hotkey else Lead(pinned.hotkey, pinned.url, False)
        my_round = min(self.state.checkpoint_round, round_index - 1)  # a state from another chain's clock
        announced = await announced_rounds(candidates, me.hotkey, my_round, self.config.validator.lead_probe_timeout)
        election = elect(candidates, announced, round_index)
        waiting_for = starting_peer_to_wait_for(election, candidates, me.hotkey) if self.rounds_started <= 1 else None
        if waiting_for is not None:
            logger.info("round {}: {} does not answer yet; following it for this first round", round_index,
                        waiting_for.hotkey[:10])
            return Lead(waiting_for.hotkey, waiting_for.url, is_me=False)
        if election.passed_over:
            logger.warning("round {}: {} leads (checkpoint of round {}); passed over: {}", round_index,
                           "this validator" if election.lead.hotkey == me.hotkey else election.lead.hotkey[:10],
                           election.freshest_round,
                           "; ".join(f"{hk[:10]} {why}" for hk, why in election.passed_over.items()))
        if election.lead.hotkey == me.hotkey:
            return me
        return Lead(election.lead.hotkey, election.lead.url, is_me=False)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Rounds on the chain's clock. A round opens at its seed block, just before it starts
        (plan, work orders), collects commitments until its deadline, and is settled (its bytes
        fetched, scored, merged) after the round before it. With `--round.overlap` (the default)
        the next round opens meanwhile: miners never wait for scoring, and a round's merge reaches
        the model one round later. Without it, each round is settled before the next opens."""
        self.ensure_checkpoint()
        if self.record_to_commit:  # a round settled just before a crash, not yet committed
            if await self.chain.commit_hash(self.record_to_commit, note="recommit after restart"):
                clear_commit_mark(self.state_dir)
            self.record_to_commit = None
        self.state.save(self.state_path)
        settled = 0
        attempted = max(self.state.last_round, self.state.last_opened)
        last = self.settlement_to_resume()  # the previous round's settlement: the next waits for it
        in_flight = [last] if last is not None else []
        resumed = await self.round_to_resume()
        while not stop.is_set():
            settled += sum([await completed(task) for task in in_flight if task.done()])
            in_flight = [task for task in in_flight if not task.done()]
            if self.rounds.max_rounds and settled + len(in_flight) >= self.rounds.max_rounds:
                if in_flight:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                logger.info("reached --round.max_rounds {}; serving one more round for the other validators "
                            "to check this one", self.rounds.max_rounds)
                # The followers' check of the last round still needs its record.
                await self.serve_until(await self.chain.block() + self.rounds.round_blocks, stop)
                break
            plan, resumed, prepared = resumed, None, None
            if plan is not None:
                window = plan.window
            else:
                try:
                    window = await self.next_window(attempted)
                    if await self.chain.block() < window.seed_block:
                        prepared = await self.prepare_round(window)
                    await self.chain.wait_for_block(window.seed_block)
                except Exception as exc:  # the chain briefly unreachable: wait and try again
                    logger.warning("chain unreachable ({}); retrying in 5 s", exc)
                    await asyncio.sleep(5.0)
                    continue
            attempted = window.index
            last = asyncio.ensure_future(self.round_in_order(window, plan, prepared, last))
            in_flight.append(last)
            if not self.rounds.overlap:
                await asyncio.wait([last])
        for task in in_flight:
            task.cancel()

    async def round_in_order(self, window: RoundWindow, plan: RoundPlan | None, prepared: PreparedRound | None,
                             previous: asyncio.Future | None) -> Settlement | None:
        """Open the round, then settle it once the round before it is settled (merges apply to the
        head in round order)."""
        opened = await self.open_round_guarded(window, plan, prepared)
        if previous is not None:
            await asyncio.wait([previous])
        if opened is None:
            return None
        return await self.settle_round_guarded(opened)

    @property
    def lead_join_slack(self) -> int:
        """How late a lead may open a round: miners keep three quarters of the training window."""
        return self.rounds.train_blocks // 4

    @property
    def follower_join_slack(self) -> int:
        """How late a follower may join a round: it only has to ask for the commitments (already
        made ones come at once) before the deadline."""
        return max(self.lead_join_slack, self.rounds.train_blocks - FOLLOWER_JOIN_MARGIN_BLOCKS)

    async def next_window(self, attempted: int) -> RoundWindow:
        """The round to take after round `attempted`: the current one if it began at most the join
        slack ago (a lead's, or a follower's while this validator follows), else the next; rounds
        passed over are logged."""
        block = await self.chain.block()
        join_slack = self.follower_join_slack if self.following else self.lead_join_slack
        window = next_round(block, self.rounds.round_blocks, self.rounds.train_blocks, join_slack)
        if window.index <= attempted:
            window = round_at(window.end_block, self.rounds.round_blocks, self.rounds.train_blocks)
        after_attempted = round_at((attempted + 1) * self.rounds.round_blocks, self.rounds.round_blocks,
                                   self.rounds.train_blocks)
        if (self.rounds_started and window.index > after_attempted.index
                and block - after_attempted.start_block <= join_slack):
            window = after_attempted  # late, but still in time
        if self.rounds_started and window.index > attempted + 1:
            missed = ", ".join(str(r) for r in range(attempted + 1, window.index))
            logger.warning("round(s) {} skipped: this validator was busy past their start "
                           "(block {}; rounds are {} blocks)", missed, block, self.rounds.round_blocks)
        return window

    async def open_round_guarded(self, window: RoundWindow, plan: RoundPlan | None = None,
                                 prepared: PreparedRound | None = None) -> OpenedRound | None:
        """Open one round (None when it was skipped or broke: logged); the next starts on time."""
        try:
            opened = await self.open_round(window, plan, prepared)
        except Exception as exc:
            logger.exception("round {} failed: {}", window.index, exc)
            return None
        if isinstance(opened, Settlement):
            logger.warning("round {} skipped: {}", window.index, opened.skipped)
            return None
        return opened

    async def settle_round_guarded(self, opened: OpenedRound) -> Settlement | None:
        """Settle one round; a broken settlement is logged (None) and the rounds go on."""
        index = opened.plan.window.index
        try:
            settlement = await self.settle_round(opened)
        except Exception as exc:
            logger.exception("round {} failed: {}", index, exc)
            settlement = None
        if settlement is not None and settlement.skipped:
            logger.warning("round {} skipped: {}", index, settlement.skipped)
        if self.state.settling_round and OpenedRound.from_json(self.state.settling_round).plan.window.index == index:
            self.state.settling_round = ""  # settled, skipped or broken: not to be settled again after a restart
            self.state.save(self.state_path)
        return settlement

    async def open_round(self, window: RoundWindow, plan: RoundPlan | None = None,
                         prepared: PreparedRound | None = None) -> OpenedRound | Settlement:
        """Plan the round (or take the `plan` of a resumed one), send the work (the lead) and
        collect the commitments until the deadline; a Settlement only when it is skipped."""
        clock = Stopwatch()
        self.rounds_started += 1
        if plan is None:
            async with self.head_lock:  # the base is a head whose record is published
                plan = await self.plan_round(window, prepared)
                self.following = not plan.lead.is_me
                if late := await self.too_late_to_join(plan):
                    return Settlement.skip(self.state.checkpoint, late)
                self.state.open_round = plan.to_json()
                if plan.lead.is_me:
                    self.remember_round_base(window.index)
                self.state.save(self.state_path)
        if plan.lead.is_me:
            await self.send_work(plan)
        clock.lap("plan")
        commitments = await collect_commitments(self.miners, plan.netuid, window.index, plan.miners,
                                                plan.deadline_unix, self.chain.wait_for_block(window.deadline_block))
        clock.lap("commitments")
        opened = OpenedRound(plan, commitments, clock)
        # Handed to settlement: a restart from here on settles it from the saved commitments.
        self.state.open_round, self.state.settling_round = "", opened.to_json()
        self.state.last_opened = window.index
        self.state.save(self.state_path)
        return opened

    async def settle_round(self, opened: OpenedRound) -> Settlement:
        """Fetch the committed bytes from the eval block on, score them against the round's base,
        and settle: the lead merges and steps from its head, a follower checks the lead's record."""
        plan, commitments, clock = opened.plan, opened.commitments, opened.clock
        window = plan.window
        if not plan.lead.is_me:  # by the deadline the lead has served the checkpoint miners started from
            try:
                plan = dataclasses.replace(plan, base_checkpoint=await self.round_base_from_lead(plan))
            except RoundSkipped as exc:
                return Settlement.skip(self.state.checkpoint, str(exc))
        await self.chain.wait_for_block(window.eval_block)  # miners give their bytes out from here on
        clock.lap("to eval block")
        revealed = await fetch_revealed(self.miners, plan.miners, commitments, await self.reveal_deadline(window))
        clock.lap("reveal")
        received = received_from(window.index, plan.miners, plan.assignments, plan.units, commitments, revealed)
        # Scored where the merge lands: the head, the round's base moved by the rounds settled since
        # (with overlap, the round before), so a score is the update's gain on the model it changes.
        head = self.state.checkpoint
        head_state = self.held_state(head)
        if head_state is None:
            return Settlement.skip(head, f"the head checkpoint {head[:12]} is not held here (intact)")
        load_model_state(self.model, head_state)
        ctx = await self.round_context(plan)
        reports, accepted = await self.score(ctx, received, head_state, plan)
        clock.lap("scoring")
        if plan.lead.is_me:
            settlement = await asyncio.to_thread(settle_as_lead, plan, head, head_state, accepted, reports,
                                                 self.workload.architecture, self.workload.vocab_size,
                                                 state_loss(self.model, self.round_heldout(ctx)))
        else:
            settlement = settle_as_follower(plan, head, await self.check_lead(plan, received))
        clock.lap("aggregation" if plan.lead.is_me else "lead check")
        record = await self.settle(plan, received, reports, settlement)
        clock.lap("settle")
        weights_set = await self.maybe_set_weights(plan.uids)
        self.state.save(self.state_path)
        clock.lap("weights")
        self.report_round(window, reports, record, weights_set, clock, settlement.lead_check)
        return settlement

    def settlement_to_resume(self) -> asyncio.Future | None:
        """The round handed to settlement before a restart and not settled: settled now (its
        commitments were saved; the miners keep their bytes)."""
        if not self.state.settling_round:
            return None
        try:
            opened = OpenedRound.from_json(self.state.settling_round)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("the round being settled before the restart is unreadable ({}); it is lost", exc)
            self.state.settling_round = ""
            return None
        if opened.plan.window.index <= self.state.last_round:
            self.state.settling_round = ""
            return None
        logger.info("round {}: settling the round whose commitments were collected before the restart",
                    opened.plan.window.index)
        return asyncio.ensure_future(self.settle_round_guarded(opened))

    async def round_to_resume(self) -> RoundPlan | None:
        """The round this validator had opened before a restart, while its commitments can still be
        collected (the miners kept working on it): the same plan, so the same work orders."""
        if not self.state.open_round:
            return None
        try:
            plan = RoundPlan.from_json(self.state.open_round)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("the open round's plan is unreadable ({}); starting with the next round", exc)
            return None
        try:
            block = await self.chain.block()
        except Exception as exc:
            logger.warning("cannot read the chain to resume round {} ({}); starting with the next round",
                           plan.window.index, exc)
            return None
        if plan.window.index <= self.state.last_round or not self.checkpoints.has(plan.base_checkpoint):
            return None
        if block >= plan.window.deadline_block:
            logger.warning("round {} was open before the restart, but its deadline (block {}) has passed: "
                           "it is lost", plan.window.index, plan.window.deadline_block)
            return None
        logger.info("round {}: resuming the round opened before the restart (block {}, deadline {})",
                    plan.window.index, block, plan.window.deadline_block)
        return plan

    async def serve_until(self, block: int, stop: asyncio.Event) -> None:
        """Keep the process (and its HTTP server) up until `block` or a stop signal."""
        waiting = asyncio.ensure_future(self.chain.wait_for_block(block))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiting, stopping):
            task.cancel()

    async def run_round(self, window: RoundWindow, plan: RoundPlan | None = None) -> Settlement:
        """One round from its plan to its settlement, without overlap (tests, and the rounds of
        `--round.overlap false`)."""
        opened = await self.open_round(window, plan)
        if isinstance(opened, Settlement):
            return opened
        return await self.settle_round_guarded(opened)

    async def prepare_round(self, window: RoundWindow) -> PreparedRound:
        """What a round's plan needs before its start block: the metagraph, the lead, the miners
        and their units (done while the previous round still trains, so the work goes out the
        moment the start block's hash is known)."""
        graph = await self.chain.metagraph()
        lead = await self.choose_lead(graph, window.index)
        miners = [MinerEndpoint(n.uid, n.hotkey, f"http://{n.axon}") for n in graph.neurons
                  if n.axon and n.hotkey != self.chain.hotkey]
        units = await self.units_for(miners, window.index)
        return PreparedRound(window, graph, lead, [m for m in miners if m.hotkey in units], units)

    async def plan_round(self, window: RoundWindow, prepared: PreparedRound | None = None) -> RoundPlan:
        if prepared is None or prepared.window != window:
            prepared = await self.prepare_round(window)
        graph, lead, miners, units = prepared.graph, prepared.lead, prepared.miners, prepared.units
        seed = round_seed(await self.chain.block_hash(window.seed_block), window.index)
        assignments = {m.hotkey: assigned_pages(seed, m.hotkey, self.workload.pages.train_ids,
                                                self.recipe.pages_per_miner) for m in miners}
        deadline_unix = time.time() + (window.deadline_block - await self.chain.block()) * await self.chain.block_time()
        return RoundPlan(netuid=self.config.netuid, window=window, seed=seed, lead=lead,
                         base_checkpoint=self.state.checkpoint, recipe=self.recipe, miners=miners, units=units,
                         assignments=assignments,
                         coldkeys={n.hotkey: n.coldkey for n in graph.neurons if n.hotkey in units},
                         deadline_unix=deadline_unix)

    async def too_late_to_join(self, plan: RoundPlan) -> str:
        """Why this validator must sit the planned round out ("" if it can take part)."""
        late = await self.chain.block() - plan.window.start_block
        if plan.lead.is_me and late > self.lead_join_slack:
            return (f"too late to lead it ({late} blocks in; miners would lose more than a quarter of the "
                    "training window)")
        if time.time() > plan.deadline_unix - 1.0:
            return "joined too late to ask the miners for their commitments before the deadline"
        return ""

    def settle_by(self, window: RoundWindow) -> int:
        """The block by which the round should be settled: its end, or with overlap the next
        round's end (the next round trains while this one is scored)."""
        return window.end_block + (self.rounds.round_blocks if self.rounds.overlap else 0)

    async def reveal_deadline(self, window: RoundWindow) -> float:
        """Until when the committed bytes may be fetched: half of the time left to settle the round
        (the rest is for scoring and settling), and never less than REVEAL_FLOOR_SECONDS."""
        left = (self.settle_by(window) - await self.chain.block()) * await self.chain.block_time()
        return time.time() + max(REVEAL_FLOOR_SECONDS, left / 2)

    async def round_context(self, plan: RoundPlan) -> RoundContext:
        """The round as scoring sees it, with the evaluation seed of its eval block's hash."""
        return RoundContext(plan.netuid, plan.window.index, plan.base_checkpoint,
                            eval_seed(await self.chain.block_hash(plan.window.eval_block)))

    def round_heldout(self, ctx: RoundContext):
        """The round's held-out pages (drawn with the eval seed from the held-out split), on which
        the lead measures the outer step's size; contributions are scored on `score_pages`."""
        pages = self.workload.pages
        return pages.pages(heldout_pages(ctx.eval_seed, pages.heldout_ids, self.rounds.heldout_pages))

    async def score(self, ctx: RoundContext, received: list[Received], base_state: dict[str, torch.Tensor],
                    plan: RoundPlan) -> tuple[dict[str, ScoreReport], dict]:
        """Each update at the share it is expected to have in the merge: the outer lr of the step
        that made the head (the lead measures it each round and it moves slowly), over its peers."""
        outer_lr = min(plan.recipe.outer_lr, self.state.head_outer_lr or plan.recipe.outer_lr)
        return await asyncio.to_thread(
            score_contributions, self.model, base_state, received, ctx, self.workload.pages,
            plan.recipe.compression, self.scoring, self.rounds.heldout_pages, self.rounds.control_pages,
            outer_lr, plan.coldkeys, full_work_tokens(plan.recipe, self.workload.pages.page_len))

    async def check_lead(self, plan: RoundPlan, received: list[Received]) -> LeadCheck:
        """Replay the lead's committed record of this round on the bytes received here, onto the
        checkpoint the record says the round was applied to."""
        window = plan.window
        bodies = {r.hotkey: r.body for r in received if r.body is not None}
        seconds = (self.settle_by(window) - await self.chain.block()) * await self.chain.block_time()
        published, problem = await self.lead_records.wait_for(plan.lead, window.index, max(5.0, seconds))
        if published is None:
            check = LeadCheck("unverifiable", problem)
        else:
            if published.record.digest() in published.committed:
                await self.hold_applied_checkpoint(plan.lead, published.record)
            check = await asyncio.to_thread(
                check_lead_round, published.record, published.committed, window.index, plan.base_checkpoint,
                self.held_state, bodies, self.workload.architecture, self.workload.vocab_size, plan.recipe)
        if check.verified:
            logger.info("round {}: the lead's checkpoint is verified ({})", window.index, check.detail)
        elif check.status == "mismatch":
            logger.error("round {}: the lead's checkpoint does NOT follow from its record: {}", window.index,
                         check.detail)
        else:
            logger.warning("round {}: could not check the lead's round: {}", window.index, check.detail)
        return check

    async def hold_applied_checkpoint(self, lead: Lead, record: RoundRecord) -> None:
        """A validator that synced to the lead a round late (back from a restart: the lead's head
        moved on meanwhile) lacks the checkpoint the lead's next round was applied to. The committed
        record names it by hash, so it is fetched from the lead and checked against that hash."""
        digest = record.applied_checkpoint
        if not digest or self.checkpoints.has(digest):
            return
        size = self.workload.checkpoint_size_bound
        try:
            state = await download_checkpoint(f"{lead.url}/v1/checkpoint/{digest}", digest,
                                              timeout=10.0 + size / MIN_TRANSFER_BYTES_PER_S, max_bytes=size)
        except (CheckpointFetchError, httpx.HTTPError) as exc:
            logger.warning("round {}: the checkpoint the lead's round was applied to is unavailable: {}",
                           record.round_index, exc)
            return
        self.checkpoints.save(state)
        logger.info("round {}: fetched {} from the lead, the checkpoint its committed record was applied to",
                    record.round_index, digest[:12])

    async def settle(self, plan: RoundPlan, received: list[Received], reports: dict[str, ScoreReport],
                     settlement: Settlement) -> RoundRecord:
        """Apply the round's settlement: model, checkpoint, scores, held-out curve, the record
        (appended, served, and committed on chain by the lead) and the archive of merged bytes."""
        index = plan.window.index
        if settlement.new_state is not None:
            self.checkpoints.save(settlement.new_state)
            load_model_state(self.model, settlement.new_state)
        else:
            self.load_head()  # the model held the head for scoring; a check may have swapped it
        loss_after = await asyncio.to_thread(self.global_loss)
        loss_before = self.state.heldout_history[-1]["heldout_loss"] if self.state.heldout_history else None
        record = round_record(plan, received, reports, settlement, loss_before, loss_after)
        bodies = {r.hotkey: r.body for r in received if r.body is not None}
        self.archive(index, {hk: bodies[hk] for hk in record.accepted})
        # A round opened meanwhile sees the head before or after this, never a head without its record.
        async with self.head_lock:
            if settlement.folds_round:
                self.state.checkpoint, self.state.checkpoint_round = settlement.new_checkpoint, index
                if settlement.new_state is not None:
                    self.state.head_outer_lr = (settlement.recipe or plan.recipe).outer_lr
            self.scores.update({hk: r.pay for hk, r in reports.items()}, plan.uids,  # weights follow pay
                               unrecorded={hk for hk, r in reports.items() if not r.committed})
            self.state.heldout_history.append({"round": index, "heldout_loss": loss_after})
            self.state.last_round = index
            self.state.settling_round = ""
            self.state.scores_json = self.scores.to_json()
            # Settled on disk before anyone sees the record: a crash from here on never drops the round.
            self.state.pending_record, self.state.pending_commit = record.canonical_json(), plan.lead.is_me
            if plan.lead.is_me:
                mark_commit(self.state_dir, record.digest())
            self.state.save(self.state_path)
            digest = append_record(self.state_dir / "rounds.jsonl", record)
            self.lead_records.publish(record)
        if plan.lead.is_me:
            if await self.chain.commit_hash(digest, note=f"r{index} ckpt {self.state.checkpoint[:16]}"):
                clear_commit_mark(self.state_dir)
        self.state.pending_record, self.state.pending_commit = "", False
        return record

    async def units_for(self, miners: list[MinerEndpoint], round_index: int) -> dict[str, UnitOfWork]:
        """Each miner's unit of work from its declared capacity (asked once, then cached). An axon
        that has never answered /v1/info (another validator, a miner not up yet) gets no work."""
        unknown = [m for m in miners if m.hotkey not in self.capacities]
        for miner, info in zip(unknown, await asyncio.gather(*(self.miners.info(m) for m in unknown))):
            if info is not None:
                self.capacities[miner.hotkey] = info.capacity_gb
        required = full_training_gb(self.workload.architecture, self.workload.vocab_size, self.recipe.batch_size,
                                    self.workload.pages.page_len)
        units, refused = units_by_capacity({m.hotkey: self.capacities[m.hotkey] for m in miners
                                            if m.hotkey in self.capacities}, required, round_index,
                                           self.workload.max_shards, self.workload.shard_refusal)
        for hotkey, why in refused.items():
            logger.info("round {}: no work for {}: it {}", round_index, hotkey[:10], why)
        return units

    async def send_work(self, plan: RoundPlan) -> None:
        window = plan.window

        def order(miner: MinerEndpoint) -> TrainRequest:
            return TrainRequest(
                netuid=plan.netuid, round_index=window.index, round_block=window.start_block, seed=plan.seed.hex(),
                base_checkpoint=plan.base_checkpoint, dataset=self.workload.dataset_id,
                model_preset=self.workload.preset_name,
                checkpoint_url=f"{plan.lead.url}/v1/checkpoint/{plan.base_checkpoint}",
                base_round=self.state.round_bases.get(str(window.index), [None, -1])[1],
                unit=plan.units[miner.hotkey],
                pages=plan.assignments[miner.hotkey], recipe=plan.recipe, deadline_block=window.deadline_block,
                deadline_unix=plan.deadline_unix)

        replies = await asyncio.gather(*(self.miners.send_work(m, order(m)) for m in plan.miners))
        logger.info("round {}: leading from checkpoint {} (round {}); {}/{} miners took the work", window.index,
                    plan.base_checkpoint[:12], self.state.checkpoint_round,
                    sum(r.status == "ok" for r in replies), len(plan.miners))
        for miner, reply in zip(plan.miners, replies):
            if reply.status != "ok":
                logger.warning("round {}: uid {} did not take the work: {} {}", window.index, miner.uid,
                               reply.status, reply.detail)

    def archive(self, round_index: int, bodies: dict[str, bytes], keep_rounds: int = 32) -> None:
        """Keep the merged contributions so anyone can replay the round (template.audit.replay)."""
        folder = archive_dir(self.state_dir, round_index)
        folder.mkdir(parents=True, exist_ok=True)
        for hotkey, body in bodies.items():
            (folder / f"{hotkey}.safetensors").write_bytes(body)
        rounds = sorted(folder.parent.glob("round-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in rounds[:-keep_rounds]:
            shutil.rmtree(old, ignore_errors=True)

    async def maybe_set_weights(self, uids: dict[str, int]) -> bool:
        block = await self.chain.block()
        if block - self.state.last_weights_block < await self.chain.weights_rate_limit():
            return False
        weights = self.scores.weights(uids)
        if not weights:
            return False
        if self.config.neuron.disable_set_weights:
            self.last_weights = WeightsSet(block, weights, WEIGHTS_VERSION_KEY, submitted=False)
            return False
        if await self.chain.set_weights(weights, WEIGHTS_VERSION_KEY):
            self.state.last_weights_block = block
            self.last_weights = WeightsSet(block, weights, WEIGHTS_VERSION_KEY)
            return True
        return False

    def report_round(self, window: RoundWindow, reports: dict, record: RoundRecord, weights_set: bool,
                     clock: Stopwatch, lead_check: LeadCheck | None = None) -> None:
        accepted = [r for r in reports.values() if r.accepted]
        seconds = clock.total
        logger.info("round {} | held-out loss {:.4f} | accepted {}/{} | weights {} | {:.1f}s ({})", window.index,
                    record.heldout_loss_after, len(accepted), len(reports), "set" if weights_set else "kept", seconds,
                    clock.summary())
        for report in reports.values():
            logger.info("  uid {:>3} score {:.4f} pay {:.4f} ema {:.4f} record {:+.2f} {}", report.uid, report.score,
                        report.pay, self.scores.ema(report.hotkey), self.scores.record(report.hotkey), report.reason)
            logger.debug("  uid {} details {}", report.uid, json.dumps(report.to_dict()))
        with (self.state_dir / "scores.jsonl").open("a") as handle:
            handle.write(json.dumps({"round": window.index,
                                     "reports": {hk: r.to_dict() for hk, r in reports.items()}}) + "\n")
        weights, self.last_weights = self.last_weights, None
        if weights is not None:
            logger.info(weights_line(weights))
        chain_read = getattr(self.chain, "last_read", None)
        metrics = {"round": window.index, "heldout_loss": record.heldout_loss_after, "accepted": len(accepted),
                   "contributions": len(reports), "round_seconds": seconds,
                   "chain_block": chain_read.block if chain_read else window.end_block}
        metrics.update({f"round_seconds/{name}": value for name, value in clock.phases.items()})
        metrics["leading"] = int(lead_check is None)
        if lead_check is not None:
            metrics["lead_verified"] = int(lead_check.verified)
        metrics.update(report_metrics(reports))
        metrics.update({f"ema/uid{r.uid}": self.scores.ema(r.hotkey) for r in reports.values()})
        metrics.update(weights_metrics(weights))
        self.run.log(metrics, step=window.index)
        if self.metrics is not None:
            self.metrics.observe_round(window.index, reports, record.heldout_loss_after, clock.phases, seconds,
                                       self.scores.ema, None if lead_check is None else lead_check.verified)
            if weights is not None:
                self.metrics.observe_weights(weights)


async def run_validator(config: Config) -> None:
    state_dir = claim_folder(neuron_folder(config, "validator"), config.netuid, "validator")
    setup_logging(f"validator:{config.wallet.hotkey}", log_level(config.logging), state_dir / "logs")
    wallet = bt.Wallet(name=config.wallet.name, hotkey=config.wallet.hotkey, path=str(expand(config.wallet.path)))
    chain = await NeuronChain(config.subtensor.network, config.subtensor.chain_endpoint, wallet,
                              config.netuid).connect()
    uid = await chain.ensure_registered(config.neuron.register or config.subtensor.network == "sim",
                                        config.neuron.max_burn_tao)
    workload = build_workload(config)
    run = open_neuron_run(config, "validator", uid, state_dir)
    monitoring = Monitoring("validator", lambda: chain.last_read, config.neuron.health_chain_stale_s, versions())
    validator = Validator(config, chain, workload, state_dir, run, monitoring=monitoring)
    app = create_checkpoint_app(validator.checkpoint_dir, validator.latest_info, validator.lead_records.served,
                                validator.round_base_info, lambda index: archive_dir(validator.state_dir, index))
    server = BackgroundServer(install_monitoring(app, monitoring), config.axon.ip, config.axon.port).start()
    port = config.axon.external_port or config.axon.port
    address = published_ip(config.axon.ip, config.axon.external_ip)
    validator.base_url = f"http://{address}:{port}"
    await chain.serve_axon(address, port)
    logger.info("validator uid {} serving checkpoints at {} (health: /health, metrics: /metrics)", uid,
                validator.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(validator.run_forever(stop))
    stopper = asyncio.create_task(stop.wait())
    reader = asyncio.create_task(chain.keep_reading())  # /health's chain figures, also while scoring
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failure = runner.exception() if runner.done() and not runner.cancelled() else None
    runner.cancel()
    stopper.cancel()
    reader.cancel()
    validator.state.save(validator.state_path)
    await validator.miners.close()
    server.stop()
    run.finish()
    await chain.close()
    if failure is not None:
        logger.opt(exception=failure).error("validator cannot go on: {}", failure)
        raise SystemExit(1)
    logger.info("validator stopped")
