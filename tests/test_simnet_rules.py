"""simnet's chain rules, each observed through the real SDK with subtensor's error name."""

from __future__ import annotations

import asyncio

import bittensor as bt
import httpx
import pytest

from simnet.registration import decay_factor_q32
from template.chain.simnet_process import DevWallet, SimnetProcess

ALICE = DevWallet.from_uri("//Alice")           # sudo key and subnet owner
BOB = DevWallet.from_uri("//Bob")               # validator (staked)
MINER = DevWallet.from_uri("//Charlie")         # miner (no stake, no permit)
EXTRA = DevWallet.from_uri("//Dave")
STRANGER = DevWallet.from_uri("//Eve")          # funded, never registered
PAUPER = DevWallet.from_uri("//Nobody")         # no balance at all


def run(coro):
    return asyncio.run(coro)


async def sudo(client, call):
    inner = await client.compose(call)
    return await client.submit_call(bt.calls.Sudo.sudo(call=inner), ALICE)


async def raw_weights(client, wallet, netuid, dests, weights, version_key=0):
    call = bt.calls.SubtensorModule.set_mechanism_weights(
        netuid=netuid, mecid=0, dests=dests, weights=weights, version_key=version_key)
    return await client.submit_call(call, wallet, signer="hotkey")


def max_weight_limit(netuid, value):
    # Not in the SDK's generated registry (newer runtimes dropped it); compose it by name.
    return bt.calls.Call("AdminUtils", "sudo_set_max_weight_limit",
                         {"netuid": netuid, "max_weight_limit": value})


def error_name(result):
    assert not result.success, "expected the chain to refuse"
    return result.error.name


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with SimnetProcess(tmp_path_factory.mktemp("simnet-rules") / "chain.db") as process:
        yield process


@pytest.fixture(scope="module")
def subnet(sim):
    """Owner Alice; Bob staked validator (uid 1); Charlie miner (uid 2); Dave miner (uid 3);
    commit-reveal off; one epoch has run so Bob holds a permit."""
    async def setup():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), ALICE)).data["netuid"]
            assert (await sudo(client, bt.calls.AdminUtils.sudo_set_commit_reveal_weights_enabled(
                netuid=netuid, enabled=False))).success
            assert (await client.execute(bt.StartCall(netuid=netuid), ALICE)).success
            for wallet in (BOB, MINER, EXTRA):
                assert (await client.execute(bt.BurnedRegister(netuid=netuid), wallet)).success
            assert (await client.execute(bt.AddStake(
                hotkey_ss58=BOB.hotkey.ss58_address, netuid=netuid, amount_tao=50), BOB)).success
            return netuid

    netuid = run(setup())
    sim.advance(101)
    return netuid


def test_registering_twice_is_refused(sim, subnet):
    async def go():
        async with sim.client() as client:
            return await client.execute(bt.BurnedRegister(netuid=subnet), BOB)
    assert error_name(run(go())) == "HotKeyAlreadyRegisteredInSubNet"


def test_unregistered_hotkey_cannot_set_weights(sim, subnet):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, STRANGER, subnet, [1], [65535])
    assert error_name(run(go())) == "HotKeyNotRegisteredInSubNet"


def test_old_version_key_is_refused(sim, subnet):
    async def go():
        async with sim.client() as client:
            assert (await sudo(client, bt.calls.AdminUtils.sudo_set_weights_version_key(
                netuid=subnet, weights_version_key=5))).success
            try:
                return await raw_weights(client, BOB, subnet, [2, 3], [65535, 100], version_key=4)
            finally:
                await sudo(client, bt.calls.AdminUtils.sudo_set_weights_version_key(
                    netuid=subnet, weights_version_key=0))
    assert error_name(run(go())) == "IncorrectWeightVersionKey"


