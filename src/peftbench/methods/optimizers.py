"""Techniques that are LoRA with a different optimizer: LoRA+ and LoRA-FA (PEFT's optimizers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peftbench.methods.base import OPTIONS_ATTR, Method

if TYPE_CHECKING:
    import torch
    from torch import nn


class LoraPlusMethod(Method):
    """LoRA+: the B matrices get ``loraplus_lr_ratio`` times the learning rate of A."""

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """PEFT's LoRA+ AdamW with the ratio from the ``loraplus_lr_ratio`` option."""
        import torch
        from peft.optimizers import create_loraplus_optimizer

        options = getattr(model, OPTIONS_ATTR, self.options)
        return create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=lr, weight_decay=weight_decay,
            loraplus_lr_ratio=float(options["loraplus_lr_ratio"]),
        )


class LoraFaMethod(Method):
    """LoRA-FA: A stays frozen at its random init; B follows a projected AdamW gradient."""

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """PEFT's LoRA-FA optimizer, using the rank and alpha of the built adapter."""
        from peft.optimizers import create_lorafa_optimizer

        config = model.peft_config["default"]
        return create_lorafa_optimizer(model, r=config.r, lora_alpha=config.lora_alpha, lr=lr,
                                       weight_decay=weight_decay)
