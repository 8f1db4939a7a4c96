"""What an optimizer really holds, for the memory breakdown's trainable state.

The engine counts trainable parameters, their gradients and ``optimizer.state``'s tensors
(`peftbench.engine.measure.state_bytes`). These optimizers hold state elsewhere too (GaLore's
projection matrices inside a projector object, BAdam's fp32 copies and inner optimizer,
per-weight optimizers of layer-wise updates) or never hold whole-model gradients (updates fused
into the backward pass); each reports its own bytes through ``trainable_state_bytes(model)``,
which `state_bytes` uses when an optimizer has it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peftbench.methods.full_ft.layers import unique_parameters


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes of one tensor's elements."""
    return tensor.numel() * tensor.element_size()


def trainable_bytes(model: nn.Module) -> int:
    """Bytes of the model's trainable parameters, each tensor once."""
    return sum(tensor_bytes(p) for _, p in unique_parameters(model) if p.requires_grad)


def held_bytes(value: Any) -> int:
    """Bytes of the tensors in an optimizer's state entry: tensors, containers of them, and a
    projector's projection matrix (``ortho_matrix``: a tensor or a list of tensors)."""
    if isinstance(value, torch.Tensor):
        return tensor_bytes(value)
    if isinstance(value, dict):
        return sum(held_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(held_bytes(v) for v in value)
    matrix = getattr(value, "ortho_matrix", None)
    return held_bytes(matrix) if matrix is not None else 0


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor an optimizer's ``state`` holds, projectors included."""
    return sum(held_bytes(state) for state in optimizer.state.values())


class CountedState:
    """Mix-in for an optimizer whose state includes objects holding tensors (projectors):
    trainable parameters + their gradients (all present at the step) + the state."""

    def trainable_state_bytes(self, model: nn.Module) -> int:
        """Parameters, gradients and every tensor of the state (projections included)."""
        return 2 * trainable_bytes(model) + optimizer_state_bytes(self)  # type: ignore[arg-type]
