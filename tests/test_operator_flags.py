"""The flags an operator of a Bittensor subnet expects, with the subnet template's names and
meanings: the network, an endpoint override on any network, the published address, logging,
wandb, per-neuron folders that record their netuid."""
from __future__ import annotations

import json

import pytest

from template.chain.client import DEFAULT_SIM_ENDPOINT, is_local_chain, open_client
from template.config import build_parser, log_level, neuron_folder, parse_config
from template.net.addresses import published_ip
from template.utils.neuron_folder import FolderMismatch, claim_folder
from template.utils.wandb_run import run_id_for, wandb_logged_in, wandb_mode

MINER = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "round", "miner"]
VALIDATOR = ["subtensor", "wallet", "axon", "logging", "wandb", "neuron", "data", "round", "recipe", "validator"]
PUBLIC_IP = "203.0.113.7"  # documentation range (RFC 5737)


def miner(*flags: str):
    return parse_config(list(flags), MINER, "test")


def refusal(*flags: str) -> str:
    with pytest.raises(SystemExit) as exc:
        miner(*flags)
    return str(exc.value)


def test_the_network_defaults_to_finney_as_in_the_template():
    config = miner("--axon.external_ip", PUBLIC_IP)
    assert config.subtensor.network == "finney" and config.subtensor.chain_endpoint == ""
    assert open_client("finney").endpoint.startswith("wss://")


@pytest.mark.parametrize("network", ["finney", "test", "local"])
def test_the_chain_endpoint_overrides_the_endpoint_of_any_network(network):
    config = miner("--subtensor.network", network, "--subtensor.chain_endpoint", "ws://198.51.100.4:9944",
                   "--axon.external_ip", PUBLIC_IP)
    client = open_client(config.subtensor.network, config.subtensor.chain_endpoint)
    assert client.endpoint == "ws://198.51.100.4:9944"


def test_the_chain_endpoint_points_sim_at_another_simnet():
    assert open_client("sim")._substrate.url.rstrip("/") == DEFAULT_SIM_ENDPOINT
    assert open_client("sim", "http://127.0.0.1:4321")._substrate.url.rstrip("/") == "http://127.0.0.1:4321"


def test_an_endpoint_of_the_wrong_kind_or_an_unknown_network_is_refused():
    assert "WebSocket" in refusal("--subtensor.network", "finney", "--subtensor.chain_endpoint", "http://x:9944",
                                  "--axon.external_ip", PUBLIC_IP)
    assert "simnet speaks HTTP" in refusal("--subtensor.network", "sim", "--subtensor.chain_endpoint", "ws://x:1")
    assert "expected sim" in refusal("--subtensor.network", "mainnet", "--axon.external_ip", PUBLIC_IP)


def test_a_wildcard_bind_on_a_real_network_refuses_to_publish_loopback():
    message = refusal("--subtensor.network", "finney")
    assert "--axon.external_ip" in message and "127.0.0.1" in message and "no validator can reach" in message
    assert "loopback" in refusal("--subtensor.network", "test", "--axon.external_ip", "127.0.0.1")
    assert "not an IP address" in refusal("--axon.external_ip", "my.host.example")


def test_an_external_ip_is_what_a_real_network_gets():
    config = miner("--subtensor.network", "finney", "--axon.external_ip", PUBLIC_IP, "--axon.external_port", "443")
    assert published_ip(config.axon.ip, config.axon.external_ip) == PUBLIC_IP


@pytest.mark.parametrize("network,endpoint", [("sim", ""), ("local", ""), ("finney", "ws://127.0.0.1:9944"),
                                              ("sim", "http://localhost:9946")])
def test_a_chain_on_this_machine_gets_loopback_for_a_wildcard_bind(network, endpoint):
    config = miner("--subtensor.network", network, "--subtensor.chain_endpoint", endpoint)
    assert is_local_chain(network, endpoint)
    assert published_ip(config.axon.ip, config.axon.external_ip) == "127.0.0.1"


