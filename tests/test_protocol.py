"""The wire protocol: btauth/1 signing, the miner's rejections over real HTTP, payload codec."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from template.utils.ports import free_port
import torch
from bittensor.sp_core import Keypair

from protocol.auth import RequestVerifier, matches_commitment, sign_commitment, sign_request, verify_commitment
from protocol.limits import MAX_TRAIN_REQUEST_BYTES
from protocol.messages import InfoResponse, TrainRequest
from protocol.payload import PayloadError, decode_tensors, encode_tensors, read_metadata
from template.net.server import BackgroundServer
from template.miner.app import create_miner_app
from template.miner.reveal import RevealClock
from template.miner.worker import MinerWorker
from template.training.presets import PRESET_SETTINGS

MINER = Keypair.create_from_uri("//MinerUnderTest")
VALIDATOR = Keypair.create_from_uri("//Validator")
STRANGER = Keypair.create_from_uri("//Stranger")
HASH = "ab" * 32


def train_request(**overrides) -> TrainRequest:
    fields = dict(netuid=7, round_index=3, round_block=300, seed=HASH, base_checkpoint=HASH, dataset=HASH,
                  model_preset="tiny", checkpoint_url="http://10.0.0.1:8091/v1/checkpoint/" + HASH,
                  pages=[1, 2, 3], deadline_block=340,
                  recipe=PRESET_SETTINGS["tiny"].recipe.with_overrides(inner_steps=5, batch_size=2, learning_rate=1e-3,
                                                                       warmup_steps=0),
                  deadline_unix=time.time() + 60)
    fields.update(overrides)
    return TrainRequest(**fields)


@pytest.fixture(scope="module")
def miner_url(tmp_path_factory):
    state = tmp_path_factory.mktemp("miner")
    worker = MinerWorker(MINER, workload=None, behaviour="honest", state_dir=state, copy_from_dir=None,
                         device=torch.device("cpu"))
    verifier = RequestVerifier(MINER.ss58_address, lambda hk: None if hk == VALIDATOR.ss58_address
                               else f"{hk} is not a registered validator with a permit on this subnet")

    async def check_assignment(order: TrainRequest, sender: str) -> str | None:
        return None if order.pages == [1, 2, 3] else "pages do not match the public assignment"

    info = InfoResponse(hotkey=MINER.ss58_address, version="1.0", device="cpu", capacity_gb=1.0, model_preset="tiny")
    port = free_port()
    async def genesis() -> int:
        return 0

    reveal = RevealClock(genesis, round_blocks=100, train_blocks=40)
    server = BackgroundServer(create_miner_app(worker, verifier, 7, check_assignment, info, reveal), "127.0.0.1",
                              port).start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def post_train(url: str, body: bytes, signer=VALIDATOR, receiver=MINER.ss58_address, headers=None):
    h = sign_request(signer, method="POST", path="/v1/train", body=body, receiver_ss58=receiver)
    h.update(headers or {})
    return httpx.post(url + "/v1/train", content=body, headers=h)


def test_signed_request_from_permitted_validator_is_accepted(miner_url):
    response = post_train(miner_url, train_request().model_dump_json().encode())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"


def test_same_round_twice_is_not_trained_twice(miner_url):
    body = train_request(round_index=4).model_dump_json().encode()
    assert post_train(miner_url, body).json()["status"] == "accepted"
    assert post_train(miner_url, body).json()["status"] == "already_training"


def test_unsigned_request_is_rejected_with_401(miner_url):
    response = httpx.post(miner_url + "/v1/train", content=train_request().model_dump_json().encode())
    assert response.status_code == 401
    assert "malformed auth" in response.json()["detail"]


def test_replayed_request_is_rejected(miner_url):
    body = train_request(round_index=5).model_dump_json().encode()
    headers = sign_request(VALIDATOR, method="POST", path="/v1/train", body=body, receiver_ss58=MINER.ss58_address)
    assert httpx.post(miner_url + "/v1/train", content=body, headers=headers).status_code == 202
    again = httpx.post(miner_url + "/v1/train", content=body, headers=headers)
    assert again.status_code == 401
    assert "replayed" in again.json()["detail"]


def test_tampered_body_fails_the_signature(miner_url):
    body = train_request().model_dump_json().encode()
    headers = sign_request(VALIDATOR, method="POST", path="/v1/train", body=body, receiver_ss58=MINER.ss58_address)
    tampered = body.replace(b'"inner_steps":5', b'"inner_steps":6')
    response = httpx.post(miner_url + "/v1/train", content=tampered, headers=headers)
    assert response.status_code == 401
    assert "bad signature" in response.json()["detail"]


def test_request_for_another_receiver_is_rejected_with_403(miner_url):
    response = post_train(miner_url, train_request().model_dump_json().encode(), receiver=STRANGER.ss58_address)
    assert response.status_code == 403
    assert "wrong receiver" in response.json()["detail"]


def test_caller_without_permit_is_rejected_with_403(miner_url):
    response = post_train(miner_url, train_request().model_dump_json().encode(), signer=STRANGER)
    assert response.status_code == 403
    assert "not a registered validator" in response.json()["detail"]


def test_oversized_body_is_rejected_with_413(miner_url):
    body = b"{" + b" " * (MAX_TRAIN_REQUEST_BYTES + 10) + b"}"
    assert post_train(miner_url, body).status_code == 413


def test_malformed_json_is_rejected_with_reason(miner_url):
    response = post_train(miner_url, b'{"netuid": "seven"}')
    assert response.status_code == 400
    assert "invalid train request" in response.json()["detail"]


def test_incompatible_protocol_version_is_rejected(miner_url):
    data = json.loads(train_request().model_dump_json())
    data["protocol_version"] = "1.0"  # a peer still speaking the previous major version
    response = post_train(miner_url, json.dumps(data).encode())
    assert response.status_code == 400
    assert "protocol version" in response.json()["detail"]


def test_wrong_subnet_is_rejected(miner_url):
    response = post_train(miner_url, train_request(netuid=8).model_dump_json().encode())
    assert response.status_code == 400
    assert "wrong subnet" in response.json()["detail"]


def test_pages_that_are_not_the_public_assignment_are_refused(miner_url):
    response = post_train(miner_url, train_request(pages=[9, 9, 9]).model_dump_json().encode())
    assert response.status_code == 409


def test_contribution_of_unknown_round_is_404(miner_url):
    path = "/v1/contribution?round=999"
    headers = sign_request(VALIDATOR, method="GET", path=path, body=b"", receiver_ss58=MINER.ss58_address)
    assert httpx.get(miner_url + path, headers=headers).status_code == 404


def test_verifier_rejects_stale_nonce():
    verifier = RequestVerifier(MINER.ss58_address, lambda hk: None, max_age=10.0)
    old = time.time_ns() - 30 * 10**9
    headers = {**sign_request(VALIDATOR, method="GET", path="/x", body=b"", receiver_ss58=MINER.ss58_address)}
    headers_old = dict(headers)
    import bittensor as bt

    headers_old.update(bt.http_auth.sign(VALIDATOR, method="GET", path="/x", body=b"",
                                         receiver_ss58=MINER.ss58_address, nonce_ns=old))
    with pytest.raises(Exception, match="stale"):
        verifier.verify(headers_old, b"", method="GET", path="/x")


def test_a_commitment_binds_the_bytes_to_hotkey_subnet_and_round():
    body = b"contribution bytes"
    commitment = sign_commitment(MINER, 7, 3, body)
    assert verify_commitment(MINER.ss58_address, commitment) and matches_commitment(body, commitment)
    assert not verify_commitment(STRANGER.ss58_address, commitment)
    assert not matches_commitment(body + b"!", commitment)
    for moved in ({"round_index": 4}, {"netuid": 8}, {"size_bytes": len(body) + 1}, {"sha256": "cd" * 32}):
        assert not verify_commitment(MINER.ss58_address, commitment.model_copy(update=moved))


def test_payload_round_trip_keeps_tensors_and_metadata():
    tensors = {"b": torch.arange(6, dtype=torch.int32).reshape(2, 3), "a": torch.randn(4)}
    data = encode_tensors(tensors, {"round_index": 3})
    decoded, meta = decode_tensors(data, max_bytes=10_000)
    assert meta == {"round_index": 3}
    assert torch.equal(decoded["b"], tensors["b"]) and torch.equal(decoded["a"], tensors["a"])
    assert encode_tensors(tensors, {"round_index": 3}) == data  # deterministic bytes


@pytest.mark.parametrize("garbage, reason", [
    (b"", "too short"),
    (b"\xff" * 16, "header length"),
    ((5).to_bytes(8, "little") + b"nope!", "not JSON"),
    ((2).to_bytes(8, "little") + b"[]", "JSON object"),
])
def test_malformed_payloads_are_refused_with_reason(garbage, reason):
    with pytest.raises(PayloadError, match=reason):
        decode_tensors(garbage, max_bytes=10_000)


def test_payload_over_the_limit_is_refused_before_parsing():
    data = encode_tensors({"x": torch.zeros(1000)})
    with pytest.raises(PayloadError, match="exceeds the limit"):
        read_metadata(data, max_bytes=100)
