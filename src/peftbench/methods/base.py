"""What the engine needs from a technique: build the adapted model, its optimizer, its hooks.

A `Method` is one entry of the catalog. The training loop calls, in order:
``build`` (wrap the base model), ``make_optimizer``, ``after_step`` after every optimizer step
(a no-op for most techniques; Delta-LoRA updates frozen weights there), and ``save`` at the end.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from peftbench.errors import UserError

ModelKind = Literal["causal-lm", "seq-cls"]

#: attention projections by model family: the default targets, the same for every technique
ATTENTION_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value"]


@dataclass
class Method:
    """A technique: its name, default PEFT config fields and default learning rate."""

    name: str
    peft_type: str | None  # PEFT's PeftType value; None for techniques outside PEFT
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    default_lr: float = 2e-4
    lr_source: str = ""
    targets_modules: bool = True  # False for prompt-based techniques

    def peft_config(
        self, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> Any:
        """The PEFT config for this technique with ``overrides`` applied on the defaults."""
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

        cls = PEFT_TYPE_TO_CONFIG_MAPPING[self.peft_type]
        fields = copy.deepcopy(self.defaults)
        if self.targets_modules and "target_modules" not in overrides:
            fields["target_modules"] = resolve_targets(targets)
        fields.update(_strip_meta(overrides))
        fields["task_type"] = "CAUSAL_LM" if kind == "causal-lm" else "SEQ_CLS"
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise UserError(f"invalid {self.name} config: {exc}") from None

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> nn.Module:
        """Wrap ``model`` with this technique; only the adapter's parameters stay trainable."""
        from peft import get_peft_model

        config = self.peft_config(kind, targets, overrides)
        try:
            return get_peft_model(model, config)
        except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
            raise UserError(f"{self.name} cannot be applied to this model: {exc}") from None

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters (overridden by optimizer-based techniques)."""
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step; a no-op unless the technique needs it."""

    def save(self, model: nn.Module, directory: Path) -> None:
        """Save the trained adapter (what a user would ship) to ``directory``."""
        model.save_pretrained(str(directory))

    def can_merge(self, model: nn.Module) -> bool:
        """Whether the trained adapter can be folded into the base weights."""
        return hasattr(model, "merge_and_unload") and self.targets_modules


def resolve_targets(targets: str | None) -> list[str] | str:
    """Target modules: attention projections by default, ``all-linear`` to widen, or a list."""
    if targets is None or targets == "attention":
        return list(ATTENTION_TARGETS)
    if targets == "all-linear":
        return "all-linear"
    return [t.strip() for t in targets.split(",") if t.strip()]


def _strip_meta(overrides: dict[str, Any]) -> dict[str, Any]:
    """Drop fields of a saved adapter_config.json that describe, rather than configure, it."""
    skip = {"peft_type", "task_type", "base_model_name_or_path", "revision", "auto_mapping",
            "inference_mode", "peft_version"}
    return {k: v for k, v in overrides.items() if k not in skip}
