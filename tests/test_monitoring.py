"""/health and /metrics on a neuron's HTTP server, and the miner's row per round."""
from __future__ import annotations

import time

import httpx
import pytest
import torch
from bittensor.sp_core import Keypair
from prometheus_client.parser import text_string_to_metric_families

from protocol.auth import RequestVerifier, sign_request
from protocol.messages import InfoResponse, TrainRequest
from template.chain.neuron_chain import ChainRead
from template.miner.app import create_miner_app
from template.miner.reveal import RevealClock
from template.miner.round_log import MAX_IDLE_ROWS, MinerMetrics, RoundLog
from template.miner.worker import MinerWorker
from template.net.monitoring import Monitoring, install_monitoring
from template.net.server import BackgroundServer
from template.utils.ports import free_port
from template.utils.versions import versions
from template.validation.scoring import CheckOutcome, ScoreReport
from template.validator.reporting import ValidatorMetrics, WeightsSet, report_metrics, weights_line
from tests.test_protocol import MINER, VALIDATOR, train_request

STRANGER = Keypair.create_from_uri("//NotAValidator")


class Chain:
    """What /health reads: the last successful chain read."""
    read: ChainRead | None = None


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(found: dict, name: str, **labels) -> float:
    family = next(f for f in found.values() if any(s.name == name for s in f.samples))
    return next(s.value for s in family.samples if s.name == name and all(s.labels.get(k) == v
                                                                           for k, v in labels.items()))


def test_health_is_200_while_the_chain_answers_and_503_once_it_went_quiet():
    chain = Chain()
    monitoring = Monitoring("miner", lambda: chain.read, stale_after_s=60, versions=versions())
    status, body = monitoring.health()
    assert status == 503 and body["chain"] == {"connected": False, "last_block": None, "seconds_since_read": None,
                                               "stale_after_s": 60}
    chain.read = ChainRead(1234, time.time() - 2)
    monitoring.round_done(41)
    status, body = monitoring.health()
    assert status == 200 and body["status"] == "ok"
    assert body["chain"]["last_block"] == 1234 and 2 <= body["chain"]["seconds_since_read"] < 60
    assert body["last_round"]["index"] == 41 and body["last_weights_block"] is None
    assert body["role"] == "miner" and body["code_version"] == versions()["code_version"]
    chain.read = ChainRead(1234, time.time() - 61)
    assert monitoring.health()[0] == 503