def test_weights_inside_the_rate_limit_are_refused(sim, subnet):
    async def go():
        async with sim.client() as client:
            first = await raw_weights(client, BOB, subnet, [2, 3], [65535, 100])
            second = await raw_weights(client, BOB, subnet, [2, 3], [65535, 100])
            return first, second
    first, second = run(go())
    assert first.success, first.error
    assert error_name(second) == "SettingWeightsTooFast"


@pytest.fixture
def no_rate_limit(sim, subnet):
    async def set_limit(value):
        async with sim.client() as client:
            assert (await sudo(client, bt.calls.AdminUtils.sudo_set_weights_set_rate_limit(
                netuid=subnet, weights_set_rate_limit=value))).success
    run(set_limit(0))
    yield
    run(set_limit(100))


@pytest.mark.parametrize("dests, weights, expected", [
    ([2, 2], [100, 200], "DuplicateUids"),
    ([2, 9], [100, 200], "UidVecContainInvalidOne"),
])
def test_malformed_weight_vectors_are_refused(sim, subnet, no_rate_limit, dests, weights,
                                              expected):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, BOB, subnet, dests, weights)
    assert error_name(run(go())) == expected


def test_miner_without_permit_cannot_set_weights(sim, subnet, no_rate_limit):
    async def go():
        async with sim.client() as client:
            return await raw_weights(client, MINER, subnet, [1, 3], [65535, 100])
    assert error_name(run(go())) == "NeuronNoValidatorPermit"


def test_too_few_weights_are_refused(sim, subnet, no_rate_limit):
    async def go():
        async with sim.client() as client:
            assert (await sudo(client, bt.calls.AdminUtils.sudo_set_min_allowed_weights(
                netuid=subnet, min_allowed_weights=3))).success
            try:
                return await raw_weights(client, BOB, subnet, [2, 3], [65535, 100])
            finally:
                await sudo(client, bt.calls.AdminUtils.sudo_set_min_allowed_weights(
                    netuid=subnet, min_allowed_weights=1))
    assert error_name(run(go())) == "WeightVecLengthIsLow"


def test_weight_above_max_limit_is_refused(sim, subnet, no_rate_limit):
    async def go():
        async with sim.client() as client:
            assert (await sudo(client, max_weight_limit(subnet, 32768))).success
            try:
                return await raw_weights(client, BOB, subnet, [2, 3], [65535, 100])
            finally:
                await sudo(client, max_weight_limit(subnet, 65535))
    assert error_name(run(go())) == "MaxWeightExceeded"


def test_start_call_by_non_owner_is_refused(sim, subnet):
    async def go():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), STRANGER)).data["netuid"]
            return await client.execute(bt.StartCall(netuid=netuid), BOB)
    assert error_name(run(go())) == "NotSubnetOwner"


def test_registration_without_balance_is_refused(sim, subnet):
    async def go():
        async with sim.client() as client:
            return await client.execute(bt.BurnedRegister(netuid=subnet), PAUPER)
    assert error_name(run(go())) == "NotEnoughBalanceToStake"


def test_commitment_from_unregistered_hotkey_is_refused(sim, subnet):
    async def go():
        async with sim.client() as client:
            call = bt.calls.Commitments.set_commitment(
                netuid=subnet, info={"fields": [{"Raw2": "0x6869"}]})
            return await client.submit_call(call, STRANGER, signer="hotkey")
    assert error_name(run(go())) == "AccountNotAllowedCommit"


def test_price_bumps_after_registration_and_decays_per_block(sim):
    async def register():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), BOB)).data["netuid"]
            before = (await client.subnets.info(netuid)).burn.rao
            assert (await client.execute(bt.BurnedRegister(netuid=netuid), MINER)).success
            after = (await client.subnets.info(netuid)).burn.rao
            return netuid, before, after
    netuid, before, after = run(register())
    assert after == int(before * 1.26)
    sim.advance(1)

    async def burn():
        async with sim.client() as client:
            return (await client.subnets.info(netuid)).burn.rao
    assert run(burn()) == (after * decay_factor_q32(360)) >> 32


