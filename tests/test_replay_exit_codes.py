"""`python -m template.audit.replay` tells a proven MISMATCH (exit 1) from "cannot check" (exit 2):
a missing or damaged record, base checkpoint or archived contribution is named in one line and
never read as a mismatch."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.limits import MAX_CONTRIBUTION_BYTES
from protocol.payload import decode_tensors, encode_tensors
from template.audit.replay import main
from template.audit.round_record import append_record
from template.training.checkpoint import save_checkpoint
from tests.test_replay import lead_round, recorded, scored_round  # noqa: F401 (fixtures)
from tests.test_units_of_work import VOCAB, base_state, workload  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
REPRODUCED, MISMATCH, CANNOT_CHECK = 0, 1, 2


def write_state_dir(path: Path, record, bodies, base_state) -> Path:  # noqa: F811
    """A validator's state dir holding round 4: its record, base checkpoint and archive."""
    save_checkpoint(path / "checkpoints" / f"{record.base_checkpoint}.safetensors", base_state)
    append_record(path / "rounds.jsonl", record)
    archive = path / "archive" / f"round-{record.round_index}"
    archive.mkdir(parents=True)
    for hotkey in record.accepted:
        (archive / f"{hotkey}.safetensors").write_bytes(bodies[hotkey])
    return path


@pytest.fixture()
def state_dir(tmp_path, lead_round, base_state):  # noqa: F811
    record, bodies = lead_round
    return write_state_dir(tmp_path / "validator", record, bodies, base_state), record


def replay_exit(path: Path, capsys) -> tuple[int, str]:
    """The exit status and the last line printed (stdout for a verdict, stderr otherwise)."""
    status = main(["--state-dir", str(path), "--round", "4", "--vocab-size", str(VOCAB)])
    out, err = capsys.readouterr()
    return status, (err or out).strip().splitlines()[-1]


def base_path(path: Path, record) -> Path:
    return path / "checkpoints" / f"{record.base_checkpoint}.safetensors"


def contribution_path(path: Path, record) -> Path:
    return path / "archive" / "round-4" / f"{record.accepted[0]}.safetensors"


def test_an_intact_round_is_reproduced(state_dir, capsys):
    path, _ = state_dir
    status, line = replay_exit(path, capsys)
    assert status == REPRODUCED and line.endswith("REPRODUCED"), line


def test_a_record_claiming_another_checkpoint_is_a_mismatch(tmp_path, lead_round, base_state, capsys):  # noqa: F811
    record, bodies = lead_round
    forged = dataclasses.replace(record, new_checkpoint="cd" * 32)
    status, line = replay_exit(write_state_dir(tmp_path, forged, bodies, base_state), capsys)
    assert status == MISMATCH and "MISMATCH: replay gives" in line, line


def test_recorded_bytes_that_scoring_would_refuse_are_a_mismatch(tmp_path, lead_round, base_state, capsys):  # noqa: F811
    """The archive holds exactly the bytes the record names, but they are for another round: the
    record itself is wrong, which is proven, not a damaged input."""
    record, bodies = lead_round
    victim = record.accepted[0]
    tensors, meta = decode_tensors(bodies[victim], MAX_CONTRIBUTION_BYTES)
    forged, forged_bodies = recorded(record, bodies, victim, encode_tensors(tensors, dict(meta, round_index=3)))
    status, line = replay_exit(write_state_dir(tmp_path, forged, forged_bodies, base_state), capsys)
    assert status == MISMATCH and "MISMATCH" in line and "round 3 expected 4" in line, line


def test_no_record_file_cannot_be_checked(state_dir, capsys):
    path, _ = state_dir
    (path / "rounds.jsonl").unlink()
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and "rounds.jsonl does not exist" in line, line


def test_a_half_written_record_cannot_be_checked(state_dir, capsys):
    path, _ = state_dir
    records = path / "rounds.jsonl"
    records.write_text(records.read_text()[:200] + "\n")
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and str(records) in line and "line 1" in line, line


MALFORMED = {  # how a record line that still parses as JSON can be wrong
    "accepted is no list": lambda data: data.update(accepted="everyone"),
    "a unit that is no unit": lambda data: data["units"].update({data["accepted"][0]: "width-?/4"}),
    "a recipe that does not validate": lambda data: data["recipe"].update(outer_lr="fast"),
    "a base checkpoint that is no hash": lambda data: data.update(base_checkpoint="../../etc/passwd"),
}


@pytest.mark.parametrize("damage", sorted(MALFORMED))
def test_a_malformed_record_cannot_be_checked(state_dir, capsys, damage):
    path, record = state_dir
    data = json.loads(record.canonical_json())
    MALFORMED[damage](data)
    (path / "rounds.jsonl").write_text(json.dumps(data) + "\n")
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and "rounds.jsonl line 1" in line and "malformed" in line, line


def test_a_missing_base_checkpoint_cannot_be_checked(state_dir, capsys):
    path, record = state_dir
    base_path(path, record).unlink()
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and str(base_path(path, record)) in line and "missing" in line, line


@pytest.mark.parametrize("damage", ["truncated", "other state"])
def test_a_damaged_base_checkpoint_cannot_be_checked(state_dir, capsys, damage, base_state):  # noqa: F811
    path, record = state_dir
    base = base_path(path, record)
    if damage == "truncated":
        base.write_bytes(base.read_bytes()[: base.stat().st_size // 2])
    else:  # well-formed safetensors, but not the state its name (the record's hash) says
        name = next(iter(base_state))
        save_checkpoint(base, dict(base_state, **{name: base_state[name] + 1}))
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and str(base) in line, line


def test_a_missing_archived_contribution_cannot_be_checked(state_dir, capsys):
    path, record = state_dir
    contribution_path(path, record).unlink()
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and str(contribution_path(path, record)) in line and "missing" in line, line


@pytest.mark.parametrize("damage", ["bit flip", "truncated", "empty"])
def test_a_damaged_archived_contribution_cannot_be_checked(state_dir, capsys, damage):
    path, record = state_dir
    body = contribution_path(path, record)
    data = body.read_bytes()
    body.write_bytes({"bit flip": data[:-1] + bytes([data[-1] ^ 1]), "truncated": data[: len(data) // 2],
                      "empty": b""}[damage])
    status, line = replay_exit(path, capsys)
    assert status == CANNOT_CHECK and str(body) in line and "sha256 differs" in line, line


def test_the_command_exits_2_with_one_line_on_a_truncated_base_checkpoint(state_dir):
    path, record = state_dir
    base = base_path(path, record)
    base.write_bytes(base.read_bytes()[:100])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "template.audit.replay", "--state-dir", str(path), "--round", "4",
                           "--vocab-size", str(VOCAB)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == CANNOT_CHECK, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and str(base) in done.stderr, done.stderr