@pytest.fixture()
def miner(tmp_path):
    """A miner's real HTTP app with monitoring installed; its round log starts at round 3."""
    chain = Chain()
    chain.read = ChainRead(300, time.time())
    monitoring = Monitoring("miner", lambda: chain.read, stale_after_s=60, versions=versions())
    log = RoundLog(3, "honest", metrics=MinerMetrics(monitoring))
    worker = MinerWorker(MINER, workload=None, behaviour="honest", state_dir=tmp_path, copy_from_dir=None,
                         device=torch.device("cpu"), round_log=log)
    verifier = RequestVerifier(MINER.ss58_address, lambda hk: None if hk == VALIDATOR.ss58_address else "no permit")

    async def check_assignment(order: TrainRequest, sender: str) -> str | None:
        return None if order.pages == [1, 2, 3] else "pages do not match the public assignment"

    async def genesis() -> int:
        return 0

    info = InfoResponse(hotkey=MINER.ss58_address, version="3.0", device="cpu", capacity_gb=1.0, model_preset="tiny")
    app = create_miner_app(worker, verifier, 7, check_assignment, info, RevealClock(genesis, 100, 40))
    port = free_port()
    server = BackgroundServer(install_monitoring(app, monitoring), "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", log
    server.stop()


def post_train(url: str, order: TrainRequest, signer=VALIDATOR) -> httpx.Response:
    body = order.model_dump_json().encode()
    headers = sign_request(signer, method="POST", path="/v1/train", body=body, receiver_ss58=MINER.ss58_address)
    return httpx.post(url + "/v1/train", content=body, headers=headers, timeout=10)


def test_metrics_parse_and_count_requests_by_route_and_status(miner):
    url, _ = miner
    assert post_train(url, train_request()).status_code == 202
    assert post_train(url, train_request(round_index=4, pages=[9])).status_code == 409
    assert post_train(url, train_request(), signer=STRANGER).status_code == 403
    assert httpx.get(url + "/v1/nothing-here/12345", timeout=10).status_code == 404
    assert httpx.get(url + "/health", timeout=10).json()["chain"]["last_block"] == 300
    found = families(httpx.get(url + "/metrics", timeout=10).text)
    assert sample(found, "deai_http_requests_total", route="/v1/train", status="202") == 1
    assert sample(found, "deai_http_requests_total", route="/v1/train", status="409") == 1
    assert sample(found, "deai_http_requests_total", route="/v1/train", status="403") == 1
    assert sample(found, "deai_http_requests_total", route="unmatched", status="404") == 1  # no raw paths
    assert sample(found, "deai_http_requests_total", route="/health", status="200") == 1
    assert sample(found, "deai_miner_orders_refused_total", status="409") == 1
    assert sample(found, "deai_miner_orders_accepted_total") == 1
    assert sample(found, "deai_chain_block") == 300 and sample(found, "deai_healthy") == 1
    assert sample(found, "process_resident_memory_bytes") > 10e6
    assert found["deai_build_info"].samples[0].labels["role"] == "miner"


def test_a_miner_logs_one_row_per_round_with_the_orders_it_refused(miner):
    url, log = miner
    post_train(url, train_request(round_index=3))
    post_train(url, train_request(round_index=3, pages=[9]))  # someone else's pages
    post_train(url, train_request(round_index=10**6), signer=STRANGER)  # no permit; a far-off round
    log.made(3, "zero")
    log.committed(3, 1234)
    rows = log.close_before(6)
    assert [row.round for row in rows] == [3, 4, 5]
    assert [row.outcome for row in rows] == ["zero", "idle", "idle"]
    row = rows[0]
    assert row.orders_accepted == 1 and row.refused == {"409": 1, "403": 1}
    assert row.last_refusal.startswith("403 ") and row.committed and row.contribution_bytes == 1234
    assert row.metrics()["orders_refused/409"] == 1 and row.metrics()["committed"] == 1
    assert log.close_before(6) == []  # each round once


def test_after_a_long_gap_a_miner_logs_a_bounded_number_of_idle_rows():
    log = RoundLog(0, "honest")
    rows = log.close_before(10_000)
    assert len(rows) == MAX_IDLE_ROWS and rows[-1].round == 9_999


def report(uid: int, score: float, failed: str | None = None) -> ScoreReport:
    checks = [CheckOutcome("finite", True, "ok"), CheckOutcome("non_empty", failed is None, "ok")]
    return ScoreReport(hotkey=f"hk{uid}", uid=uid, arrival_index=uid, checks=checks, score=score,
                       accepted=failed is None, norm=2.0, median_norm=1.0)


def test_validator_metrics_keep_only_the_last_rounds_uids():
    chain = Chain()
    monitoring = Monitoring("validator", lambda: chain.read, stale_after_s=60, versions=versions())
    metrics = ValidatorMetrics(monitoring)
    metrics.observe_round(1, {"a": report(2, 0.1), "b": report(3, 0.0, "non_empty")}, 5.0, {"scoring": 3.0}, 9.0,
                          lambda hk: 0.5, None)
    metrics.observe_round(2, {"c": report(4, 0.2)}, 4.9, {"scoring": 2.0}, 8.0, lambda hk: 0.4, True)
    metrics.observe_weights(WeightsSet(250, {4: 1.0}, 100))
    found = families(monitoring.metrics_text().decode())
    assert {s.labels["uid"] for s in found["deai_validator_score"].samples} == {"4"}
    assert sample(found, "deai_validator_check_failures_total", check="non_empty") == 1
    assert sample(found, "deai_validator_round_seconds", phase="total") == 8.0
    assert sample(found, "deai_validator_lead_verified") == 1 and sample(found, "deai_last_weights_block") == 250
    assert sample(found, "deai_last_round") == 2


def test_the_score_decomposition_and_weights_line():
    row = report_metrics({"a": report(2, 0.1), "b": report(3, 0.0, "non_empty")})
    assert row["check/non_empty/uid3"] == 0 and row["check/finite/uid3"] == 1 and row["norm_ratio/uid2"] == 2.0
    line = weights_line(WeightsSet(77, {2: 0.25, 5: 0.75}, 100))
    assert line == "weights set on chain at block 77 (version key 100): 2 uids: uid 5 0.7500, uid 2 0.2500"
    assert weights_line(WeightsSet(77, {2: 1.0}, 100, submitted=False)).startswith("weights NOT set")
