"""Miner lifecycle: register, serve the axon, answer validators, keep the permit list fresh."""
from __future__ import annotations

import asyncio
import signal
import threading
import time

import bittensor as bt
from loguru import logger

from protocol.auth import RequestVerifier
from protocol.messages import InfoResponse, TrainRequest
from protocol.version import PROTOCOL_VERSION
from template.net.addresses import published_ip
from template.net.monitoring import Monitoring, install_monitoring
from template.net.server import BackgroundServer
from template.miner.app import create_miner_app
from template.miner.reveal import RevealClock
from template.chain.round_clock import round_at
from template.miner.round_log import MinerMetrics, RoundLog
from template.miner.work_order import check_checkpoint_source, check_round_is_open, check_work_order
from template.miner.team_lead import TeamLead, choose_engine, team_capacity_gb
from template.miner.worker import MinerWorker
from template.training.model import pick_device
from template.chain.neuron_chain import NeuronChain
from template.config import Config, build_workload, expand, log_level, neuron_folder, open_neuron_run
from template.training.team import Team
from template.training.train_step import should_compile
from template.utils.logging import setup_logging
from template.utils.neuron_folder import claim_folder
from template.utils.versions import versions


TEAM_STOP_SECONDS = 120.0  # how long a stopping torchrun miner waits for the unit in training


class PermitList:
    """Hotkeys allowed to call this miner: registered validators with a permit and stake.
    Replaced wholesale on refresh, so readers in the HTTP threads never see a half update."""

    def __init__(self):
        self.stakes: dict[str, int] = {}  # hotkey -> stake (rao); never mutated, only replaced
        self.axons: dict[str, str | None] = {}  # hotkey -> published "ip:port"; replaced likewise
        self.refreshed_on_demand = float("-inf")
        self.stale = threading.Event()

    def axon_of(self, hotkey: str) -> str | None:
        return self.axons.get(hotkey)

    def may_refresh(self, every: float = 1.0) -> bool:
        """At most one refresh a second on a caller's behalf (a flood cannot hammer the chain)."""
        now = time.monotonic()
        if now - self.refreshed_on_demand < every:
            return False
        self.refreshed_on_demand = now
        return True

    @property
    def hotkeys(self) -> frozenset[str]:
        return frozenset(self.stakes)

    def stake_of(self, hotkey: str) -> float:
        """A work order's priority: the lead has the most stake, so its order wins."""
        return float(self.stakes.get(hotkey, 0))

    def policy(self, hotkey: str) -> str | None:
        if hotkey in self.stakes:
            return None
        self.stale.set()  # maybe a validator that just got its permit: refresh soon
        return f"{hotkey} is not a registered validator with a permit on this subnet"


