"""LoRA with a data-free initialisation from the weight itself: PiSSA and OLoRA.

Both move part of each adapted weight into the adapter at build time, which changes the base
weights. A checkpoint of the trained adapter alone would need that modified base, so `save`
uses PEFT's conversion: the adapter is saved as a plain LoRA of rank 2r that applies to the
original base model (honest size: what a user ships).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.methods.base import Method, ModelKind

if TYPE_CHECKING:
    from torch import nn

INITIAL_ATTR = "peftbench_initial_adapter"


class ResidualInitLora(Method):
    """LoRA whose factors start from the weight's SVD (PiSSA) or QR decomposition (OLoRA)."""

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> nn.Module:
        """Build the adapter and keep its initial state for the conversion at save time."""
        peft_model = super().build(model, kind, targets, overrides)
        folder = tempfile.mkdtemp(prefix="peftbench-initial-")
        weakref.finalize(peft_model, shutil.rmtree, folder, True)
        config = peft_model.peft_config["default"]
        init = config.init_lora_weights
        config.init_lora_weights = True  # the saved initial state must load without re-init
        peft_model.save_pretrained(folder)
        config.init_lora_weights = init
        setattr(peft_model, INITIAL_ATTR, folder)
        return peft_model

    def save(self, model: nn.Module, directory: Path) -> None:
        """Save as a rank-2r LoRA for the original base (PEFT's weight conversion)."""
        model.save_pretrained(str(directory),
                              path_initial_model_for_weight_conversion=getattr(model, INITIAL_ATTR))
        _add_full_modules(model, Path(directory))


def _add_full_modules(model: nn.Module, directory: Path) -> None:
    """Put back the fully trained modules (a classifier head) that PEFT's conversion drops."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    full = {k: v for k, v in get_peft_model_state_dict(model).items() if "lora_" not in k}
    path = directory / "adapter_model.safetensors"
    saved = load_file(str(path))
    missing = {k: v.contiguous() for k, v in full.items() if k not in saved}
    if missing:
        save_file({**saved, **missing}, str(path), metadata={"format": "pt"})
