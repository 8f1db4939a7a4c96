"""GaLore and APOLLO: the packages' projected AdamW over the whole model.

The selected linear weights form one parameter group carrying the projection settings (rank,
interval, scale, projection type; APOLLO adds the projector kind and scaling granularity), the
other weights (embeddings, norms, heads) a plain group of the same optimizer, as the packages'
own examples and LLaMA-Factory build them. AdamW's ε is the one every technique trains with.
Layer-wise, each weight gets its own optimizer, stepped during the backward pass
(`InBackwardOptimizer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peftbench.methods.full_ft.in_backward import InBackwardOptimizer
from peftbench.methods.full_ft.layers import projected_weights, unique_parameters
from peftbench.methods.full_ft.state import CountedState
from peftbench.methods.optimizers import ADAMW_EPS

GALORE_KEYS = ("rank", "update_proj_gap", "scale", "proj_type")
APOLLO_KEYS = (*GALORE_KEYS, "proj", "scale_type")


def optimizer_class(algorithm: str) -> type[torch.optim.Optimizer]:
    """The package's optimizer class for ``algorithm``, with the state-byte count mixed in."""
    if algorithm == "galore":
        from galore_torch import GaLoreAdamW as base
    elif algorithm == "galore-8bit":
        from galore_torch import GaLoreAdamW8bit as base
    elif algorithm == "apollo":
        from apollo_torch import APOLLOAdamW as base
    else:
        raise ValueError(f"unknown projected optimizer {algorithm!r}")
    return type(f"Counted{base.__name__}", (CountedState, base), {})


def parameter_groups(model: nn.Module, settings: dict[str, Any],
                     algorithm: str) -> list[dict[str, Any]]:
    """The projected group (selected linear weights) and the plain one (everything else)."""
    projected = projected_weights(model, settings["target_modules"])
    ids = {id(p) for p in projected}
    rest = [p for _, p in unique_parameters(model) if p.requires_grad and id(p) not in ids]
    keys = APOLLO_KEYS if algorithm == "apollo" else GALORE_KEYS
    groups = [{"params": rest}] if rest else []
    groups.append({"params": projected, **{k: settings[k] for k in keys}})
    return groups


def projected_optimizer(model: nn.Module, settings: dict[str, Any], lr: float,
                        weight_decay: float, algorithm: str,
                        layerwise: bool) -> torch.optim.Optimizer:
    """The projected AdamW, or its layer-wise form (one optimizer per weight)."""
    cls = optimizer_class(algorithm)
    groups = parameter_groups(model, settings, algorithm)
    options = _options(cls, algorithm, lr, weight_decay)
    if not layerwise:
        return cls(groups, **options)
    for group in groups:
        group.update(lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), eps=ADAMW_EPS)
    return InBackwardOptimizer(groups, lambda one: cls([one], **options))


def _options(cls: type, algorithm: str, lr: float, weight_decay: float) -> dict[str, Any]:
    options: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay, "eps": ADAMW_EPS}
    if algorithm == "galore":
        options["no_deprecation_warning"] = True
    return options
