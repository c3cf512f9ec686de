"""A follower fetches the lead's latest checkpoint over HTTP, checked against its announced hash."""
from __future__ import annotations

import asyncio

import pytest
import torch

from protocol.messages import CheckpointInfo
from template.validator.checkpoint_app import create_checkpoint_app
from template.net.checkpoint_client import CheckpointFetchError, fetch_latest_checkpoint, probe_latest
from template.net.server import BackgroundServer
from template.training.checkpoint import save_checkpoint, state_hash
from template.utils.ports import free_port

STATE = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}


@pytest.fixture()
def lead(tmp_path):
    announced = {"sha": state_hash(STATE)}
    save_checkpoint(tmp_path / f"{announced['sha']}.safetensors", STATE)

    def latest():
        path = tmp_path / f"{announced['sha']}.safetensors"  # the download may be no larger than announced
        return CheckpointInfo(round_index=4, sha256=announced["sha"], size_bytes=path.stat().st_size if path.exists()
                              else 1, model_preset="tiny", vocab_size=3)

    port = free_port()
    server = BackgroundServer(create_checkpoint_app(tmp_path, latest), "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", announced, tmp_path
    server.stop()


def test_fetches_a_new_checkpoint_and_skips_the_one_held(lead):
    url, announced, _ = lead
    info, state = asyncio.run(fetch_latest_checkpoint(url, held="00" * 32))
    assert info.round_index == 4 and state_hash(state) == announced["sha"]
    assert all(torch.equal(state[k], STATE[k]) for k in STATE)
    info, state = asyncio.run(fetch_latest_checkpoint(url, held=announced["sha"]))
    assert state is None and info.sha256 == announced["sha"]


def test_refuses_a_checkpoint_that_is_not_the_announced_one_or_missing(lead):
    url, announced, folder = lead
    other = {"w": torch.zeros(2, 3), "b": torch.ones(3)}
    save_checkpoint(folder / f"{announced['sha']}.safetensors", other)  # served bytes hash differently
    with pytest.raises(CheckpointFetchError, match="does not match its announced hash"):
        asyncio.run(fetch_latest_checkpoint(url, held=""))
    announced["sha"] = "ab" * 32  # announced, never stored
    with pytest.raises(CheckpointFetchError, match="answered 404"):
        asyncio.run(fetch_latest_checkpoint(url, held=""))


def test_probe_reads_the_announcement_and_treats_silence_or_nonsense_as_no_answer(lead, tmp_path_factory):
    url, announced, _ = lead
    info = asyncio.run(probe_latest(url, timeout=5.0))
    assert info is not None and info.round_index == 4 and info.sha256 == announced["sha"]
    assert asyncio.run(probe_latest(f"http://127.0.0.1:{free_port()}", timeout=2.0)) is None
    port = free_port()  # a validator with nothing to announce yet answers 404
    empty = BackgroundServer(create_checkpoint_app(tmp_path_factory.mktemp("empty"), lambda: None),
                             "127.0.0.1", port).start()
    try:
        assert asyncio.run(probe_latest(f"http://127.0.0.1:{port}", timeout=5.0)) is None
    finally:
        empty.stop()
