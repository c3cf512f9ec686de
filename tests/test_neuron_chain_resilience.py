"""A neuron rides out what a real chain does: a node that drops for a while, and a serving rate
limit hit by a quick restart. The SDK client is replaced by a scripted stand-in."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from template.chain.neuron_chain import ChainError, MetagraphView, NeuronChain, NeuronView

HOTKEY = "5HotkeyOfThisNeuron"


class ScriptedClient:
    def __init__(self, blocks, results=()):
        self.blocks = list(blocks)  # each an int, or an exception to raise
        self.results = list(results)
        self.executed = []

    async def block(self):
        value = self.blocks.pop(0) if len(self.blocks) > 1 else self.blocks[0]
        if isinstance(value, Exception):
            raise value
        return value

    async def block_time(self):
        return 0.01

    async def execute(self, call, wallet):
        self.executed.append(call)
        return self.results.pop(0)


class WalletlessChain(NeuronChain):
    hotkey = HOTKEY


def chain_with(client, axon: str | None = None) -> NeuronChain:
    chain = WalletlessChain("sim", "http://127.0.0.1:1", wallet=None, netuid=1)
    chain.client = client

    async def metagraph():
        me = NeuronView(0, HOTKEY, "5Cold", 0, False, axon, 0, 0, 0, 0)
        return MetagraphView(1, 0, [me])

    chain.metagraph = metagraph
    return chain


def test_a_short_outage_does_not_end_the_wait():
    down = ConnectionError("connection refused")
    client = ScriptedClient([5, down, down, down, 9, 12])
    assert asyncio.run(chain_with(client).wait_for_block(10, patience=5.0)) == 12


def test_an_outage_longer_than_the_patience_is_an_error():
    client = ScriptedClient([ConnectionError("connection refused")])
    with pytest.raises(ChainError, match="did not answer"):
        asyncio.run(chain_with(client).wait_for_block(10, poll=0.01, patience=0.1))


def ok():
    return SimpleNamespace(success=True, error=None, message="")


def refused(name: str):
    return SimpleNamespace(success=False, error=SimpleNamespace(name=name), message=name)


def test_an_unchanged_axon_is_not_served_again():
    client = ScriptedClient([1])
    asyncio.run(chain_with(client, axon="10.0.0.5:8091").serve_axon("10.0.0.5", 8091))
    assert client.executed == []


def test_a_serving_rate_limit_is_waited_out(monkeypatch):
    client = ScriptedClient([1], [refused("ServingRateLimitExceeded"), refused("ServingRateLimitExceeded"), ok()])
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    asyncio.run(chain_with(client, axon="10.0.0.5:8091").serve_axon("10.0.0.6", 8091))
    assert len(client.executed) == 3


def test_other_serving_errors_are_raised_at_once():
    client = ScriptedClient([1], [refused("InvalidIpAddress")])
    with pytest.raises(ChainError, match="InvalidIpAddress"):
        asyncio.run(chain_with(client).serve_axon("10.0.0.6", 8091))
    assert len(client.executed) == 1


_real_sleep = asyncio.sleep


async def _no_sleep(seconds):
    await _real_sleep(0)
