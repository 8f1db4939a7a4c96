"""BAdam: badam's ``BlockOptimizer`` around AdamW, one block per transformer layer.

The blocks are the model's layers, found by structure (`block_prefixes`), not by badam's
name pattern (which knows ``layers.N`` but not an encoder's ``layer.N``); a classifier's head
stays trainable throughout (badam's ``active_modules``), as every technique trains it. The
wrapper records every weight that was ever trainable (the checkpoint ships exactly those),
keeps badam's block announcements off the console, and reports what BAdam holds: the active
block, its gradients, its fp32 master copy and the inner AdamW's moments of that copy.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch
from badam import BlockOptimizer
from torch import nn

from peftbench.methods.full_ft.checkpoint import TRAINED_ATTR
from peftbench.methods.full_ft.layers import block_prefixes, classifier_heads, unique_parameters
from peftbench.methods.full_ft.state import optimizer_state_bytes, tensor_bytes
from peftbench.methods.optimizers import ADAMW_EPS


class RecordedBlockOptimizer(BlockOptimizer):
    """badam's block optimizer that records the blocks it activates."""

    def __init__(self, *args: Any, trained: set[str], **kwargs: Any) -> None:
        self.trained = trained
        self.active_blocks: list[int] = []  # the block index of each activation, in order
        super().__init__(*args, **kwargs)

    def switch_trainable_params(self, verbose: int | None = 0) -> None:
        """Activate the next block (silently), recording which one."""
        self.active_blocks.append(self.current_block_idx)
        with contextlib.redirect_stdout(io.StringIO()):
            super().switch_trainable_params(verbose=0)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        """Record the active block's weights as trained, then badam's step (which may switch
        to the next block)."""
        self.trained.update(n for n, p in self.named_parameters_list if p.requires_grad)
        return super().step(*args, **kwargs)

    def trainable_state_bytes(self, model: nn.Module) -> int:
        """The active block's weights and gradients, their fp32 master copies and the inner
        AdamW's state."""
        active = sum(tensor_bytes(p) for p in self.param_idx2lp.values())
        masters = sum(tensor_bytes(p) for p in self.param_idx2hp.values())
        return 2 * active + masters + optimizer_state_bytes(self.base_optimizer)


def block_optimizer(model: nn.Module, settings: dict[str, Any], lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """BAdam over ``model``'s layers, switching every ``switch_every`` steps in
    ``switch_mode`` order, a classifier's head (if the model has one) always active; the
    weights it trains are recorded on the model."""
    named = list(unique_parameters(model))
    base = torch.optim.AdamW([p for _, p in named], lr=lr, weight_decay=weight_decay,
                             eps=ADAMW_EPS)
    trained: set[str] = set()
    with contextlib.redirect_stdout(io.StringIO()):  # badam announces its block order
        optimizer = RecordedBlockOptimizer(
            base_optimizer=base, named_parameters_list=named,
            block_prefix_list=[[prefix] for prefix in block_prefixes(model)],
            switch_block_every=int(settings["switch_every"]),
            switch_mode=str(settings["switch_mode"]),
            active_modules=[h + "." for h in classifier_heads(model, "seq-cls")],
            verbose=0, trained=trained)
    setattr(model, TRAINED_ATTR, trained)
    return optimizer
