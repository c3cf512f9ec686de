"""Shards: units of work smaller than the whole model, for miners whose device cannot hold it.

Two schemes, both mapped back into full-model coordinates so the validator aggregates them
next to whole-model contributions (docs/design.md, "Units of work"):

- ``layers``: a contiguous range of the units [embeddings, block 0..n-1, final norm + head],
  balanced by parameter count. The miner holds the full model, but only the range gets
  gradients and AdamW state, and autograd does no backward below the lowest trained unit.
  Kept as the baseline: it trails width shards (bench/README.md, "Collective training").
- ``width``: a real smaller Llama cut out of every block (HeteroFL / FedRolex style): a window
  of KV groups (with their query heads) and a window of FFN units per block, plus a contiguous
  slice of the vocabulary rows of the embedding and the LM head; RMSNorm weights (0.1% of the
  model) are shared by every shard. The sub-model is trained standalone: its attention and FFN
  activations, gradients and optimizer state are those of the smaller model. The kept weights
  are copied as they are (no HeteroFL ``total / kept`` scaler on the o_proj/down_proj columns),
  and the delta goes back to full coordinates unscaled, so every trained coordinate moves by
  the same AdamW steps it would take in the full model (the variants measured against this
  are in bench/README.md, "Width shards: the scaler"). Windows roll with the round (FedRolex);
  the validator spreads a round's shard miners over as many windows as keep two peers on each
  (`unit_sizing.spread_windows`).

Aggregating shard deltas: every coordinate is the mean over the contributions that trained it
(``coverage_mean``); coordinates nobody trained this round stay unchanged. Robust clipping
(median-norm) is done per unit, among contributions for the same ``ShardSpec`` (they live in the
same coordinates and have comparable norms); the coverage mean then joins the units. A unit with
fewer accepted contributions than the validator's minimum should be dropped before the join,
exactly as a whole-model unit would be (its coordinates then simply stay unchanged).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from template.training.compression import shapes_of
from template.training.model import PRESETS, ModelPreset, empty_model, load_model_state

SCHEMES = ("full", "layers", "width")


@dataclass(frozen=True)
class ShardSpec:
    """Shard `index` of `count` under `scheme`; ("full", 0, 1) is the whole model."""

    scheme: str
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown shard scheme {self.scheme!r}; choose one of {SCHEMES}")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} out of range for count {self.count}")
        if self.scheme == "full" and self.count != 1:
            raise ValueError("the full scheme has exactly one shard")

    @property
    def label(self) -> str:
        return "full" if self.scheme == "full" else f"{self.scheme}-{self.index}/{self.count}"


@dataclass(frozen=True)
class Slice:
    """Where a full tensor's trained part lives in the shard: full[rows][:, cols], as it is."""

    sub_name: str
    rows: torch.Tensor | None = None  # int64 row ids of the full tensor (None: all)
    cols: torch.Tensor | None = None  # int64 column ids (None: all)


ShardPlan = dict[str, Slice]  # full parameter name -> its slice in the shard


# ------------------------------------------------------------------------ plans (pure)


def _layer_units(preset: ModelPreset, shapes: Mapping[str, tuple[int, ...]]) -> list[list[str]]:
    """Names grouped by unit: [embeddings], block 0..n-1, [final norm (+ head)]."""
    units: list[list[str]] = [[n for n in shapes if n.startswith("model.embed_tokens.")]]
    for i in range(preset.n_layers):
        units.append([n for n in shapes if n.startswith(f"model.layers.{i}.")])
    units.append([n for n in shapes if n.startswith("model.norm.") or n.startswith("lm_head.")])
    placed = sum(len(u) for u in units)
    if placed != len(shapes):
        raise ValueError(f"layer shards know the Llama layout only: {len(shapes) - placed} parameters of "
                         f"{preset.name} are in no layer")
    return units


