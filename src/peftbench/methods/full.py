"""Full fine-tuning: every weight trained. The reference point every technique is measured by."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.errors import UserError
from peftbench.methods.base import Method, ModelKind

if TYPE_CHECKING:
    from torch import nn


@dataclass
class FullFineTuning(Method):
    """Train all parameters with AdamW; the checkpoint is the whole model."""

    name: str = "full"
    peft_type: str | None = None
    description: str = "Full fine-tuning: every weight trained; the reference point."
    default_lr: float = 1e-5
    lr_source: str = ("PEFT method comparison (MetaMathQA, Llama-3.2-3B): experiments/"
                      "full-finetuning/llama-3.2-3B-lr_0.00001/training_params.json")
    targets_modules: bool = False
    family: str = "reference"
    trains_base_weights: bool = True
    defaults: dict[str, Any] = field(default_factory=dict)

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> nn.Module:
        """Make every parameter trainable; full fine-tuning has no config fields."""
        fields, _ = self.split_overrides(overrides)
        if fields:
            raise UserError(f"full fine-tuning has no config field '{next(iter(fields))}'")
        for param in model.parameters():
            param.requires_grad_(True)
        return model

    def save(self, model: nn.Module, directory: Path) -> None:
        """Save the whole model (safetensors): that is the checkpoint a user ships."""
        model.save_pretrained(str(directory))

    def load(self, model: nn.Module, kind: ModelKind, directory: Path) -> nn.Module:
        """Load the saved weights into ``model`` (same architecture)."""
        try:
            return type(model).from_pretrained(str(directory), dtype=model.dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the fully fine-tuned model in {directory}: "
                            f"{exc}") from None

    def can_merge(self, model: nn.Module) -> bool:
        """Nothing separate to merge: the weights are the trained model."""
        return False
