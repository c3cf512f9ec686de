"""What a miner carries from round to round on disk, so a restart (or kill -9) loses none of it:
the AdamW moments of the unit it trains, the error-feedback residual of each unit, and the work
orders it has accepted but not finished. Every file is written atomically; a file that does not
read back is refused with an error naming it, and the miner goes on without it."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from loguru import logger
from pydantic import ValidationError

from protocol.messages import TrainRequest
from template.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from template.utils.files import write_text_atomically

Moments = tuple[str, dict | None]  # (unit label, AdamW state dict)


class CarryOver:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.orders_dir = state_dir / "orders"
        self.orders_dir.mkdir(parents=True, exist_ok=True)

    # --- error feedback ------------------------------------------------------------------
    def residual_path(self, unit_label: str) -> Path:
        return self.state_dir / f"residual-{unit_label.replace('/', 'of')}.safetensors"

    def residual(self, unit_label: str) -> dict[str, torch.Tensor] | None:
        return self._read_tensors(self.residual_path(unit_label))

    def save_residual(self, unit_label: str, residual: dict[str, torch.Tensor]) -> None:
        save_checkpoint(self.residual_path(unit_label), residual)

    # --- AdamW moments -------------------------------------------------------------------
    @property
    def moments_path(self) -> Path:
        return self.state_dir / "adamw-moments.safetensors"

    def save_moments(self, moments: Moments) -> None:
        label, state = moments
        if state is None:
            self.moments_path.unlink(missing_ok=True)
            return
        tensors = {f"{index}/{key}": value for index, slots in state["state"].items()
                   for key, value in slots.items() if isinstance(value, torch.Tensor)}
        groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
        save_checkpoint(self.moments_path, tensors)
        write_text_atomically(self.moments_path.with_suffix(".json"), json.dumps({"unit": label, "param_groups": groups}))

    def moments(self) -> Moments:
        tensors = self._read_tensors(self.moments_path)
        meta_path = self.moments_path.with_suffix(".json")
        if tensors is None or not meta_path.exists():
            return "", None
        try:
            meta = json.loads(meta_path.read_text())
            state: dict[int, dict] = {}
            for name, value in tensors.items():
                index, key = name.split("/", 1)
                state.setdefault(int(index), {})[key] = value
            steps = max((int(slots["step"]) for slots in state.values() if "step" in slots), default=0)
            logger.info("AdamW moments of unit {} carried over from {} (step {})", meta["unit"], self.moments_path,
                        steps)
            return str(meta["unit"]), {"state": state, "param_groups": list(meta["param_groups"])}
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("{} is unreadable ({}); the next round starts with fresh AdamW moments", meta_path, exc)
            return "", None

    # --- accepted work orders ------------------------------------------------------------
    def save_order(self, order: TrainRequest, priority: float) -> None:
        write_text_atomically(self.orders_dir / f"round-{order.round_index}.json",
                          json.dumps({"priority": priority, "order": order.model_dump(mode="json")}))

    def forget_order(self, round_index: int) -> None:
        (self.orders_dir / f"round-{round_index}.json").unlink(missing_ok=True)

    def open_orders(self) -> list[tuple[float, TrainRequest]]:
        """Accepted orders not yet finished, oldest round first."""
        found = []
        for path in sorted(self.orders_dir.glob("round-*.json"), key=lambda p: int(p.stem.split("-")[1])):
            try:
                saved = json.loads(path.read_text())
                found.append((float(saved["priority"]), TrainRequest.model_validate(saved["order"])))
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                logger.error("{} is unreadable ({}); that order is dropped", path, exc)
                path.unlink(missing_ok=True)
        return found

    @staticmethod
    def _read_tensors(path: Path) -> dict[str, torch.Tensor] | None:
        if not path.exists():
            return None
        try:
            return load_checkpoint(path)
        except (CheckpointError, OSError) as exc:
            logger.error("{} is corrupt ({}); set aside, going on without it", path, exc)
            path.replace(path.with_suffix(".corrupt"))
            return None

