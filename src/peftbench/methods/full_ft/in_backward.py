"""Layer-wise updates: one optimizer per weight, stepped during the backward pass.

As GaLore's layer-wise mode (and transformers' ``*_layerwise`` optimizers) do it: a hook after
each weight's gradient is accumulated steps that weight's own optimizer and frees its gradient,
so the whole model's gradients never exist at once. `InBackwardOptimizer` is what the training
loop sees: its parameter groups carry the learning rate the scheduler sets (copied into each
weight's optimizer before its step), its own ``step`` has nothing left to do, and it reports the
bytes the per-weight optimizers hold plus the largest gradient that existed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peftbench.methods.full_ft.state import optimizer_state_bytes, tensor_bytes, trainable_bytes

InnerFactory = Callable[[dict[str, Any]], torch.optim.Optimizer]


class InBackwardOptimizer(torch.optim.Optimizer):
    """Steps each weight's optimizer (from ``make_inner``, given a one-weight group) as soon as
    the weight's gradient is ready."""

    def __init__(self, groups: list[dict[str, Any]], make_inner: InnerFactory) -> None:
        super().__init__(groups, {})
        self.inner: dict[nn.Parameter, tuple[torch.optim.Optimizer, dict[str, Any]]] = {}
        self.peak_gradient_bytes = 0
        for group in self.param_groups:
            for param in group["params"]:
                one = {k: v for k, v in group.items() if k not in ("params", "initial_lr")}
                self.inner[param] = (make_inner({**one, "params": [param]}), group)
                param.register_post_accumulate_grad_hook(self._update)

    def _update(self, param: nn.Parameter) -> None:
        """Step ``param``'s own optimizer at the group's current learning rate; free its
        gradient."""
        inner, group = self.inner[param]
        if param.grad is None:
            return
        self.peak_gradient_bytes = max(self.peak_gradient_bytes, tensor_bytes(param.grad))
        for inner_group in inner.param_groups:
            inner_group["lr"] = group["lr"]
        inner.step()
        param.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Nothing left to do: every weight was updated during the backward pass."""
        return closure() if closure is not None else None

    def trainable_state_bytes(self, model: nn.Module) -> int:
        """Parameters, the largest gradient held at once, and the per-weight optimizers'
        state."""
        inner = sum(optimizer_state_bytes(opt) for opt, _ in self.inner.values())
        return trainable_bytes(model) + self.peak_gradient_bytes + inner
