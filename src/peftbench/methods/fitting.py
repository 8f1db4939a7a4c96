"""Model-aware defaults: sizes that must divide, or fit inside, the adapted layers.

Several techniques have sizes tied to the shapes of the layers they adapt: C3A's block size must
divide both dimensions, RoAd's group size the output dimension, VB-LoRA's vector length both,
SHiRA's number of trainable entries must not exceed a layer's, FourierFT/WaveFT's frequencies
must fit in ``in × out``. PEFT's defaults are chosen for billion-parameter models; a fitter keeps
the default where it is valid and otherwise takes the nearest valid value, so the same catalog
entry works on a 64-wide test model and on a 3B model. Values the user set are never changed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

#: output heads: never a default target ("all-linear" leaves them out, as PEFT does)
HEAD_NAMES = ("lm_head", "score", "classifier", "cls", "pooler")


def target_shapes(model: Any, target_modules: Any) -> list[tuple[int, int]]:
    """(in_features, out_features) of every linear layer that ``target_modules`` selects."""
    from torch import nn

    shapes = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and _selected(name, target_modules):
            shapes.append((module.in_features, module.out_features))
    return shapes


def _selected(name: str, targets: Any) -> bool:
    if targets is None:
        return False
    if targets == "all-linear":
        return not any(part in HEAD_NAMES for part in name.split("."))
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is at most ``cap`` (at least 1)."""
    for d in range(min(n, cap), 0, -1):
        if n % d == 0:
            return d
    return 1


def divisor_fitter(key: str, dims: str, cap: int | None = None) -> Callable[..., dict[str, Any]]:
    """Fit ``key`` to a divisor of the layers' ``dims`` ("in", "out" or "both")."""

    def fit(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
        shapes = target_shapes(model, fields.get("target_modules"))
        if key in user or not shapes or fields.get(key) in (None, 0):
            return fields
        sizes = [s[0] for s in shapes] if dims == "in" else [s[1] for s in shapes] \
            if dims == "out" else [d for s in shapes for d in s]
        common = math.gcd(*sizes)
        fields[key] = largest_divisor(common, min(cap or fields[key], fields[key]))
        return fields

    return fit


def capped_fitter(key: str, bound: Callable[[int, int], int]) -> Callable[..., dict[str, Any]]:
    """Lower ``key`` to ``min(bound(in, out))`` over the adapted layers when it exceeds it."""

    def fit(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
        shapes = target_shapes(model, fields.get("target_modules"))
        if key in user or not shapes or fields.get(key) is None:
            return fields
        fields[key] = max(1, min(fields[key], *(bound(i, o) for i, o in shapes)))
        return fields

    return fit


def chain(*fitters: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Apply several fitters in order."""

    def fit(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
        for fitter in fitters:
            fields = fitter(fields, model, user)
        return fields

    return fit


def fit_special_tokens(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
    """Trainable tokens: the model's special tokens (BOS, EOS, padding), as PEFT's suite does."""
    if "token_indices" in user:
        return fields
    config = model.config
    ids = [getattr(config, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")]
    flat = [i for x in ids for i in (x if isinstance(x, list) else [x]) if isinstance(i, int)]
    fields["token_indices"] = sorted(set(flat)) or [0]
    return fields


def fit_norm_layers(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
    """LN tuning: every normalisation layer of the model, by its leaf name."""
    if "target_modules" in user:
        return fields
    names = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                    if name and "Norm" in type(module).__name__})
    fields["target_modules"] = names or None
    return fields


def fit_decoder_layers(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
    """Adaption prompt: prompts in every decoder layer (PEFT's suite does all 28 of Llama-3B)."""
    if "adapter_layers" not in user:
        fields["adapter_layers"] = int(getattr(model.config, "num_hidden_layers", 1))
    return fields


def fit_decoder_blocks(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
    """ShadowPEFT: every decoder block (a ``…layers.N`` module)."""
    if "target_modules" not in user:
        fields["target_modules"] = r".*\.layers\.\d+$"
    return fields


def fit_hidden_size(key: str) -> Callable[..., dict[str, Any]]:
    """Set ``key`` to the model's hidden size (prompt encoders)."""

    def fit(fields: dict[str, Any], model: Any, user: set[str]) -> dict[str, Any]:
        if key not in user:
            fields[key] = int(model.config.hidden_size)
        return fields

    return fit
