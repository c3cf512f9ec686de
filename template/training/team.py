"""One unit of work trained by every device of a host: torchrun processes with PyTorch's own
engines. DDP when the model fits one device (each process holds it whole and gradients are
averaged), FSDP2 (`fully_shard`) when it does not (parameters, gradients and AdamW moments are
sharded over the processes). Each step's batch is split among the processes and their losses
weighted by their share, so the update is the one-process update on the whole batch; the
pseudo-gradient is taken on the full (gathered) parameters by the first process, the only one
that talks to the network.

The default process group (NCCL on GPUs, gloo on a CPU) carries the training; a gloo group the
control messages (work orders, the stop decision of each step), so those never wait on a GPU.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from loguru import logger
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from protocol.recipe import Recipe
from template.training.inner_loop import InnerStats, train_inner
from template.training.loss import causal_lm_loss
from template.training.model import ModelPreset, autocast_context, empty_model

ENGINES = ("ddp", "fsdp")
# Followers wait for the next order on the control group; the first process sends a heartbeat
# while idle, but downloading a large checkpoint may keep it silent for a long time.
GROUP_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class TeamEnv:
    """This process's place under torchrun (RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int
    world: int
    local_rank: int

    @classmethod
    def from_environ(cls) -> TeamEnv | None:
        """None when not launched by torchrun with more than one process."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world < 2:
            return None
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


class Team:
    """The host's processes: the default group for training, a gloo group for control."""

    def __init__(self, env: TeamEnv, device_name: str = "auto", backend: str = ""):
        """`device_name`: auto (GPU LOCAL_RANK when there are GPUs, else the CPU), cpu, or one
        cuda:N for every process (several processes on one GPU need `backend` gloo: NCCL
        refuses two ranks on one device)."""
        self.env = env
        use_cuda = torch.cuda.is_available() and device_name != "cpu"
        if not use_cuda:
            self.device = torch.device("cpu")
        else:
            self.device = torch.device(device_name if device_name.startswith("cuda:") else f"cuda:{env.local_rank}")
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"), timeout=GROUP_TIMEOUT)
        self.control = dist.new_group(backend="gloo", timeout=GROUP_TIMEOUT)

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world(self) -> int:
        return self.env.world

    @property
    def is_first(self) -> bool:
        return self.env.rank == 0

    def send(self, message: object) -> None:
        """From the first process to all (an order, a heartbeat, or None: stop)."""
        dist.broadcast_object_list([message], src=0, group=self.control)

    def receive(self) -> object:
        box = [None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class TeamJob:
    """What every process needs to train the unit: the model's architecture, the unit's pages
    and the round's recipe (the base weights follow as tensors from the first process)."""

    architecture: ModelPreset
    vocab_size: int
    tokens: torch.Tensor  # int64 [pages, page_len]
    recipe: Recipe
    seed: int
    deadline: float  # time.time() seconds
    unit_label: str
    engine: str


class LanguageModelLoss(nn.Module):
    """The LM's mean next-token loss as one module: what DDP and FSDP2 wrap (their hooks then
    run around the whole forward, the chunked loss's direct use of the head included)."""

    def __init__(self, lm: nn.Module, loss_mode: str = "auto"):
        super().__init__()
        self.lm, self.loss_mode = lm, loss_mode

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with autocast_context(batch.device):
            return causal_lm_loss(self.lm, batch, self.loss_mode)


class SharedBatch:
    """`inner_loop.BatchShare` for a team: process r trains rows r of each step's batch."""

    def __init__(self, team: Team, module: nn.Module):
        self.team, self.module = team, module

    def step_loss(self, batch: torch.Tensor) -> torch.Tensor:
        rows = batch.tensor_split(self.team.world)[self.team.rank]
        if rows.shape[0] == 0:
            raise ValueError(f"a batch of {batch.shape[0]} cannot be shared by {self.team.world} processes")
        share = rows.shape[0] / batch.shape[0]
        loss = self.module(rows)
        # The engines average gradients over processes; weighting each by its share of the batch
        # makes that average the gradient of the whole batch's mean loss.
        (loss * (share * self.team.world)).backward()
        return loss.detach() * share

    def agree(self, stop: bool, late: bool, time_spent: float) -> tuple[bool, bool, float]:
        """The first process's view for all: whether to stop, and how much of the training time is
        spent (the learning rate anneals by it), so every process takes the same step."""
        shared = torch.tensor([float(stop), float(late), time_spent], dtype=torch.float64)
        dist.broadcast(shared, src=0, group=self.team.control)
        return bool(shared[0]), bool(shared[1]), float(shared[2])

    def total(self, loss: torch.Tensor) -> float:
        summed = loss.detach().float().reshape(1).clone()
        dist.all_reduce(summed)
        return float(summed)


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The repeated blocks FSDP2 shards one by one (the classes transformers marks as never to
    be split across devices)."""
    kinds = set(getattr(lm, "_no_split_modules", None) or ())
    return [m for m in lm.modules() if type(m).__name__ in kinds]


class TeamTrainer:
    """One process's side of training a unit; the wrapped model is kept between rounds (built
    again when the architecture or engine changes), and so are its AdamW moments while the unit
    stays the same (in memory: a restarted team starts them from zero)."""

    def __init__(self, team: Team):
        self.team = team
        self.key: tuple | None = None
        self.lm: nn.Module | None = None
        self.module: nn.Module | None = None
        self.moments: tuple[str, dict | None] = ("", None)
        self.peak_memory_gb: list[float] = []

    def run(self, job: TeamJob, base: dict[str, torch.Tensor] | None, should_stop=None
            ) -> tuple[dict[str, torch.Tensor] | None, InnerStats]:
        """Train the job's unit from `base` (given on the first process only); the first process
        gets the pseudo-gradient base - trained of every parameter (fp32, CPU), the others None."""
        self._prepare(job)
        self._load(base)
        label, kept = self.moments
        self.moments = ("", None)
        stats = train_inner(self.module, job.tokens, job.recipe, seed=job.seed,
                            deadline=job.deadline if self.team.is_first else None,
                            optimizer_state=kept if label == job.unit_label else None,
                            should_stop=should_stop if self.team.is_first else None,
                            share=SharedBatch(self.team, self.module))
        self.moments = (job.unit_label, stats.optimizer_state)
        delta = self._delta(base)
        self.peak_memory_gb = self._peak_memory_gb()
        return delta, stats

    def _peak_memory_gb(self) -> list[float]:
        """Each process's peak memory this far (its GPU's allocations, or on a CPU its resident
        memory), as the first process sees them."""
        if self.team.device.type == "cuda":
            mine = torch.cuda.max_memory_allocated(self.team.device) / 2**30
        else:
            mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peaks: list = [None] * self.team.world
        dist.all_gather_object(peaks, round(mine, 3), group=self.team.control)
        return peaks

    def _prepare(self, job: TeamJob) -> None:
        key = (job.architecture, job.vocab_size, job.engine)
        if key == self.key:
            return
        if job.engine not in ENGINES:
            raise ValueError(f"unknown engine {job.engine!r}; expected one of {ENGINES}")
        self.key, self.lm, self.module, self.moments = None, None, None, ("", None)
        lm = empty_model(job.architecture, job.vocab_size)
        lm.train()
        wrapped = LanguageModelLoss(lm)
        if job.engine == "ddp":
            wrapped = DistributedDataParallel(wrapped.to(self.team.device),
                                              device_ids=[self.team.device.index] if self.team.device.type == "cuda"
                                              else None)
        else:
            mesh = init_device_mesh(self.team.device.type, (self.team.world,))
            for layer in decoder_layers(lm):
                fully_shard(layer, mesh=mesh)
            fully_shard(wrapped, mesh=mesh)  # the rest (embeddings, final norm, head) as one group
        self.key, self.lm, self.module = key, lm, wrapped
        logger.info("team: {} on {} processes ({}), {} parameters", job.engine, self.team.world, self.team.device.type,
                    sum(p.numel() for p in lm.parameters()))

    @torch.no_grad()
    def _load(self, base: dict[str, torch.Tensor] | None) -> None:
        """Every process's parameters (or its shard of them) set to the first process's base."""
        for name, p in self.lm.named_parameters():
            full = (base[name].to(self.team.device, p.dtype) if self.team.is_first
                    else torch.empty(p.shape, dtype=p.dtype, device=self.team.device))
            dist.broadcast(full, src=0)
            if isinstance(p, DTensor):
                p.to_local().copy_(distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local())
            else:
                p.copy_(full)

    @torch.no_grad()
    def _delta(self, base: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        """base - trained on the full parameters, gathered one tensor at a time."""
        delta = {} if self.team.is_first else None
        for name, p in self.lm.named_parameters():
            full = p.full_tensor() if isinstance(p, DTensor) else p.detach()
            if delta is not None:
                delta[name] = base[name].to("cpu", torch.float32) - full.to("cpu", torch.float32)
        return delta
