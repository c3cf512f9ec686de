"""The validator as its operator watches it: started, one round, stopped, restarted with the same
folder, one more round. Its wandb run (offline, under the folder) is the same run resumed, its
history continues, and it carries each uid's score decomposition and the weight vector set on
chain (also one log line). /health and /metrics on its HTTP server report the chain, the last
round and the last weights. Real validator, scoring, training and wandb; the chain and the
miners' HTTP are the in-process stand-ins of test_validator_round."""
from __future__ import annotations

import asyncio
import json
import struct
import time
from pathlib import Path

import httpx
import pytest
import wandb
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from protocol.version import PROTOCOL_VERSION
from template.chain.neuron_chain import ChainRead
from template.chain.round_clock import round_at
from template.config import open_neuron_run, parse_config
from template.net.monitoring import Monitoring, install_monitoring
from template.net.server import BackgroundServer
from template.utils.ports import free_port
from template.utils.versions import CODE_VERSION, versions
from template.validator.checkpoint_app import create_checkpoint_app
from template.validator.lifecycle import Validator
from tests.test_validator_round import LEAD, MINERS, NETUID, SECTIONS, FakeChain, InProcessMiners, graph, \
    miner_workers, workload  # noqa: F401 (workload is a fixture)


class ReadingChain(FakeChain):
    """The stand-in chain, remembering its last successful read as NeuronChain does."""
    last_read: ChainRead | None = None

    async def block(self) -> int:
        block = await super().block()
        self.last_read = ChainRead(block, time.time())
        return block


def wandb_records(path: Path):
    """The protobuf records of an offline run's .wandb file (a LevelDB-style log of 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pending = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def history(run_dir: Path) -> list[dict]:
    rows = []
    for record in wandb_records(next(run_dir.glob("*.wandb"))):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def run_config(run_dir: Path) -> dict:
    for record in wandb_records(next(run_dir.glob("*.wandb"))):
        if record.WhichOneof("record_type") == "run":
            return {item.key: json.loads(item.value_json) for item in record.run.config.update}
    raise AssertionError("no run record")


def start_validator(folder: Path, workload, ledger: dict, bodies: dict):  # noqa: F811
    """What run_validator does at start: the config, the wandb run from the folder, monitoring."""
    config = parse_config(["--netuid", str(NETUID), "--subtensor.network", "sim", "--neuron.state_dir", str(folder),
                           "--validator.lead", "self", "--neuron.device", "cpu", "--wandb.offline",
                           "--round.heldout_pages", "32", "--round.control_pages", "24", "--round.global_eval_pages", "32",
                           "--wandb.notes", "dashboard test"], SECTIONS, "test")
    chain = ReadingChain(LEAD.ss58_address, graph(), ledger)
    monitoring = Monitoring("validator", lambda: chain.last_read, config.neuron.health_chain_stale_s, versions())
    run = open_neuron_run(config, "validator", 0, folder)
    validator = Validator(config, chain, workload, folder, run, miners=InProcessMiners({}, bodies),
                          monitoring=monitoring)
    validator.base_url = "http://lead.invalid"
    validator.ensure_checkpoint()
    base = validator.state.checkpoint
    validator.miners.workers = miner_workers(folder.parent / f"miners-{time.monotonic_ns()}", workload,
                                             validator.checkpoints.load(base), base)
    return validator, monitoring


def test_a_restarted_validator_resumes_its_wandb_run_and_reports_weights_and_health(tmp_path, workload):  # noqa: F811
    folder, ledger, bodies = tmp_path / "validator", {"block": 0, "commits": {}, "weights": []}, {}
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO", format="{message}")
    try:
        first, _ = start_validator(folder, workload, ledger, bodies)
        window1 = round_at(60, round_blocks=60, train_blocks=40)
        asyncio.run(first.run_round(window1))
        first.run.finish()

        ledger["block"] = 120  # restarted a round later, from the same folder
        second, monitoring = start_validator(folder, workload, ledger, bodies)
        assert second.state.last_round == window1.index  # the state was resumed
        assert monitoring.last_round.index == window1.index and monitoring.last_round.at_unix is None
        window2 = round_at(120, round_blocks=60, train_blocks=40)
        asyncio.run(second.run_round(window2))
        second.run.finish()
    finally:
        logger.remove(sink)
    wandb.teardown()  # the wandb service writes the run's file to its end before it exits

    # One run, resumed: the same id in both offline run folders, and the history goes on.
    run_id = (folder / "wandb" / "run_id").read_text().strip()
    runs = sorted((folder / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{run_id}") for r in runs)
    before, after = history(runs[0]), history(runs[1])
    assert [row["_step"] for row in before] == [window1.index]
    assert [row["_step"] for row in after] == [window2.index]
    assert run_config(runs[1])["protocol_version"] == PROTOCOL_VERSION
    assert run_config(runs[1])["code_version"] == CODE_VERSION

    # The weight vector set on chain is in the row and in one log line.
    _, set_weights = ledger["weights"][-1]
    row = after[-1]
    logged = {int(key.split("uid")[1]): value for key, value in row.items() if key.startswith("weights/uid")}
    assert logged == pytest.approx(set_weights) and sum(logged.values()) == pytest.approx(1.0)
    assert row["weights_block"] == second.state.last_weights_block and row["weights_submitted"] == 1
    weight_lines = [line for line in lines if line.startswith("weights set on chain at block")]
    assert len(weight_lines) == 2
    assert all(f"uid {uid} {value:.4f}" in weight_lines[-1] for uid, value in set_weights.items())

    # Each uid's score decomposition: the zero miner fails non_empty, the honest ones pass it
    # with a significant gain, a norm ratio and an assignment z.
    zero_uid = next(n.uid for n in graph().neurons if n.hotkey == MINERS["zero"].ss58_address)
    honest_uids = [n.uid for n in graph().neurons if n.hotkey in {MINERS["honest-a"].ss58_address,
                                                                   MINERS["honest-b"].ss58_address}]
    assert row[f"check/non_empty/uid{zero_uid}"] == 0 and row[f"score/uid{zero_uid}"] == 0
    for uid in honest_uids:
        assert row[f"check/non_empty/uid{uid}"] == 1
        assert {f"gain/uid{uid}", f"gain_z/uid{uid}", f"norm_ratio/uid{uid}", f"assignment_z/uid{uid}"} <= set(row)
    assert {"round_seconds/scoring", "round_seconds/plan", "chain_block"} <= set(row)

    # /health and /metrics on the validator's HTTP server.
    app = install_monitoring(create_checkpoint_app(second.checkpoint_dir, second.latest_info), monitoring)
    port = free_port()
    server = BackgroundServer(app, "127.0.0.1", port).start()
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        server.stop()
    assert health.status_code == 200
    body = health.json()
    assert body["chain"]["connected"] is True and body["chain"]["last_block"] >= window2.deadline_block
    assert body["last_round"]["index"] == window2.index and body["last_round"]["at_unix"] > 0
    assert body["last_weights_block"] == second.state.last_weights_block > 0
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    weights = {s.labels["uid"]: s.value for s in families["deai_validator_weight"].samples}
    assert {int(uid): value for uid, value in weights.items()} == pytest.approx(set_weights)
    assert families["deai_validator_rounds"].samples[0].value == 1  # settled by this process
    assert families["deai_last_weights_block"].samples[0].value == second.state.last_weights_block
    assert {s.labels["phase"] for s in families["deai_validator_round_seconds"].samples} >= {"scoring", "total"}
