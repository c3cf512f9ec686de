"""Crash chaos for the local subnet: kill -9 a neuron at chosen moments of the round and start
it again at once with its state dir, logging each kill (block, round, phase, what was on disk).

The moments are planned from a seed: each kill is armed once the lead has a given number of
round records (spread over the run) and fires at the first moment its phase holds:

* lead   training      the lead sent this round's work and the miners are training
         scoring       past the eval block, the round's record not yet written
         checkpoint    a new checkpoint file has appeared in its store, the record not yet written
         after_record  a round record line was just appended (before the state save that ends the round)
* miner  training      it holds an accepted order for this round and has not finished it
         after_moments its AdamW moments file was just rewritten
         after_contribution  this round's contribution just landed in its outbox

What the victim had on disk when it died (records, whether its contribution was written) is
logged beside the planned phase, so a check reads facts, not intentions.

With truncations asked for, a kill also damages one of the victim's files before the restart, as
a crash mid-write (or a torn write) leaves it: `record_tail` (half a record line appended to
rounds.jsonl), `state` (validator_state.json cut in half), `checkpoint` (the checkpoint its state
names cut in half), `moments` / `residual` (a miner's AdamW moments / error-feedback residual cut
in half). Kinds are used in the order given, each by the next kill of a role it applies to.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from template.chain.round_clock import round_at

LEAD_PHASES = ("training", "scoring", "checkpoint", "after_record")
MINER_PHASES = ("training", "after_moments", "after_contribution")
UP_LINES = {"validator": re.compile(r"validator uid \d+ serving checkpoints at"),
            "miner": re.compile(r"miner uid \d+ \(\w+\) serving on")}
LED = re.compile(r"round (\d+): leading from checkpoint")
POLL_SECONDS = 0.05
MINER_TRAINING_JITTER_SECONDS = 0.25  # per jitter unit of a miner training kill: a capped round trains seconds
TRUNCATIONS = {"record_tail": "validator", "state": "validator", "checkpoint": "validator", "moments": "miner",
               "residual": "miner"}


@dataclass(frozen=True)
class PlannedKill:
    victim: str
    after_records: int  # armed once the lead holds this many round records
    phase: str
    jitter: int  # training: blocks into the training window (lead) or quarter seconds into the order (miner);
    # scoring: blocks past the eval block


def plan_kills(victim: str, role: str, count: int, rounds: int, train_blocks: int, seed: int) -> list[PlannedKill]:
    """`count` kills of `victim` spread over a `rounds`-round run, every phase of its role used
    before any is used twice. None in the last round: the run must be able to end."""
    if count > rounds - 1:
        raise ValueError(f"{count} kills of {victim} do not fit in {rounds} rounds (at most {rounds - 1})")
    rng = random.Random(f"{seed}:{victim}")
    phases_of_role = LEAD_PHASES if role == "validator" else MINER_PHASES
    phases: list[str] = []
    while len(phases) < count:
        cycle = list(phases_of_role)
        rng.shuffle(cycle)
        phases += cycle
    span = rounds - 1  # one slot drawn in each of `count` equal stretches of the run: spread, never two at once
    slots = [rng.randint(i * span // count, (i + 1) * span // count - 1) for i in range(count)]
    kills = []
    for slot, phase in zip(slots, phases):
        if phase == "training":
            jitter = rng.randint(1, max(1, train_blocks // 2)) if role == "validator" else rng.randint(0, 3)
        else:
            jitter = rng.randint(0, 2)
        kills.append(PlannedKill(victim, slot, phase, jitter))
    return kills


def truncate(kind: str, state_dir: Path) -> dict | None:
    """Damage the file `kind` names in `state_dir` as a crash mid-write would; None when there is
    no such file yet."""
    if kind == "record_tail":
        path = state_dir / "rounds.jsonl"
        lines = path.read_bytes().splitlines() if path.exists() else []
        if not lines:
            return None
        with path.open("ab") as handle:
            handle.write(lines[-1][: len(lines[-1]) // 2])
        return {"truncated": kind, "path": str(path), "bytes_appended": len(lines[-1]) // 2}
    if kind == "checkpoint":
        try:
            digest = json.loads((state_dir / "validator_state.json").read_text())["checkpoint"]
        except (OSError, ValueError, KeyError):
            return None
        path = state_dir / "checkpoints" / f"{digest}.safetensors"
    else:
        path = state_dir / {"state": "validator_state.json", "moments": "adamw-moments.safetensors",
                            "residual": "residual-full.safetensors"}[kind]
    if not path.exists() or path.stat().st_size < 2:
        return None
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)
    return {"truncated": kind, "path": str(path), "bytes_before": size, "bytes_after": size // 2}


class LogTail:
    """The text a log file gained since the last read, from a given offset."""

    def __init__(self, path: Path, offset: int = 0):
        self.path, self.offset = path, offset

    def read(self) -> str:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return ""
        cut = data.rfind(b"\n") + 1  # whole lines only
        self.offset += cut
        return data[:cut].decode(errors="replace")


@dataclass
class Victim:
    neuron: object  # scripts.run_local_subnet.Neuron
    role: str  # validator | miner
    log: Path
    restart: Callable[[object], None]
    kills: list[PlannedKill]
    up: bool = False
    tail: LogTail | None = None
    led: set[int] = field(default_factory=set)  # rounds this incarnation led (lead)
    armed_at: dict = field(default_factory=dict)  # what the armed kill compares against

    def __post_init__(self):
        self.tail = LogTail(self.log)


class LeadRecords:
    """The lead's round records as they grow: count and round indices (read when the file grows)."""

    def __init__(self, path: Path):
        self.path, self.size, self.rounds = path, -1, []

    def refresh(self) -> list[int]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return self.rounds
        if size != self.size:
            self.size = size
            rounds = []
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    rounds.append(int(json.loads(line)["round_index"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line being written
            self.rounds = rounds
        return self.rounds

    @property
    def last_round(self) -> int:
        return max(self.rounds, default=-1)


class Crasher:
    def __init__(self, sim_url: str, round_blocks: int, train_blocks: int, rounds: int, preset: str,
                 lead_state_dir: Path, chaos_log: Path, say: Callable[[str], None], truncations: list[str] = ()):
        self.sim_url, self.preset = sim_url.rstrip("/"), preset
        unknown = sorted(set(truncations) - set(TRUNCATIONS))
        if unknown:
            raise ValueError(f"unknown truncation {', '.join(unknown)} (known: {', '.join(TRUNCATIONS)})")
        self.truncations = list(truncations)
        self.round_blocks, self.train_blocks, self.rounds = round_blocks, train_blocks, rounds
        self.records = LeadRecords(lead_state_dir / "rounds.jsonl")
        self.chaos_log, self.say = chaos_log, say
        self.victims: list[Victim] = []
        self.block, self._block_read = 0, 0.0
        self.http = httpx.Client(timeout=2.0)

    @property
    def planned(self) -> int:
        return sum(len(v.kills) for v in self.victims)

    def add(self, victim: Victim) -> None:
        if not self.victims:
            self.write({"event": "run", "round_blocks": self.round_blocks, "train_blocks": self.train_blocks,
                        "rounds": self.rounds, "preset": self.preset})
        self.victims.append(victim)
        for kill in victim.kills:
            self.write({"event": "plan", **asdict(kill)})

    def write(self, event: dict) -> None:
        with self.chaos_log.open("a") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, watching for the armed kills' moments on the way."""
        if not self.victims:
            time.sleep(seconds)
            return
        until = time.monotonic() + seconds
        while True:
            self.tick()
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(POLL_SECONDS, left))

    def tick(self) -> None:
        if not self.victims:
            return
        self._read_block()
        self.records.refresh()
        for victim in self.victims:
            self._follow_log(victim)
            if victim.up and victim.kills and self._moment_has_come(victim, victim.kills[0]):
                self._kill(victim, victim.kills.pop(0))

    def _read_block(self) -> None:
        if time.monotonic() - self._block_read < 0.2:
            return
        try:
            self.block = int(self.http.get(f"{self.sim_url}/health").json()["block"])
            self._block_read = time.monotonic()
        except (httpx.HTTPError, ValueError, KeyError):
            pass

    def _follow_log(self, victim: Victim) -> None:
        text = victim.tail.read()
        if not text:
            return
        if not victim.up and UP_LINES[victim.role].search(text):
            victim.up = True
            self._read_block()
            self.write({"event": "up", "name": victim.neuron.name, "role": victim.role, "block": self.block})
        victim.led.update(int(r) for r in LED.findall(text))

    # --- the moments ---------------------------------------------------------------------
    def _moment_has_come(self, victim: Victim, kill: PlannedKill) -> bool:
        if len(self.records.rounds) < kill.after_records or len(self.records.rounds) >= self.rounds - 1:
            victim.armed_at.clear()
            return False
        window = round_at(self.block, self.round_blocks, self.train_blocks)
        armed = victim.armed_at
        if armed.get("round") != window.index:  # what this round is compared against
            armed.clear()
            armed.update(round=window.index, records=len(self.records.rounds), **self._disk_facts(victim, window))
        if victim.role == "validator":
            return self._lead_moment(victim, kill, window, armed)
        return self._miner_moment(victim, kill, window, armed)

    def _lead_moment(self, victim: Victim, kill: PlannedKill, window, armed: dict) -> bool:
        open_round = window.index in victim.led and self.records.last_round < window.index
        if kill.phase == "training":
            return open_round and window.start_block + kill.jitter <= self.block < window.deadline_block
        if kill.phase == "scoring":
            return open_round and self.block >= window.eval_block + kill.jitter
        if kill.phase == "checkpoint":  # only a file that appears after the eval block is this round's
            files = self._checkpoint_files(victim)
            if self.block < window.eval_block:
                armed["checkpoints"] = files
                return False
            armed["new_checkpoint_files"] = sorted(files - armed["checkpoints"])
            return open_round and bool(armed["new_checkpoint_files"])
        return len(self.records.rounds) > armed["records"]  # after_record

    def _miner_moment(self, victim: Victim, kill: PlannedKill, window, armed: dict) -> bool:
        facts = self._disk_facts(victim, window)
        if kill.phase == "training":
            if facts["order_open"] and not facts["contribution_written"]:
                armed.setdefault("order_seen", time.monotonic())
                return time.monotonic() - armed["order_seen"] >= kill.jitter * MINER_TRAINING_JITTER_SECONDS
            return False
        if kill.phase == "after_moments":
            return facts["moments_mtime"] != armed["moments_mtime"]
        return facts["contribution_written"] and not armed["contribution_written"]  # after_contribution

    def _disk_facts(self, victim: Victim, window) -> dict:
        state_dir = victim.neuron.state_dir
        if victim.role == "validator":
            return {"checkpoints": self._checkpoint_files(victim)}
        moments = state_dir / "adamw-moments.safetensors"
        # Rounds overlap: the next round's order arrives at its seed block, before its window opens.
        training = next((k for k in (window.index + 1, window.index)
                         if (state_dir / "orders" / f"round-{k}.json").exists()), window.index)
        return {"order_round": training,
                "order_open": (state_dir / "orders" / f"round-{training}.json").exists(),
                "contribution_written": (state_dir / "outbox" / f"round-{training}.safetensors").exists(),
                "moments_mtime": moments.stat().st_mtime_ns if moments.exists() else None}

    @staticmethod
    def _checkpoint_files(victim: Victim) -> set[str]:
        try:
            return set(os.listdir(victim.neuron.state_dir / "checkpoints"))
        except OSError:
            return set()

    # --- kill -9 and start again ---------------------------------------------------------
    def _kill(self, victim: Victim, kill: PlannedKill) -> None:
        neuron = victim.neuron
        os.killpg(neuron.process.pid, signal.SIGKILL)
        neuron.process.wait()
        self._block_read = 0.0
        self._read_block()
        window = round_at(self.block, self.round_blocks, self.train_blocks)
        records = self.records.refresh()
        facts = {k: v for k, v in self._disk_facts(victim, window).items() if k != "checkpoints"}
        if "new_checkpoint_files" in victim.armed_at:  # what a checkpoint-phase kill saw appear
            facts["new_checkpoint_files"] = victim.armed_at["new_checkpoint_files"]
        victim.tail.read()  # what it logged up to its death
        event = {"event": "kill", "name": neuron.name, "role": victim.role, "phase": kill.phase,
                 "block": self.block, "round": window.index, "records": len(records),
                 "last_recorded_round": max(records, default=-1), "led_round": window.index in victim.led,
                 "log_offset": victim.tail.offset, **facts}
        kind = next((k for k in self.truncations if TRUNCATIONS[k] == victim.role), None)
        damage = truncate(kind, neuron.state_dir) if kind else None
        if damage:
            self.truncations.remove(kind)
            event.update(damage)
        self.write(event)
        self.say(f"chaos: kill -9 {neuron.name} at block {self.block} (round {window.index}, phase {kill.phase}, "
                 f"{len(records)} records){f', {kind} truncated' if damage else ''}; starting it again")
        victim.up, victim.led = False, set()
        victim.armed_at.clear()
        victim.restart(neuron)

    def close(self) -> None:
        for victim in self.victims:
            for kill in victim.kills:
                self.write({"event": "not_done", **asdict(kill)})
        self.http.close()
