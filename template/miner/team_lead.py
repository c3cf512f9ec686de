"""A miner launched by torchrun (`torchrun --nproc_per_node N -m neurons.miner ...`): one hotkey
per host. The first process is the miner (chain, HTTP server, outbox, error feedback); it sends
each whole-model unit of work to the others, and all of them train it together
(`template.training.team`). The others only follow: they never touch the network."""
from __future__ import annotations

import os
import signal
import time

import torch
from loguru import logger

from protocol.messages import TrainRequest
from template.training.inner_loop import InnerStats
from template.training.memory import full_training_gb
from template.training.model import configure_torch_threads
from template.training.team import ENGINES, Team, TeamJob, TeamTrainer
from template.training.workload import Workload

IDLE_HEARTBEAT_SECONDS = 60.0  # the followers' wait for an order must not reach the group timeout
IDLE = "idle"


def choose_engine(setting: str, workload: Workload, team: Team, capacity_gb: float) -> str:
    """`auto`: DDP when one device holds full-model training of its share of the batch, else FSDP2."""
    if setting in ENGINES:
        return setting
    share = max(1, workload.recipe.batch_size // team.world)
    need = full_training_gb(workload.architecture, workload.vocab_size, share, workload.pages.page_len)
    return "ddp" if need <= capacity_gb else "fsdp"


def team_capacity_gb(engine: str, team: Team, device_gb: float) -> float:
    """What the team can spend on training: FSDP2 spreads the model over the host's GPUs."""
    return device_gb * team.world if engine == "fsdp" and team.device.type == "cuda" else device_gb


class TeamLead:
    """The first process's handle on its team; only the worker thread uses it."""

    def __init__(self, team: Team, engine: str):
        self.team, self.engine = team, engine
        self.trainer = TeamTrainer(team)
        self.last_message = time.monotonic()

    def refusal(self, order: TrainRequest) -> str | None:
        """Why this team cannot train `order` (None: it can)."""
        if order.unit.kind != "full":
            return "a torchrun miner trains whole models only (its devices together hold the model)"
        if order.recipe.batch_size < self.team.world:
            return f"a batch of {order.recipe.batch_size} cannot be shared by {self.team.world} processes"
        return None

    def train(self, order: TrainRequest, workload: Workload, base: dict[str, torch.Tensor], seed: int,
              deadline: float, should_stop) -> tuple[dict[str, torch.Tensor], InnerStats]:
        problem = self.refusal(order)
        if problem:
            raise RuntimeError(problem)
        job = TeamJob(workload.architecture, workload.vocab_size, workload.pages.pages(order.pages), order.recipe,
                      seed, deadline, order.unit.label, self.engine)
        self._send(job)
        try:
            return self.trainer.run(job, base, should_stop)
        except Exception:
            # The others may be waiting inside a collective this process will never join: end the
            # process, so torchrun takes the whole team down (and restarts it with --max-restarts).
            logger.exception("team: training failed on the first process; ending the team")
            os._exit(1)

    def idle(self) -> None:
        if time.monotonic() - self.last_message > IDLE_HEARTBEAT_SECONDS:
            self._send(IDLE)

    def finish(self) -> None:
        try:
            self._send(None)
        except Exception as exc:  # the others may be gone already (torchrun stops them too)
            logger.debug("team: stop message not delivered: {}", exc)

    def _send(self, message: object) -> None:
        self.team.send(message)
        self.last_message = time.monotonic()


def follow_orders(team: Team, torch_threads: int = 1) -> None:
    """A follower's life: train each unit the first process sends, until it says stop."""
    configure_torch_threads(torch_threads)
    for sig in (signal.SIGINT, signal.SIGTERM):  # torchrun signals every process; process 0 ends the unit first
        signal.signal(sig, lambda *_: logger.info("team: process {} stops when process 0 says so", team.rank))
    trainer = TeamTrainer(team)
    logger.info("team: process {} of {} on {}, following process 0", team.rank, team.world, team.device)
    while True:
        message = team.receive()
        if message is None:
            logger.info("team: process {} stops", team.rank)
            return
        if isinstance(message, TeamJob):
            _, stats = trainer.run(message, None)
            logger.info("team: process {} trained {} steps", team.rank, stats.steps)
