"""What a neuron needs from the chain, through the bittensor SDK (one code path for simnet and
real networks). Returns plain dataclasses so that the rest of the code never sees SDK types.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass

import bittensor as bt
from loguru import logger

from template.chain.client import SIM_NETWORK, open_client
from template.utils.errors import CannotStart


@dataclass(frozen=True)
class NeuronView:
    uid: int
    hotkey: str
    coldkey: str
    stake_rao: int
    validator_permit: bool
    axon: str | None  # "ip:port"
    incentive: float
    dividends: float
    emission_rao: int
    last_update: int


@dataclass(frozen=True)
class MetagraphView:
    netuid: int
    block: int
    neurons: list[NeuronView]

    def by_hotkey(self, hotkey: str) -> NeuronView | None:
        return next((n for n in self.neurons if n.hotkey == hotkey), None)

    def permitted_validators(self) -> list[NeuronView]:
        return [n for n in self.neurons if n.validator_permit and n.stake_rao > 0]


class ChainError(RuntimeError):
    """A chain call failed; the message names the chain error and what to do."""


class RegistrationRefused(ChainError, CannotStart):
    """The hotkey is not registered and this neuron will not (or cannot) pay to register it."""


@dataclass(frozen=True)
class ChainRead:
    """The last successful read of the chain (for /health)."""
    block: int
    at_unix: float


class NeuronChain:
    """One neuron's handle on the chain: its wallet, its subnet, and the calls it makes."""

    def __init__(self, network: str, endpoint: str, wallet: bt.Wallet, netuid: int):
        self.network = network
        self.endpoint = endpoint  # "" for the network's own
        self.wallet = wallet
        self.netuid = netuid
        self.client: bt.Client | None = None
        self.last_read: ChainRead | None = None

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address

    async def connect(self) -> "NeuronChain":
        self.client = await open_client(self.network, self.endpoint).connect()
        return self

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def block(self) -> int:
        return self._read_ok(await self.client.block())

    async def keep_reading(self, every: float = 10.0) -> None:
        """Read the block every `every` seconds until cancelled, so `last_read` (what /health
        reports) stays fresh while the neuron's own work reads nothing (a long scoring)."""
        while True:
            try:
                await self.block()
            except Exception as exc:  # an outage shows as a stale last_read; the neuron's own reads retry
                logger.debug("chain read failed: {}", exc)
            await asyncio.sleep(every)

    def _read_ok(self, block: int) -> int:
        self.last_read = ChainRead(int(block), time.time())
        return block

    async def block_hash(self, block: int) -> str:
        info = await self.client.block_info(block)
        if info is None or not info.hash:
            raise ChainError(f"block {block} is not on chain yet")
        return info.hash

    async def block_time(self) -> float:
        return await self.client.block_time()

    async def wait_for_block(self, block: int, poll: float | None = None, patience: float = 300.0) -> int:
        """Wait until the chain reaches `block` (polling: works the same on every backend). Reads
        that fail are retried: an outage shorter than `patience` seconds costs nothing."""
        failing_since: float | None = None
        while True:
            try:
                poll = poll or max(0.05, min(1.0, await self.block_time() / 2))
                current = await self.block()
                if failing_since is not None:
                    logger.info("chain reachable again after {:.0f} s", time.monotonic() - failing_since)
                    failing_since = None
                if current >= block:
                    return current
            except Exception as exc:  # the node restarting, a dropped connection
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    logger.warning("chain read failed ({}); retrying for up to {:.0f} s", exc, patience)
                elif now - failing_since > patience:
                    raise ChainError(f"the chain did not answer for {patience:.0f} s: {exc}") from exc
            await asyncio.sleep(poll or 1.0)

    async def uid(self) -> int | None:
        return await self.client.read("uid", hotkey_ss58=self.hotkey, netuid=self.netuid)

    async def ensure_registered(self, register: bool, max_burn_tao: float) -> int:
        """This hotkey's uid; registers it (burning at most `max_burn_tao`) when `register` is set.
        Refuses in one line saying what it would cost and what to do: unregistered without
        --neuron.register, a burn above the cap, a coldkey that cannot pay."""
        uid = await self.uid()
        if uid is not None:
            return uid
        try:
            await self.metagraph()
        except ChainError as exc:  # no such subnet
            raise RegistrationRefused(f"{exc}: check --netuid and --subtensor.network") from exc
        burn = await self.client.read("burn", netuid=self.netuid)
        balance = await self.client.read("balance", coldkey_ss58=self.wallet.coldkeypub.ss58_address)
        where = f"hotkey {self.wallet.hotkey_str} ({self.hotkey}) is not registered on netuid {self.netuid}"
        cost = f"Registering costs {burn.tao:.4f} TAO now"
        held = f"coldkey {self.wallet.name} ({self.wallet.coldkeypub.ss58_address}) holds {balance.tao:.4f} TAO"
        if not register:
            raise RegistrationRefused(f"{where}. {cost} ({held}): register it ({self._how_to('register')}) or start "
                                      "with --neuron.register")
        if burn.tao > max_burn_tao:
            raise RegistrationRefused(f"{where}. {cost}, above --neuron.max_burn_tao {max_burn_tao:g}: raise the cap "
                                      f"if you mean to pay it, or register it yourself ({self._how_to('register')})")
        if balance.rao <= burn.rao:  # the fee comes on top of the burn
            raise RegistrationRefused(f"{where}. {cost}, but {held}: fund it ({self._how_to('fund')}), then start "
                                      "again")
        logger.info("burn-registering {} on netuid {} for {:.4f} TAO (cap {:g})", self.hotkey, self.netuid, burn.tao,
                    max_burn_tao)
        result = await self.client.execute(bt.BurnedRegister(netuid=self.netuid), self.wallet)
        if not result.success:
            raise RegistrationRefused(f"registering {self.hotkey} on netuid {self.netuid} failed on chain: "
                                      f"{_error_name(result)} ({result.message})")
        uid = await self.uid()
        if uid is None:
            raise ChainError("registration succeeded but the hotkey has no uid yet")
        return uid

    def _how_to(self, what: str) -> str:
        if self.network == SIM_NETWORK:
            return "on simnet: docs/simnet.md"
        network = self.endpoint or self.network
        wallet = f"--wallet {self.wallet.name} --network {network}"
        if what == "register":
            return (f"btcli subnets burn-cost {self.netuid} --network {network}; then btcli subnets register "
                    f"--netuid {self.netuid} {wallet} --wallet-hotkey {self.wallet.hotkey_str}")
        return f"btcli wallet balance {wallet}"

    async def serve_axon(self, ip: str, port: int, patience: float = 900.0) -> None:
        """Publish the axon address, unless the chain already has it. Within the chain's serving
        rate limit (a quick restart with a new address) wait it out instead of failing."""
        ipaddress.ip_address(ip)  # fails loudly on a bad address before paying a fee
        address = f"{ip}:{port}"
        me = (await self.metagraph()).by_hotkey(self.hotkey)
        if me is not None and me.axon == address:
            logger.info("axon {} is already published on chain", address)
            return
        give_up = time.monotonic() + patience
        while True:
            result = await self.client.execute(bt.ServeAxon(netuid=self.netuid, ip=ip, port=port), self.wallet)
            if result.success or _error_name(result) != "ServingRateLimitExceeded" or time.monotonic() > give_up:
                _raise_on_failure(result, "serve_axon")
                return
            wait = max(1.0, 5 * await self.block_time())
            logger.warning("serving {} is rate-limited by the chain; trying again in {:.0f} s", address, wait)
            await asyncio.sleep(wait)

    async def metagraph(self) -> MetagraphView:
        graph = await self.client.subnets.metagraph(self.netuid, commitments=False)
        if graph is None:
            raise ChainError(f"subnet {self.netuid} does not exist on {self.network}")
        self._read_ok(graph.block)
        neurons = [
            NeuronView(
                uid=n.uid, hotkey=n.hotkey, coldkey=n.coldkey, stake_rao=int(n.total_stake.rao),
                validator_permit=bool(n.validator_permit), axon=n.axon, incentive=float(n.incentive),
                dividends=float(n.dividends), emission_rao=int(n.emission.rao), last_update=int(n.last_update),
            )
            for n in graph.neurons
        ]
        return MetagraphView(netuid=self.netuid, block=graph.block, neurons=neurons)

    async def weights_rate_limit(self) -> int:
        return int(await self.client.read("weights_rate_limit", netuid=self.netuid))

    async def set_weights(self, weights: dict[int, float], version_key: int) -> bool:
        """Set weights; returns False (and logs why) when the chain refuses, never raises."""
        if not weights:
            return False
        try:
            result = await self.client.execute(
                bt.SetWeights(netuid=self.netuid, weights=weights, version_key=version_key), self.wallet)
        except bt.ChainError as exc:
            logger.warning("set_weights refused before submission: {}", exc)
            return False
        if not result.success:
            logger.warning("set_weights failed on chain: {}", result.message)
            return False
        return True

    async def committed_digests(self, hotkey: str) -> set[str]:
        """The sha256 digests (lowercase hex) in `hotkey`'s current commitment on this subnet."""
        return set(await self.committed_digest_list(hotkey))

    async def committed_digest_list(self, hotkey: str) -> list[str]:
        """The sha256 digests in `hotkey`'s current commitment, in its order (newest first)."""
        commitment = await self.client.read("commitment", netuid=self.netuid, hotkey_ss58=hotkey)
        digests = []
        for entry in (commitment.fields if commitment is not None else None) or []:
            value = entry.get("Sha256") if isinstance(entry, dict) else None
            if isinstance(value, str) and value.startswith("0x"):
                digests.append(value[2:].lower())
        return digests

    async def commit_hash(self, digest_hex: str, note: str = "") -> bool:
        """Publish a sha256 (and an optional short note) as this hotkey's commitment, keeping the
        newest digest it replaces beside it: a commitment holds one value, and a validator that
        checks a round a little late must still find that round's digest there."""
        try:
            previous = [d for d in await self.committed_digest_list(self.hotkey) if d != digest_hex][:1]
        except Exception as exc:  # the read is a courtesy to late checkers: the commit goes on without it
            logger.warning("reading this hotkey's commitment failed ({}); committing the new digest alone", exc)
            previous = []
        fields: list[dict] = [{"Sha256": "0x" + d} for d in [digest_hex, *previous]]
        if note:
            raw = note.encode()[:128]
            fields.append({f"Raw{len(raw)}": "0x" + raw.hex()})
        call = bt.calls.Commitments.set_commitment(netuid=self.netuid, info={"fields": fields})
        try:
            result = await self.client.submit_call(call, self.wallet, signer="hotkey")
        except bt.ChainError as exc:
            logger.warning("set_commitment refused: {}", exc)
            return False
        if not result.success:
            logger.warning("set_commitment failed on chain: {}", result.message)
        return bool(result.success)


def _error_name(result) -> str:
    return getattr(result.error, "name", None) or result.message or ""


def _raise_on_failure(result, what: str) -> None:
    if not result.success:
        name = _error_name(result)
        raise ChainError(f"{what} failed on chain: {name} ({result.message})")