def _balanced_ranges(sizes: list[int], count: int) -> list[tuple[int, int]]:
    """Split sizes into `count` contiguous non-empty ranges minimising the largest sum."""
    if count > len(sizes):
        raise ValueError(f"{count} layer shards but only {len(sizes)} units")
    lo, hi = max(sizes), sum(sizes)
    while lo < hi:  # binary search the smallest feasible max-range size
        mid = (lo + hi) // 2
        groups, acc = 1, 0
        for s in sizes:
            if acc + s > mid:
                groups, acc = groups + 1, s
            else:
                acc += s
        lo, hi = (lo, mid) if groups <= count else (mid + 1, hi)
    ranges, start, acc = [], 0, 0
    for i, s in enumerate(sizes):
        units_left, groups_left = len(sizes) - i, count - len(ranges)
        if (acc + s > lo or units_left < groups_left) and i > start:
            ranges.append((start, i))
            start, acc = i, 0
        acc += s
    ranges.append((start, len(sizes)))
    return ranges


def _window(index: int, count: int, total: int) -> torch.Tensor:
    """FedRolex rolling window: round(total/count) ids from floor(index*total/count), mod total."""
    keep = max(1, min(total, round(total / count)))
    start = index * total // count
    return (torch.arange(keep) + start) % total


def shard_plan(spec: ShardSpec, preset: ModelPreset | str, vocab_size: int,
               shapes: Mapping[str, tuple[int, ...]]) -> ShardPlan:
    """Which full coordinates the shard trains and under which sub-model names (pure)."""
    if spec.scheme == "full":  # any architecture: every parameter, as it is
        return {n: Slice(n) for n in shapes}
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    if spec.scheme == "layers":
        units = _layer_units(preset, shapes)
        sizes = [sum(math.prod(shapes[n]) for n in u) for u in units]
        start, stop = _balanced_ranges(sizes, spec.count)[spec.index]
        return {n: Slice(n) for u in units[start:stop] for n in u}
    return _width_plan(spec, preset, vocab_size, shapes)


def _width_plan(spec: ShardSpec, preset: ModelPreset, vocab_size: int,
                shapes: Mapping[str, tuple[int, ...]]) -> ShardPlan:
    hd = preset.head_size
    group = preset.n_heads // preset.n_kv_heads
    kv = _window(spec.index, spec.count, preset.n_kv_heads)
    q_heads = (kv[:, None] * group + torch.arange(group)[None, :]).reshape(-1)

    def head_rows(heads: torch.Tensor) -> torch.Tensor:
        return (heads[:, None] * hd + torch.arange(hd)[None, :]).reshape(-1)

    q_rows, kv_rows = head_rows(q_heads), head_rows(kv)
    ff = _window(spec.index, spec.count, preset.d_ff)
    v0, v1 = spec.index * vocab_size // spec.count, (spec.index + 1) * vocab_size // spec.count
    vocab = torch.arange(v0, v1)
    plan: ShardPlan = {}
    for name in shapes:
        if name.startswith("model.layers."):
            leaf = name.split(".", 3)[3]  # e.g. self_attn.q_proj.weight
            if leaf in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):  # Qwen2 has q/k/v biases
                plan[name] = Slice(name, rows=q_rows)
            elif leaf in ("self_attn.k_proj.weight", "self_attn.v_proj.weight",
                          "self_attn.k_proj.bias", "self_attn.v_proj.bias"):
                plan[name] = Slice(name, rows=kv_rows)
            elif leaf == "self_attn.o_proj.weight":
                plan[name] = Slice(name, cols=q_rows)  # no total/kept scaler (module doc)
            elif leaf in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
                plan[name] = Slice(name, rows=ff)
            elif leaf == "mlp.down_proj.weight":
                plan[name] = Slice(name, cols=ff)
            elif leaf.endswith("layernorm.weight") or leaf in ("self_attn.q_norm.weight", "self_attn.k_norm.weight"):
                plan[name] = Slice(name)  # shared: every shard trains the norms (Qwen3's per-head ones too)
            else:
                raise ValueError(f"width shards do not know how to slice {name}")
        elif name == "model.embed_tokens.weight":
            plan[name] = Slice("model.embed_tokens.part", rows=vocab)
        elif name == "lm_head.weight":
            plan[name] = Slice("lm_head.part", rows=vocab)
        elif name == "model.norm.weight":
            plan[name] = Slice(name)
        else:
            raise ValueError(f"width shards do not know how to slice {name}")
    return plan