def test_full_subnet_prunes_lowest_emission_and_never_the_owner(sim):
    """max_allowed_uids 3, immunity 0: the owner (uid 0) is immortal; among the others the
    lowest emission goes, ties to the earliest registration."""
    async def setup():
        async with sim.client() as client:
            netuid = (await client.execute(bt.RegisterSubnet(), STRANGER)).data["netuid"]
            for call in (
                bt.calls.AdminUtils.sudo_set_max_allowed_uids(netuid=netuid, max_allowed_uids=3),
                bt.calls.AdminUtils.sudo_set_immunity_period(netuid=netuid, immunity_period=0),
                bt.calls.AdminUtils.sudo_set_commit_reveal_weights_enabled(netuid=netuid,
                                                                           enabled=False),
                bt.calls.AdminUtils.sudo_set_weights_set_rate_limit(netuid=netuid,
                                                                    weights_set_rate_limit=0),
            ):
                assert (await sudo(client, call)).success
            assert (await client.execute(bt.StartCall(netuid=netuid), STRANGER)).success
            for wallet in (BOB, MINER):
                assert (await client.execute(bt.BurnedRegister(netuid=netuid), wallet)).success
            return netuid
    netuid = run(setup())
    sim.advance(1)  # weights set in a uid's registration block are masked by the epoch

    async def vote():
        async with sim.client() as client:
            # The owner votes for Charlie (uid 2) only: Bob (uid 1) earns nothing.
            result = await raw_weights(client, STRANGER, netuid, [2], [65535])
            assert result.success, result.error
    run(vote())
    sim.advance(25)

    async def register_extra():
        async with sim.client() as client:
            mg = await client.subnets.metagraph(netuid)
            emissions = [n.emission.rao for n in mg.neurons]
            result = await client.execute(bt.BurnedRegister(netuid=netuid), EXTRA)
            assert result.success, result.error
            return emissions, (await client.subnets.metagraph(netuid)).hotkeys
    emissions, hotkeys = run(register_extra())
    assert emissions[2] > emissions[1] == 0
    assert hotkeys == [STRANGER.hotkey.ss58_address, EXTRA.hotkey.ss58_address,
                       MINER.hotkey.ss58_address]


def test_server_answers_malformed_requests_with_4xx(sim):
    url = sim.url
    cases = [
        ("/rpc", b"not json"),
        ("/rpc", b"[1, 2]"),
        ("/rpc", b'{"method": 5}'),
        ("/rpc", b'{"method": "no_such_method", "params": {}}'),
        ("/rpc", b'{"method": "query", "params": {"module": 1}}'),
        ("/rpc", b'{"method": "query", "params": {"module": "X", "item": "Y"}}'),
        ("/rpc", b'{"method": "block_hash", "params": {"block": 10000000}}'),
        ("/rpc", b'{"method": "events", "params": {"block_hash": "0x1234"}}'),
        ("/rpc", b'{"method": "submit", "params": {"envelope": {"payload": "{}"}}}'),
        ("/rpc", b'{"method": "submit", "params": {"envelope": {"payload": "{\\"chain\\": '
                 b'\\"simnet\\", \\"signer\\": \\"x\\", \\"nonce\\": 0, \\"call\\": {\\"__call__\\":'
                 b' {\\"module\\": \\"A\\", \\"function\\": \\"b\\", \\"params\\": {}}}}", '
                 b'"signature": "00"}}}'),
        ("/rpc", b'{"method": "runtime_call", "params": {"api": "A", "method": "b"}}'),
        ("/admin/advance", b'{"blocks": -1}'),
        ("/admin/advance", b'{"blocks": "many"}'),
        ("/admin/reveal_weights", b'{"netuid": 1}'),
        ("/nowhere", b"{}"),
    ]
    for path, body in cases:
        response = httpx.post(url + path, content=body,
                              headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert "error" in response.json() or response.json().get("success") is False
    assert httpx.get(url + "/health").json()["ok"] is True
