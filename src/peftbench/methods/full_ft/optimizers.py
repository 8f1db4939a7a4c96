"""Optimizers that need no wrapper: AdamW (freeze tuning) and Adam-mini."""

from __future__ import annotations

import torch
from torch import nn

from peftbench.methods.full_ft.layers import unique_parameters
from peftbench.methods.optimizers import ADAMW_EPS


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """torch's AdamW over the trainable weights, as every adapter trains."""
    params = [p for _, p in unique_parameters(model) if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=ADAMW_EPS)


def adam_mini(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """adam-mini's optimizer, told the model's width and (query, key/value) head counts so that
    it gives each attention head of the query and key projections one second moment."""
    from adam_mini import Adam_mini

    config = model.config
    heads = int(config.num_attention_heads)
    return Adam_mini(
        named_parameters=list(unique_parameters(model)), lr=lr, betas=(0.9, 0.999),
        eps=ADAMW_EPS, weight_decay=weight_decay, dim=int(config.hidden_size), n_heads=heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or heads), verbose=False)
