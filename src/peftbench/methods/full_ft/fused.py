"""LOMO and AdaLomo (lomo-optim): the update fused into the backward pass.

lomo-optim's optimizers register a hook on every weight; when a weight's gradient is computed,
the hook applies and frees the gradients already accumulated, so at most about two gradients
exist at once and (for LOMO) no optimizer state at all. Their own entry point,
``fused_backward(loss, lr)``, runs the backward pass itself; the shared training loop calls
``loss.backward()`` and then ``step()``, so these wrappers:

- read the learning rate from the parameter group the scheduler sets;
- apply the last pending gradient when the backward pass ends (an autograd callback), so the
  loop's gradient clipping and ``step`` find nothing left (no clipping: see the catalog's
  caveat), and count AdaLomo's steps there;
- measure the most gradient bytes held at once, for the memory breakdown;
- leave AdaLomo's loss scaling off (the loop does not scale the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peftbench.methods.full_ft.state import held_bytes, tensor_bytes, trainable_bytes


class FusedUpdate:
    """Mix-in for lomo-optim's optimizers under the shared training loop (see the module)."""

    _lr: float
    peak_gradient_bytes = 0  # the most gradient bytes held at once (set per instance)

    @property
    def lr(self) -> float:  # read by lomo-optim's hooks at every update
        """The learning rate the scheduler set on the parameter group."""
        groups = self.__dict__.get("param_groups")
        return float(groups[0]["lr"]) if groups else self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        groups = self.__dict__.get("param_groups")
        if groups:
            for group in groups:
                group["lr"] = value
        else:
            self._lr = value

    def fuse_update(self) -> Callable[[Any], Any]:
        """lomo-optim's hook, wrapped: measure the gradients held, and finish at the end of
        the backward pass."""
        apply = super().fuse_update()  # type: ignore[misc]
        self._apply = apply
        self._pending = False

        def hook(grad: Any) -> Any:
            self._note_gradients(grad)
            if not self._pending:
                self._pending = True
                self._begin_backward()
                torch.autograd.Variable._execution_engine.queue_callback(self._end_backward)
            return apply(grad)

        return hook

    def _begin_backward(self) -> None:
        """Called at the first gradient of a backward pass."""

    def _end_backward(self) -> None:
        """Apply the last pending gradient (the hooks run before a weight's own gradient
        arrives, so the last one waits for the end of the pass)."""
        self._apply(0)
        self._pending = False

    def _note_gradients(self, incoming: Any) -> None:
        held = sum(tensor_bytes(p.grad) for p in self.model.parameters()  # type: ignore[attr-defined]
                   if p.grad is not None)
        if isinstance(incoming, torch.Tensor):
            held += tensor_bytes(incoming)
        self.peak_gradient_bytes = max(self.peak_gradient_bytes, held)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Apply any gradient still pending (none after a normal backward pass)."""
        self._apply(0)
        return closure() if closure is not None else None

    def trainable_state_bytes(self, model: nn.Module) -> int:
        """Parameters, the most gradient bytes held at once, and AdaLomo's factored moments."""
        moments = sum(held_bytes(getattr(self, name, {})) for name in
                      ("exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col"))
        return trainable_bytes(model) + self.peak_gradient_bytes + moments


def fused_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    adaptive: bool) -> torch.optim.Optimizer:
    """LOMO (``adaptive=False``) or AdaLomo over every trainable weight of ``model``."""
    from lomo_optim import AdaLomo, Lomo

    if not adaptive:
        optimizer = type("FusedLomo", (FusedUpdate, Lomo), {})(
            model, lr=lr, weight_decay=weight_decay)
    else:
        optimizer = type("FusedAdaLomo", (_CountedSteps, FusedUpdate, AdaLomo), {})(
            model, lr=lr, weight_decay=weight_decay, loss_scale=0)
    for group in optimizer.param_groups:
        group["weight_decay"] = weight_decay
    return optimizer


class _CountedSteps:
    """AdaLomo counts its steps in ``fused_backward``; here, at each backward pass."""

    step_num: int

    def _begin_backward(self) -> None:
        self.step_num += 1
