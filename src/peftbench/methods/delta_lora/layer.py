"""A linear layer with Delta-LoRA: ``W x + (α/r)·B(A x)``, and W moved by the change of B·A."""

from __future__ import annotations

import math

import torch
from torch import nn


class DeltaLoraLinear(nn.Module):
    """Wraps a frozen ``nn.Linear``; trains A and B; `move_weight` applies the Delta-LoRA step.

    Two small copies of the factors are kept: those of the previous step, to form
    B(t+1)A(t+1) − B(t)A(t), and those at the end of the warm-up (A_K, B_K), from which the
    total change of W is λ·(α/r)·(B A − B_K A_K) (the per-step changes telescope): a matrix of
    rank at most 2r, which the checkpoint stores as these factors. ``enabled`` switches the
    LoRA path off (`DeltaLoraModel.disable_adapter`); W keeps its change.
    """

    def __init__(self, base_layer: nn.Linear, r: int, scaling: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        for param in base_layer.parameters():
            param.requires_grad_(False)
        weight = base_layer.weight
        self.lora_A = nn.Parameter(torch.empty(r, base_layer.in_features, dtype=weight.dtype,
                                               device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, r, dtype=weight.dtype,
                                               device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # LoRA's init: B·A = 0 at start
        self.scaling = scaling
        self.enabled = True
        for name in ("previous_A", "previous_B", "start_A", "start_B"):
            source = self.lora_A if name.endswith("A") else self.lora_B
            self.register_buffer(name, source.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen path plus the LoRA path (no dropout, as Delta-LoRA prescribes)."""
        if not self.enabled:
            return self.base_layer(x)
        lora = (x.to(self.lora_A.dtype) @ self.lora_A.T) @ self.lora_B.T
        return self.base_layer(x) + (lora * self.scaling).to(x.dtype)

    def product(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The LoRA update ``(α/r)·B·A`` as a dense matrix, shaped like W."""
        return (b @ a) * self.scaling

    @torch.no_grad()
    def move_weight(self, update_ratio: float, apply: bool) -> None:
        """W += λ·(ΔW_lora(t+1) − ΔW_lora(t)) when ``apply``; then remember the factors."""
        if apply:
            change = self.product(self.lora_A, self.lora_B) \
                - self.product(self.previous_A, self.previous_B)
            self.base_layer.weight.add_(change.to(self.base_layer.weight.dtype),
                                        alpha=update_ratio)
        self.previous_A.copy_(self.lora_A)
        self.previous_B.copy_(self.lora_B)

    @torch.no_grad()
    def mark_warmup_end(self) -> None:
        """Remember the factors at which W starts moving."""
        self.start_A.copy_(self.lora_A)
        self.start_B.copy_(self.lora_B)

    @torch.no_grad()
    def restore(self, a: torch.Tensor, b: torch.Tensor, start_a: torch.Tensor,
                start_b: torch.Tensor, update_ratio: float) -> None:
        """Put saved factors back and move W by the change they define (from the base W)."""
        self.lora_A.copy_(a)
        self.lora_B.copy_(b)
        self.start_A.copy_(start_a)
        self.start_B.copy_(start_b)
        self.previous_A.copy_(a)
        self.previous_B.copy_(b)
        weight = self.base_layer.weight
        weight.add_(self.weight_delta(update_ratio).to(weight.device, weight.dtype))

    @torch.no_grad()
    def weight_delta(self, update_ratio: float) -> torch.Tensor:
        """How far W has moved from the base weights: λ·(α/r)·(B A − B_K A_K)."""
        moved = self.product(self.lora_A, self.lora_B) - self.product(self.start_A, self.start_B)
        return (moved * update_ratio).float()

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The wrapped linear layer with the LoRA path folded into W."""
        weight = self.base_layer.weight
        weight.add_(self.product(self.lora_A, self.lora_B).to(weight.dtype))
        return self.base_layer
