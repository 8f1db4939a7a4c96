"""Techniques that are LoRA with a different optimizer: LoRA+ and LoRA-FA (PEFT's optimizers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peftbench.methods.base import OPTIONS_ATTR, Method

if TYPE_CHECKING:
    import torch
    from torch import nn


#: ε of torch's AdamW, which every technique without an optimizer of its own trains with
ADAMW_EPS = 1e-8


class LoraPlusMethod(Method):
    """LoRA+: the B matrices get ``loraplus_lr_ratio`` times the learning rate of A.

    Everything else trains as under every other technique: the same weight decay on every
    parameter (PEFT's optimizer takes it as ``loraplus_weight_decay`` and ignores
    ``weight_decay``), and parameters that are not LoRA factors (a classifier head, which PEFT
    files by shape: its bias with B, without weight decay) at the base learning rate.
    """

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """PEFT's LoRA+ AdamW with the ratio from the ``loraplus_lr_ratio`` option."""
        import torch
        from peft.optimizers import create_loraplus_optimizer

        options = getattr(model, OPTIONS_ATTR, self.options)
        optimizer = create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=lr, weight_decay=weight_decay,
            loraplus_weight_decay=weight_decay,
            loraplus_lr_ratio=float(options["loraplus_lr_ratio"]),
        )
        return torch.optim.AdamW(lora_plus_groups(model, optimizer, lr, weight_decay), lr=lr,
                                 weight_decay=weight_decay)


def lora_plus_groups(model: nn.Module, optimizer: torch.optim.Optimizer, lr: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """``optimizer``'s parameter groups with LoRA+'s rule kept for LoRA factors only: any
    other parameter moves to a group at ``lr`` with ``weight_decay``, as for every technique."""
    lora = {id(p) for name, p in model.named_parameters() if "lora_" in name}
    groups: list[dict[str, Any]] = []
    others: list[torch.nn.Parameter] = []
    for group in optimizer.param_groups:
        own = [p for p in group["params"] if id(p) in lora]
        others += [p for p in group["params"] if id(p) not in lora]
        if own:
            groups.append({"params": own, "lr": group["lr"],
                           "weight_decay": group["weight_decay"]})
    if others:
        groups.append({"params": others, "lr": lr, "weight_decay": weight_decay})
    return groups


class LoraFaMethod(Method):
    """LoRA-FA: A stays frozen at its random init; B follows a projected AdamW gradient."""

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """PEFT's LoRA-FA optimizer, using the rank and alpha of the built adapter."""
        from peft.optimizers import create_lorafa_optimizer

        config = model.peft_config["default"]
        optimizer = create_lorafa_optimizer(model, r=config.r, lora_alpha=config.lora_alpha,
                                            lr=lr, weight_decay=weight_decay)
        for group in optimizer.param_groups:  # AdamW's ε, as for every other technique
            group["eps"] = ADAMW_EPS  # (PEFT's LoRA-FA optimizer defaults to 1e-6)
        return optimizer
