"""AdaLoRA's rank budget: reallocated after every optimizer step, while gradients still exist.

PEFT's AdaLoRA needs ``update_and_allocate(step)`` after ``optimizer.step()`` and before the
gradients are cleared (it scores parameters by |w·∇w|). The engine clears gradients inside its
step, so the call hangs on the optimizer itself as a step post-hook: the engine stays generic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peftbench.methods.base import Method

if TYPE_CHECKING:
    import torch
    from torch import nn


class AdaLoraMethod(Method):
    """AdaLoRA: AdamW plus the rank reallocation of PEFT's AdaLoRA after every step."""

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """AdamW whose every step is followed by AdaLoRA's budget update."""
        optimizer = super().make_optimizer(model, lr, weight_decay)
        steps = {"done": 0}

        def reallocate(*_: object) -> None:
            steps["done"] += 1
            model.base_model.update_and_allocate(steps["done"])

        optimizer.register_step_post_hook(reallocate)
        return optimizer