def _take(t: torch.Tensor, s: Slice) -> torch.Tensor:
    if s.rows is not None:
        t = t.index_select(0, s.rows)
    if s.cols is not None:
        t = t.index_select(1, s.cols)
    return t


def shard_mask(spec: ShardSpec, preset: ModelPreset | str, vocab_size: int,
               shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """bool tensor per full parameter: True where this shard trains the coordinate."""
    plan = shard_plan(spec, preset, vocab_size, shapes)
    masks: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        m = torch.zeros(shape, dtype=torch.bool)
        s = plan.get(name)
        if s is not None:
            sub = torch.zeros(shape, dtype=torch.bool)
            if s.rows is None and s.cols is None:
                sub[...] = True
            elif s.cols is None:
                sub[s.rows] = True
            elif s.rows is None:
                sub[:, s.cols] = True
            else:
                sub[s.rows[:, None], s.cols[None, :]] = True
            m |= sub
        masks[name] = m
    return masks


# ------------------------------------------------------------------------ the sub-model


class RowSlicedWeight(nn.Module):
    """A [V, d] matrix whose rows [v0, v1) are a trainable Parameter `part`; the rest are
    frozen buffers (no gradient, no optimizer state). Serves as embedding and/or LM head."""

    def __init__(self, full: torch.Tensor, v0: int, v1: int) -> None:
        super().__init__()
        self.register_buffer("lo", full[:v0].detach().clone(), persistent=False)
        self.part = nn.Parameter(full[v0:v1].detach().clone())
        self.register_buffer("hi", full[v1:].detach().clone(), persistent=False)

    def weight(self) -> torch.Tensor:
        return torch.cat([self.lo, self.part, self.hi])


class RowSlicedEmbedding(nn.Module):
    def __init__(self, table: RowSlicedWeight) -> None:
        super().__init__()
        self.table = table

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.table.weight())


class RowSlicedHead(nn.Module):
    def __init__(self, table: RowSlicedWeight) -> None:
        super().__init__()
        self.table = table

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.table.weight())


def sub_param_name(name: str) -> str:
    """Sub-model parameter name under the row-sliced modules."""
    return {"model.embed_tokens.part": "model.embed_tokens.table.part",
            "lm_head.part": "lm_head.table.part"}.get(name, name)


def loss_mode(spec: ShardSpec) -> str:
    """The LM loss a unit trains with (`loss.causal_lm_loss`): shards exist for devices short
    of memory, so they always take the chunked loss (no full-vocabulary logits held, same
    FLOPs); the whole model chunks only when its logits would crowd the device."""
    return "auto" if spec.scheme == "full" else "chunked"


