"""Every validator elects the same lead from the metagraph and the validators' announcements:
the most stake among those that answer with the freshest checkpoint."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, strategies as st

from template.validator.lead_election import (Candidate, announced_rounds, candidates_of, conflicting_checkpoint,
                                         elect, starting_peer_to_wait_for)
from template.chain.neuron_chain import MetagraphView, NeuronView

A, B, C, ME = (Candidate(hk, f"http://10.0.0.{i}:8000", stake, i)
               for i, (hk, stake) in enumerate([("a", 900), ("b", 500), ("c", 500), ("me", 100)]))
RANKED = [A, B, C, ME]


def test_the_most_staked_validator_leads_while_it_answers_and_is_fresh():
    election = elect(RANKED, {"a": 7, "b": 7, "c": 6, "me": 7}, round_index=8)
    assert election.lead == A and election.freshest_round == 7 and election.passed_over == {}


def test_a_dead_lead_is_skipped_for_the_next_by_stake():
    election = elect(RANKED, {"a": None, "b": 7, "c": 7, "me": 7}, round_index=8)
    assert election.lead == B
    assert election.passed_over == {"a": "unreachable"}


def test_with_every_other_validator_down_this_one_leads():
    election = elect(RANKED, {"a": None, "b": None, "c": None, "me": 3}, round_index=8)
    assert election.lead == ME and set(election.passed_over) == {"a", "b", "c"}


def test_a_returning_lead_with_a_stale_checkpoint_follows_until_it_catches_up():
    stale = elect(RANKED, {"a": 2, "b": 7, "c": 7, "me": 7}, round_index=8)
    assert stale.lead == B
    assert stale.passed_over == {"a": "checkpoint of round 2 is behind round 7"}
    caught_up = elect(RANKED, {"a": 8, "b": 8, "c": 8, "me": 8}, round_index=9)
    assert caught_up.lead == A


def test_a_claim_to_have_finished_the_running_round_counts_as_no_answer():
    election = elect(RANKED, {"a": 8, "b": 7, "c": 7, "me": 7}, round_index=8)
    assert election.lead == B
    assert election.passed_over == {"a": "claims round 8, which has not ended"}


def test_a_validator_just_started_waits_one_round_before_taking_over_from_a_silent_one():
    silent_top = elect(RANKED, {"a": None, "b": None, "c": -1, "me": -1}, round_index=1)
    assert silent_top.lead == C and starting_peer_to_wait_for(silent_top, RANKED, "c") == A
    assert starting_peer_to_wait_for(silent_top, RANKED, "me") is None  # C leads, not me: nothing to wait for
    stale_top = elect(RANKED, {"a": 2, "b": 7, "c": 7, "me": 7}, round_index=8)
    assert starting_peer_to_wait_for(stale_top, RANKED, "b") is None  # A answers; it is only behind


def test_nobody_answering_at_all_is_an_error():
    with pytest.raises(ValueError):
        elect(RANKED, {"a": None}, round_index=1)


@given(st.lists(st.one_of(st.none(), st.integers(-1, 12)), min_size=4, max_size=4), st.integers(0, 12))
def test_the_lead_holds_the_freshest_round_and_everyone_above_it_is_passed_over(rounds, round_index):
    rounds[3] = min(rounds[3] if rounds[3] is not None else -1, round_index - 1)  # my own round is real
    announced = dict(zip("abc", rounds[:3])) | {"me": rounds[3]}
    election = elect(RANKED, announced, round_index)
    valid = [r for r in announced.values() if r is not None and r < round_index]
    assert announced[election.lead.hotkey] == max(valid) == election.freshest_round
    above = RANKED[:RANKED.index(election.lead)]
    assert set(election.passed_over) == {c.hotkey for c in above}


def neuron(uid: int, hotkey: str, stake: int, permit: bool = True, axon: str | None = "10.0.0.9:1") -> NeuronView:
    return NeuronView(uid=uid, hotkey=hotkey, coldkey="ck", stake_rao=stake, validator_permit=permit, axon=axon,
                      incentive=0.0, dividends=0.0, emission_rao=0, last_update=0)


def test_candidates_are_permitted_validators_with_an_axon_by_stake_then_uid_and_always_me():
    graph = MetagraphView(netuid=2, block=100, neurons=[
        neuron(0, "low", 10), neuron(1, "top", 50), neuron(2, "tie", 10), neuron(3, "miner", 0, permit=False),
        neuron(4, "no-axon", 99, axon=None), neuron(5, "no-stake", 0)])
    ranked = candidates_of(graph, "me-unregistered", "http://203.0.113.5:9000")
    assert [c.hotkey for c in ranked] == ["top", "low", "tie", "me-unregistered"]
    assert ranked[0].url == "http://10.0.0.9:1" and ranked[-1].url == "http://203.0.113.5:9000"
    assert [c.hotkey for c in candidates_of(graph, "tie", "http://x:1")] == ["top", "low", "tie"]


def test_announced_rounds_asks_the_others_and_counts_silence_as_none():
    from template.utils.ports import free_port
    dead = Candidate("dead", f"http://127.0.0.1:{free_port()}", 9, 0)
    announced = asyncio.run(announced_rounds([dead, ME], "me", 5, timeout=2.0))
    assert announced == {"dead": None, "me": 5}


def test_a_validator_behind_the_lead_adopts_its_checkpoint_backed_or_not():
    assert conflicting_checkpoint(7, "h7", my_round=5, my_hash="h5", backed=False) is None
    assert conflicting_checkpoint(7, "h7", my_round=-1, my_hash="", backed=False) is None


def test_an_unbacked_checkpoint_never_replaces_one_held_for_the_same_or_a_later_round():
    why = conflicting_checkpoint(7, "evil", my_round=7, my_hash="h7", backed=False)
    assert why is not None and "no committed record backs it" in why and "round 7" in why
    assert conflicting_checkpoint(6, "old", my_round=7, my_hash="h7", backed=False) is not None


def test_a_backed_or_identical_checkpoint_is_adopted():
    assert conflicting_checkpoint(7, "h7b", my_round=7, my_hash="h7", backed=True) is None  # split brain heals
    assert conflicting_checkpoint(7, "h7", my_round=7, my_hash="h7", backed=False) is None
