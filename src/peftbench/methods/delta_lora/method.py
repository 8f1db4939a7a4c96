"""The catalog entry of Delta-LoRA: build, the per-step weight update, save and load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.methods.base import Method, ModelKind, resolve_targets

if TYPE_CHECKING:
    from torch import nn

    from peftbench.methods.delta_lora.model import DeltaLoraModel

#: classification heads, trained in full (as PEFT does for sequence classification)
HEADS = ("score", "classifier")


@dataclass
class DeltaLoraMethod(Method):
    """Delta-LoRA, implemented in peftbench (PEFT does not have it)."""

    name: str = "delta_lora"
    peft_type: str | None = None
    description: str = ("Delta-LoRA: LoRA that also moves the frozen weights by λ times the "
                        "change of B·A after a warm-up (Zi et al., 2023); peftbench's own.")
    defaults: dict[str, Any] = field(default_factory=lambda: {
        "r": 16, "lora_alpha": 32, "update_ratio": 0.5, "warmup_steps": 50})
    default_lr: float = 1e-3
    lr_source: str = ("as LoRA: peftbench calibration on SmolLM2-135M/arith (LoRA at r=16 on "
                      "a 135M model)")
    family: str = "peftbench"

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> DeltaLoraModel:
        """Wrap ``model``: LoRA factors on the target layers, heads trainable for classifiers."""
        from peftbench.methods.delta_lora.config import DeltaLoraConfig
        from peftbench.methods.delta_lora.model import DeltaLoraModel

        self.check_applies(kind)
        fields, _ = self.split_overrides(overrides)
        merged = dict(self.defaults)
        merged["target_modules"] = resolve_targets(targets)
        merged.update(fields)
        if kind == "seq-cls" and "modules_to_save" not in fields:
            names = {n for n, _ in model.named_children()}
            merged["modules_to_save"] = [h for h in HEADS if h in names]
        return DeltaLoraModel(model, DeltaLoraConfig.from_fields(merged))

    def after_step(self, model: nn.Module, step: int) -> None:
        """Move the frozen weights by λ times the change of the LoRA product."""
        model.after_step(step)

    def save(self, model: nn.Module, directory: Path) -> None:
        """Save config, A and B, the warm-up factors defining W's change, and trained heads."""
        model.save_pretrained(directory)

    def load(self, model: nn.Module, kind: ModelKind, directory: Path) -> nn.Module:
        """Rebuild the trained model from the fresh base ``model`` and the checkpoint."""
        from peftbench.methods.delta_lora.model import DeltaLoraModel

        return DeltaLoraModel.from_pretrained(model, directory)

    def can_merge(self, model: nn.Module) -> bool:
        """The LoRA path folds into W like LoRA's."""
        return True