def test_the_help_says_what_is_published():
    text = " ".join(build_parser(MINER, "test").format_help().split())
    assert "0.0.0.0, 127.0.0.1 on a local chain" in text and "refuses to start without it" in text


def test_the_template_flags_parse():
    config = parse_config(["--subtensor.network", "sim", "--logging.trace", "--logging.logging_dir", "/srv/deai",
                           "--wandb.offline", "--wandb.notes", "h100 box", "--wandb.project", "p", "--wandb.entity", "e",
                           "--neuron.disable_set_weights", "--neuron.register", "--neuron.max_burn_tao", "0.5"],
                          VALIDATOR, "test")
    assert log_level(config.logging) == "TRACE" and log_level(miner("--subtensor.network", "sim").logging) == "INFO"
    assert config.wandb.offline and config.wandb.notes == "h100 box" and config.wandb.entity == "e"
    assert config.neuron.disable_set_weights and config.neuron.register and config.neuron.max_burn_tao == 0.5
    assert "must be 0 or more" in refusal("--subtensor.network", "sim", "--neuron.max_burn_tao", "-1")


def test_a_wallet_name_cannot_lead_the_folder_elsewhere():
    assert "a wallet or hotkey name is" in refusal("--subtensor.network", "sim", "--wallet.name", "../../etc")
    assert "a wallet or hotkey name is" in refusal("--subtensor.network", "sim", "--wallet.hotkey", "..")


def test_each_neuron_gets_its_own_folder_as_in_the_template():
    config = miner("--subtensor.network", "sim", "--netuid", "7", "--wallet.name", "cold", "--wallet.hotkey", "hot",
                   "--logging.logging_dir", "/srv/deai")
    assert str(neuron_folder(config, "miner")) == "/srv/deai/cold/hot/netuid7/miner"
    explicit = miner("--subtensor.network", "sim", "--neuron.state_dir", "/data/m0")
    assert str(neuron_folder(explicit, "miner")) == "/data/m0"


def test_a_folder_records_its_netuid_and_refuses_another(tmp_path):
    claim_folder(tmp_path / "n", 7, "miner")
    assert json.loads((tmp_path / "n" / "neuron.json").read_text()) == {"netuid": 7, "role": "miner"}
    assert claim_folder(tmp_path / "n", 7, "miner") == tmp_path / "n"  # a restart takes it back
    with pytest.raises(FolderMismatch, match="netuid 7, not 8"):
        claim_folder(tmp_path / "n", 8, "miner")
    with pytest.raises(FolderMismatch, match="a miner's folder"):
        claim_folder(tmp_path / "n", 7, "validator")


def test_a_folder_from_before_the_record_is_adopted_and_a_damaged_record_refused(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "validator_state.json").write_text("{}")
    claim_folder(tmp_path / "old", 3, "validator")
    assert json.loads((tmp_path / "old" / "neuron.json").read_text())["netuid"] == 3
    (tmp_path / "old" / "neuron.json").write_text("[1, 2")
    with pytest.raises(FolderMismatch, match="unreadable"):
        claim_folder(tmp_path / "old", 3, "validator")


def test_wandb_is_online_whenever_it_is_logged_in(tmp_path):
    netrc = tmp_path / "netrc"
    assert not wandb_logged_in({"NETRC": str(netrc)})
    assert wandb_logged_in({"NETRC": str(netrc), "WANDB_API_KEY": "k" * 40})
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")  # what `wandb login` writes
    assert wandb_logged_in({"NETRC": str(netrc)})
    assert not wandb_logged_in({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.org"})
    assert wandb_mode(offline=False, env={"NETRC": str(netrc)}) == "online"
    assert wandb_mode(offline=True, env={"NETRC": str(netrc)}) == "offline"
    assert wandb_mode(offline=False, env={"NETRC": str(tmp_path / "none")}) == "offline"


def test_a_folder_keeps_one_wandb_run_id(tmp_path):
    first = run_id_for(tmp_path)
    assert run_id_for(tmp_path) == first
    (tmp_path / "run_id").write_text("../../etc\n")  # not an id: replaced
    assert run_id_for(tmp_path) != "../../etc"