@torch.no_grad()
def extract(full_state: Mapping[str, torch.Tensor], spec: ShardSpec, preset: ModelPreset | str,
            vocab_size: int, device: torch.device | str = "cpu"
            ) -> tuple[nn.Module, ShardPlan]:
    """The module a miner trains for `spec` and the plan mapping it back to full coordinates.

    Only the shard's parameters have requires_grad=True, so `train_inner` builds gradients and
    AdamW state for them alone. For ``width`` the module is a smaller model of the same
    architecture (fewer heads and FFN units; frozen vocabulary rows as buffers); for
    ``layers``/``full`` it is the full model with the other parameters frozen."""
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    shapes = shapes_of(full_state)
    plan = shard_plan(spec, preset, vocab_size, shapes)
    if spec.scheme in ("full", "layers"):
        model = empty_model(preset, vocab_size)
        load_model_state(model, dict(full_state))
        for name, p in model.named_parameters():
            p.requires_grad_(name in plan)
        return model.to(device), plan
    first = next(iter(s for n, s in plan.items() if n.endswith("self_attn.k_proj.weight")))
    hd = preset.head_size
    kept_kv = len(first.rows) // hd
    kept_q = kept_kv * (preset.n_heads // preset.n_kv_heads)
    kept_ff = len(next(s for n, s in plan.items() if n.endswith("mlp.up_proj.weight")).rows)
    # The full model's head size is kept (and so its rotary frequencies).
    model = empty_model(replace(preset, n_heads=kept_q, n_kv_heads=kept_kv, d_ff=kept_ff, head_dim=hd), vocab_size)
    emb = plan["model.embed_tokens.weight"]
    v0, v1 = int(emb.rows[0]), int(emb.rows[-1]) + 1
    table = RowSlicedWeight(full_state["model.embed_tokens.weight"], v0, v1)
    model.model.embed_tokens = RowSlicedEmbedding(table)
    if preset.tie_embeddings:  # the one tied table is sliced once and serves as both
        model.lm_head = RowSlicedHead(table)
    else:
        model.lm_head = RowSlicedHead(RowSlicedWeight(full_state["lm_head.weight"], v0, v1))
    params = dict(model.named_parameters())
    for name, s in plan.items():
        sub = sub_param_name(s.sub_name)
        if sub == "model.embed_tokens.table.part" or sub == "lm_head.table.part":
            continue  # already copied into RowSlicedWeight
        params[sub].copy_(_take(full_state[name], s))
    return model.to(device), plan


@torch.no_grad()
def sub_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """fp32 CPU copy of the trainable parameters (the base for `pseudo_gradient`)."""
    return {n: p.detach().to("cpu", torch.float32).clone()
            for n, p in model.named_parameters() if p.requires_grad}


def delta_to_full(sub_delta: Mapping[str, torch.Tensor], plan: ShardPlan,
                  shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Full-shape deltas for the tensors the shard touches (zeros outside its slice); tensors
    the shard does not touch are absent."""
    out: dict[str, torch.Tensor] = {}
    for name, s in plan.items():
        d = sub_delta[sub_param_name(s.sub_name)].to("cpu", torch.float32)
        if s.rows is None and s.cols is None:
            out[name] = d.clone()
            continue
        full = torch.zeros(shapes[name], dtype=torch.float32)
        if s.cols is None:
            full.index_copy_(0, s.rows, d)
        elif s.rows is None:
            full.index_copy_(1, s.cols, d)
        else:
            full[s.rows[:, None], s.cols[None, :]] = d
        out[name] = full
    return out



def shard_delta_in_full_model(sub_delta: Mapping[str, torch.Tensor], plan: ShardPlan,
                              shapes: Mapping[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A shard's pseudo-gradient as a whole-model delta: zeros wherever the shard did not train."""
    touched = delta_to_full(sub_delta, plan, shapes)
    return {name: touched.get(name, torch.zeros(shape)) for name, shape in shapes.items()}

def coverage_mean(deltas: Sequence[Mapping[str, torch.Tensor]],
                  masks: Sequence[Mapping[str, torch.Tensor]],
                  weights: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Per coordinate, the (weighted) mean over the contributions whose mask covers it (0 if none).

    `deltas[i]` holds full-shape tensors (absent = not touched); `masks[i]` the shard mask of
    contribution i; `weights[i]` its weight (None: equal). Summation is in the given order
    (replayable)."""
    names = sorted({n for d in deltas for n in d})
    out: dict[str, torch.Tensor] = {}
    for name in names:
        total: torch.Tensor | None = None
        count: torch.Tensor | None = None
        for i, (d, m) in enumerate(zip(deltas, masks)):
            if name not in d:
                continue
            mask = m[name]
            v = torch.where(mask, d[name].float(), torch.zeros((), dtype=torch.float32))
            c = mask.to(torch.float32)
            if weights is not None:
                v, c = v * weights[i], c * weights[i]
            total = v if total is None else total + v
            count = c if count is None else count + c
        assert total is not None and count is not None
        covered = count > 0
        out[name] = torch.where(covered, total / torch.where(covered, count, torch.ones_like(count)),
                                torch.zeros_like(total))
    return out
