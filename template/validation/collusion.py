"""Collusion groups: contributions that carry each other's training data (docs/scoring.md).

Commit-then-reveal means no miner can copy another's bytes while the round is open, so two
contributions that share training can only come from one operator or from miners working
together: one run sent under several hotkeys, an update mixed into another, a copy disguised by
scaling, noise or re-sparsification. Whatever the disguise, such an update still helps the
pages its source trained on. So for every pair the validator asks what honest independent
miners never show: does contribution i help miner j's assigned pages more than pages nobody
trained on (i's control pages)? The Welch z of that difference is i's "cross" evidence on j; an
edge joins i and j when it reaches `z_min` (`z_min_same_coldkey` between two hotkeys of one
coldkey, where one operator is known). Groups are the connected components: a group counts as
one contribution in pay and in the aggregate.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CrossEvidence:
    """`carrier`'s update helps `owner`'s assigned pages by `diff` more than random pages (z)."""

    carrier: str
    owner: str
    diff: float
    z: float


def welch_z(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(mean(a) - mean(b), its Welch z); z = 0 with fewer than 2 values a side or no spread."""
    if a.numel() < 2 or b.numel() < 2:
        return 0.0, 0.0
    diff = float(a.double().mean() - b.double().mean())
    se = float((a.double().var() / a.numel() + b.double().var() / b.numel()).sqrt())
    return diff, (diff / se if se > 0 else 0.0)


def cross_evidence(keys: Sequence[str], probe_gains: Callable[[str, str], torch.Tensor],
                   control_gains: Mapping[str, torch.Tensor]) -> list[CrossEvidence]:
    """Every ordered pair's evidence: `probe_gains(carrier, owner)` are the per-page gains of the
    carrier's update on the owner's probe pages, `control_gains[carrier]` on its control pages."""
    found = []
    for carrier in keys:
        for owner in keys:
            if owner != carrier:
                diff, z = welch_z(probe_gains(carrier, owner), control_gains[carrier])
                found.append(CrossEvidence(carrier, owner, diff, z))
    return found


def edges(evidence: Sequence[CrossEvidence], coldkeys: Mapping[str, str], z_min: float,
          z_min_same_coldkey: float) -> list[CrossEvidence]:
    """The evidence whose z reaches the threshold for its pair."""
    def same(e: CrossEvidence) -> bool:
        return coldkeys.get(e.carrier) is not None and coldkeys.get(e.carrier) == coldkeys.get(e.owner)
    return [e for e in evidence if e.z >= (z_min_same_coldkey if same(e) else z_min)]


def collusion_groups(keys: Sequence[str], joined: Sequence[CrossEvidence]) -> list[list[str]]:
    """Connected components (of size >= 2, members in `keys` order) of the `joined` pairs."""
    parent = {k: k for k in keys}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for e in joined:
        parent[root(e.carrier)] = root(e.owner)
    groups: dict[str, list[str]] = {}
    for k in keys:
        groups.setdefault(root(k), []).append(k)
    return [members for members in groups.values() if len(members) > 1]
