"""Delta-LoRA's configuration: LoRA's rank and scale plus the update ratio λ and warm-up K."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError

CONFIG_NAME = "delta_lora_config.json"
PEFT_TYPE = "DELTA_LORA"


@dataclass
class DeltaLoraConfig:
    """What a Delta-LoRA adapter is: which layers, LoRA rank and scale, λ and K."""

    target_modules: list[str] | str = field(default_factory=list)
    r: int = 16
    lora_alpha: float = 32.0
    update_ratio: float = 0.5  # λ: the paper's update ratio
    warmup_steps: int = 50  # K: steps of plain LoRA before W starts moving
    modules_to_save: list[str] = field(default_factory=list)  # heads trained in full

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise UserError(f"invalid delta_lora config: r={self.r!r} must be an integer >= 1")
        for key in ("lora_alpha", "update_ratio"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise UserError(f"invalid delta_lora config: {key}={value!r} is not a number")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise UserError(f"invalid delta_lora config: warmup_steps={self.warmup_steps!r} "
                            "must be an integer >= 0")
        if not self.target_modules:
            raise UserError("invalid delta_lora config: target_modules is empty")

    @property
    def scaling(self) -> float:
        """LoRA's α/r: the LoRA path is ``scaling · B·A``."""
        return float(self.lora_alpha) / self.r

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> DeltaLoraConfig:
        """Build from config fields, naming an unknown field or a forbidden dropout."""
        known = {f.name for f in dataclasses.fields(cls)}
        dropout = fields.pop("lora_dropout", 0.0)
        if dropout not in (0, 0.0, None):
            raise UserError("invalid delta_lora config: Delta-LoRA uses no dropout on the "
                            "LoRA path (lora_dropout must be 0)")
        for key in fields:
            if key not in known:
                raise UserError(f"unknown delta_lora config field '{key}' "
                                f"(fields: {', '.join(sorted(known))})")
        return cls(**fields)

    def save(self, directory: Path) -> None:
        """Write ``delta_lora_config.json`` (with a ``peft_type`` marker, like PEFT's)."""
        data = {"peft_type": PEFT_TYPE, **dataclasses.asdict(self)}
        (directory / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> DeltaLoraConfig:
        """Read the config saved by `save`."""
        path = directory / CONFIG_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the Delta-LoRA config {path}: {exc}") from None
        data.pop("peft_type", None)
        return cls.from_fields(data)
