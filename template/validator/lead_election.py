"""Which validator leads a round: the one with the most stake among those that answer and hold
the freshest checkpoint.

Every validator runs the same election at the start of each round from the same inputs (the
metagraph's permitted validators and what each announces at /v1/checkpoint/latest), so they
agree on the lead without talking to each other. A dead lead is skipped (the next validator
leads from the last checkpoint it verified, and the round does not stall), and a returning
lead whose checkpoint is older than the freshest one follows until it has caught up, instead
of rewinding the model to its stale state. A lead's checkpoint never replaces one a validator
holds for the same or a later round unless a record committed on chain backs it
(`conflicting_checkpoint`).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from protocol.messages import CheckpointInfo
from template.net.checkpoint_client import probe_latest
from template.chain.neuron_chain import MetagraphView


@dataclass(frozen=True)
class Candidate:
    hotkey: str
    url: str
    stake_rao: int
    uid: int


@dataclass(frozen=True)
class Election:
    lead: Candidate
    freshest_round: int
    passed_over: dict[str, str]  # hotkey -> why a validator with more stake does not lead


def candidates_of(graph: MetagraphView, my_hotkey: str, my_url: str) -> list[Candidate]:
    """Permitted validators serving an axon, most stake first (uid breaks ties); always me."""
    found = [Candidate(n.hotkey, f"http://{n.axon}", n.stake_rao, n.uid)
             for n in graph.permitted_validators() if n.axon and n.hotkey != my_hotkey]
    me = graph.by_hotkey(my_hotkey)
    found.append(Candidate(my_hotkey, my_url, me.stake_rao if me else 0, me.uid if me else 1 << 30))
    return sorted(found, key=lambda c: (-c.stake_rao, c.uid))


def elect(candidates: list[Candidate], announced: dict[str, int | None], round_index: int) -> Election:
    """`announced`: hotkey -> the round of the checkpoint it serves (None: did not answer).
    A claim to have finished `round_index` or later is impossible at its start and counts as
    no answer."""
    rounds = {hk: r for hk, r in announced.items() if r is not None and r < round_index}
    if not rounds:
        raise ValueError("no candidate answered; the caller always knows its own round")
    freshest = max(rounds.values())
    passed_over: dict[str, str] = {}
    for candidate in candidates:
        announced_round = rounds.get(candidate.hotkey)
        if announced_round == freshest:
            return Election(candidate, freshest, passed_over)
        if announced_round is None:
            claim = announced.get(candidate.hotkey)
            passed_over[candidate.hotkey] = ("unreachable" if claim is None
                                             else f"claims round {claim}, which has not ended")
        else:
            passed_over[candidate.hotkey] = f"checkpoint of round {announced_round} is behind round {freshest}"
    raise AssertionError("the freshest round belongs to a candidate")


def starting_peer_to_wait_for(election: Election, candidates: list[Candidate], my_hotkey: str) -> Candidate | None:
    """For a validator in its first round after start: the validator with more stake that did not
    answer, when this one would otherwise take over from it. It may be starting too, and two
    leads would split the round, so the newcomer follows it for one round instead."""
    if election.lead.hotkey != my_hotkey:
        return None
    return next((c for c in candidates if election.passed_over.get(c.hotkey) == "unreachable"), None)


async def announced_rounds(candidates: list[Candidate], my_hotkey: str, my_round: int,
                           timeout: float) -> dict[str, int | None]:
    """Each candidate's announced checkpoint round, asked concurrently; mine without asking."""
    others = [c for c in candidates if c.hotkey != my_hotkey]
    infos: list[CheckpointInfo | None] = await asyncio.gather(*(probe_latest(c.url, timeout) for c in others))
    announced = {c.hotkey: (info.round_index if info else None) for c, info in zip(others, infos)}
    announced[my_hotkey] = my_round
    return announced


def conflicting_checkpoint(announced_round: int, announced_hash: str, my_round: int, my_hash: str,
                           backed: bool) -> str | None:
    """Why the lead's checkpoint must not replace this validator's, or None to adopt it.

    A validator behind the lead adopts its checkpoint (it has nothing better to score
    against). One that already holds a checkpoint for the same or a later round (led,
    verified, or adopted) takes a different one only when a record committed on chain backs
    it: otherwise any permitted validator could claim a round it never led and swap the model."""
    if backed or announced_hash == my_hash or announced_round > my_round:
        return None
    return (f"its checkpoint {announced_hash[:12]} of round {announced_round} differs from "
            f"{my_hash[:12]}, which this validator holds for round {my_round}, and no committed "
            f"record backs it")