async def run_miner(config: Config, team: Team | None = None) -> None:
    """The miner; under torchrun this is its first process (`team`), the others follow its orders."""
    state_dir = claim_folder(neuron_folder(config, "miner"), config.netuid, "miner")
    setup_logging(f"miner:{config.wallet.hotkey}", log_level(config.logging), state_dir / "logs")
    wallet = bt.Wallet(name=config.wallet.name, hotkey=config.wallet.hotkey, path=str(expand(config.wallet.path)))
    keypair = wallet.hotkey
    chain = await NeuronChain(config.subtensor.network, config.subtensor.chain_endpoint, wallet,
                              config.netuid).connect()
    uid = await chain.ensure_registered(config.neuron.register or config.subtensor.network == "sim",
                                        config.neuron.max_burn_tao)
    workload = build_workload(config)
    device = team.device if team is not None else pick_device(config.neuron.device)
    capacity_gb = config.miner.capacity_gb or workload.capacity_gb(device)
    team_lead = None
    if team is not None:
        engine = choose_engine(config.miner.engine, workload, team, capacity_gb)
        capacity_gb = config.miner.capacity_gb or team_capacity_gb(engine, team, capacity_gb)
        team_lead = TeamLead(team, engine)
        logger.info("torchrun team: {} processes on {}, engine {}, declaring {:.1f} GB", team.world, device.type,
                    engine, capacity_gb)
    run = open_neuron_run(config, "miner", uid, state_dir)
    monitoring = Monitoring("miner", lambda: chain.last_read, config.neuron.health_chain_stale_s, versions())
    round_log = RoundLog(await chain.block() // config.round.round_blocks, config.miner.behaviour, run,
                         MinerMetrics(monitoring))
    worker = MinerWorker(keypair, workload, config.miner.behaviour, state_dir,
                         expand(config.miner.copy_from_dir) if config.miner.copy_from_dir else None, device,
                         round_log, compile=should_compile(config.miner.compile, device) and team is None,
                         team=team_lead,
                         shared_dir=expand(config.miner.shared_dir) if config.miner.shared_dir else None,
                         step_budget=config.miner.inner_step_budget)

    main_loop = asyncio.get_running_loop()

    async def check_assignment(order: TrainRequest, sender: str) -> str | None:
        source = check_checkpoint_source(order, permits.axon_of(sender))
        if source is not None and permits.may_refresh():  # the sender may have just published its axon
            try:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(refresh_permits(chain, permits),
                                                                           main_loop))
            except Exception as exc:
                logger.warning("metagraph refresh failed: {}", exc)
            source = check_checkpoint_source(order, permits.axon_of(sender))
        if source is not None:
            return source
        seed_block = round_at(order.round_block, config.round.round_blocks, config.round.train_blocks).seed_block
        try:  # the chain client lives on the main loop; the HTTP server runs on its own
            block, block_hash = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                _block_and_hash(chain, seed_block), main_loop))
        except Exception as exc:
            return f"cannot read block {seed_block} to verify the round seed: {exc}"
        return check_round_is_open(order, block, config.round.round_blocks, config.round.train_blocks,
                                   time.time()) or check_work_order(order, workload, keypair.ss58_address, block_hash) \
            or (team_lead.refusal(order) if team_lead is not None else None)

    permits = PermitList()
    info = InfoResponse(hotkey=keypair.ss58_address, version=PROTOCOL_VERSION,
                        device=str(device) if team is None else f"{team.world}x {device.type}",
                        capacity_gb=capacity_gb,
                        model_preset=workload.preset_name, behaviour=config.miner.behaviour)
    async def current_block() -> int:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(chain.block(), main_loop))

    reveal = RevealClock(current_block, config.round.round_blocks, config.round.train_blocks)
    verifier = RequestVerifier(keypair.ss58_address, permits.policy)
    app = create_miner_app(worker, verifier, config.netuid, check_assignment, info, reveal, permits.stake_of)
    server = BackgroundServer(install_monitoring(app, monitoring), config.axon.ip, config.axon.port).start()
    address = published_ip(config.axon.ip, config.axon.external_ip)
    port = config.axon.external_port or config.axon.port
    await chain.serve_axon(address, port)
    logger.info("miner uid {} ({}) serving on {}:{}, published as {}:{} (health: /health, metrics: /metrics)", uid,
                config.miner.behaviour, config.axon.ip, config.axon.port, address, port)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    trainer = threading.Thread(target=worker.run, args=(stop,), name="trainer", daemon=True)
    trainer.start()
    try:
        await asyncio.gather(refresh_permits_until(stop, chain, permits),
                             close_rounds_until(stop, chain, round_log, config.round.round_blocks))
    finally:
        if team is not None:  # the worker ends the round in hand, then tells the other processes to stop
            stop.set()
            await asyncio.to_thread(trainer.join, TEAM_STOP_SECONDS)
        server.stop()
        run.finish()
        await chain.close()
        logger.info("miner stopped")


async def _block_and_hash(chain: NeuronChain, block: int) -> tuple[int, str]:
    return await chain.block(), await chain.block_hash(block)


async def refresh_permits(chain: NeuronChain, permits: PermitList) -> None:
    graph = await chain.metagraph()
    validators = graph.permitted_validators()
    permits.axons = {n.hotkey: n.axon for n in validators}
    permits.stakes = {n.hotkey: n.stake_rao for n in validators}
    permits.stale.clear()


async def close_rounds_until(stop: threading.Event, chain: NeuronChain, round_log: RoundLog, round_blocks: int,
                             every: float = 2.0) -> None:
    """Read the chain's block every `every` seconds (what /health reports) and log each round's
    row once the chain has moved past it."""
    while not stop.is_set():
        try:
            round_log.close_before(await chain.block() // round_blocks)
        except Exception as exc:  # the chain briefly unreachable: /health says so, the permit refresh warns
            logger.debug("chain read failed: {}", exc)
        await asyncio.sleep(every)


async def refresh_permits_until(stop: threading.Event, chain: NeuronChain, permits: PermitList,
                                every: float = 12.0) -> None:
    last = 0.0
    while not stop.is_set():
        if time.monotonic() - last > every or (permits.stale.is_set() and time.monotonic() - last > 1.0):
            try:
                await refresh_permits(chain, permits)
                logger.debug("permitted validators: {}", len(permits.hotkeys))
            except Exception as exc:  # the chain being briefly unreachable must not end the miner
                logger.warning("metagraph refresh failed: {}", exc)
            last = time.monotonic()
        await asyncio.sleep(0.25)
