"""Measuring and factorizing the weight update: ΔW = W_merged − W_base of every changed Linear
layer, as LoRA factors ``B·A`` at a fixed or an energy-fraction rank.

Two ways to the factors (`factorize`): PEFT's own ``convert_to_lora``, kept when on every
layer its error is within `PEFT_TOLERANCE` of the best the truncated SVD of the measured ΔW
reaches at the same rank, else that truncated SVD, ``B = U·√S``, ``A = √S·Vᵀ``. Both bake the
scaling into the factors (scaling 1).
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from peftbench.errors import UserError, first_line

#: output heads: never factorized; a classifier's trained head is shipped whole
HEADS = ("lm_head", "score", "classifier")
#: PEFT's factors are kept when their error is within this of the SVD optimum at their rank
PEFT_TOLERANCE = 1e-3
#: how PEFT names a layer's LoRA factors in a state dict: ``PREFIX<module>.lora_A.weight``
PREFIX = "base_model.model."
FACTOR_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")

Rank = int | float


# ---------------------------------------------------------------------------- the rank


def parse_rank(text: str | int | float) -> Rank:
    """``16`` is a fixed rank; ``0.9`` keeps 90% of each layer's update energy (Σσ²).

    Anything else (0, negative, ``1.5``, not a number) is a `UserError`.
    """
    value: Rank
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            try:
                value = float(str(text).strip())
            except ValueError:
                raise UserError(f"--rank {text!r} is not a number: give an integer rank (16) "
                                "or a fraction of the update's energy in (0, 1] (0.9)") from None
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"--rank {value}: an integer rank must be at least 1")
        return value
    if not (math.isfinite(value) and 0 < value <= 1):
        raise UserError(f"--rank {value}: a fractional rank is the share of each update's "
                        "energy to keep and must be in (0, 1]; use an integer for a fixed rank")
    return value


# ---------------------------------------------------------------------------- the weight update


@dataclass
class Update:
    """What fine-tuning changed: Linear updates (to factorize), heads (shipped whole), the rest."""

    layers: dict[str, torch.Tensor]  # Linear layer name -> ΔW (out × in), float32, CPU
    heads: dict[str, torch.Tensor]  # state-dict key -> trained tensor
    dropped: list[dict[str, Any]]  # changed parameters no LoRA carries, with their change
    linear_names: set[str]  # every factorizable Linear layer of the model


def weight_update(merged: nn.Module, base: dict[str, torch.Tensor], kind: str) -> Update:
    """Compare the merged model's state with the base snapshot, parameter by parameter."""
    heads = {h for h in HEADS if kind == "seq-cls" and hasattr(merged, h)}
    linear = {name for name, m in merged.named_modules()
              if isinstance(m, nn.Linear) and not is_head(name)}
    update = Update({}, {}, [], linear)
    for key, new in merged.state_dict().items():
        old = base.get(key)
        new = new.detach().cpu()
        if old is not None and old.shape == new.shape and torch.equal(old, new):
            continue
        module, _, param = key.rpartition(".")
        if key.split(".")[0] in heads:
            update.heads[key] = new.clone()
        elif param == "weight" and module in linear and old is not None:
            update.layers[module] = new.float() - old.float()
        else:
            update.dropped.append({"name": key, "relative_change": _relative_change(old, new)})
    return update


def is_head(name: str) -> bool:
    """True for an output head (`HEADS`) and the modules inside one: never factorized."""
    return name.split(".")[-1] in HEADS or name.split(".")[0] in HEADS


def _relative_change(old: torch.Tensor | None, new: torch.Tensor) -> float | None:
    if old is None or old.shape != new.shape:
        return None
    norm = float(old.float().norm())
    return float((new.float() - old.float()).norm()) / norm if norm else None


def check_update(update: Update, method: str) -> None:
    """Refuse an update without any Linear change: nothing a LoRA adapter could carry."""
    if update.layers:
        return
    changed = ", ".join(d["name"] for d in update.dropped[:3]) or "nothing"
    raise UserError(f"{method} changed no Linear layer's weights (it changed: {changed}"
                    f"{', …' if len(update.dropped) > 3 else ''}); a LoRA adapter cannot "
                    "express that")


# ---------------------------------------------------------------------------- factorization


@dataclass
class LayerFactors:
    """One layer's LoRA factors and how well they reproduce its update."""

    name: str
    shape: tuple[int, int]
    A: torch.Tensor  # rank × in
    B: torch.Tensor  # out × rank
    relative_error: float  # ||ΔW − B·A||_F / ||ΔW||_F
    svd_bound: float  # the smallest error any rank-r factorization can reach (Eckart–Young)

    @property
    def rank(self) -> int:
        """The layer's LoRA rank."""
        return int(self.A.shape[0])

    def describe(self) -> dict[str, Any]:
        """The layer's line in the report."""
        return {"name": self.name, "shape": list(self.shape), "rank": self.rank,
                "relative_error": self.relative_error, "svd_bound": self.svd_bound}


def energy_rank(singular_values: torch.Tensor, fraction: float) -> int:
    """The smallest k whose top-k singular values hold ``fraction`` of Σσ² (PEFT's rule)."""
    energy = torch.cumsum(singular_values.double() ** 2, dim=0)
    k = int(torch.searchsorted(energy, fraction * energy[-1]).item()) + 1
    return min(k, len(singular_values))


def layer_rank(singular_values: torch.Tensor, rank: Rank) -> int:
    """An integer rank clamped to the layer's full rank, or the energy rank of a fraction."""
    if isinstance(rank, int):
        return min(rank, len(singular_values))
    return energy_rank(singular_values, rank)


def relative_error(delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """||ΔW − B·A||_F / ||ΔW||_F, in float64."""
    delta = delta.double()
    norm = float(delta.norm())
    return float((delta - b.double() @ a.double()).norm()) / norm if norm else 0.0


def svd_bound(singular_values: torch.Tensor, rank: int) -> float:
    """The relative error of the best rank-``rank`` approximation: √(Σ_{i≥r} σᵢ² / Σ σᵢ²)."""
    energy = singular_values.double() ** 2
    total = float(energy.sum())
    return math.sqrt(float(energy[rank:].sum()) / total) if total else 0.0


def svd_factors(delta: torch.Tensor, rank: Rank, dtype: torch.dtype) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated SVD of ΔW: ``(A, B, singular values)`` with ``B·A`` ≈ ΔW, √S on each side."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    k = layer_rank(s, rank)
    root = s[:k].sqrt()
    a = (root[:, None] * vh[:k]).to(dtype).contiguous()
    b = (u[:, :k] * root).to(dtype).contiguous()
    return a, b, s


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: LAPACK's threaded SVD stalls (seconds instead of tens of
    milliseconds for a 576×576 update) when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def peft_factors(model: nn.Module, rank: Rank) -> tuple[
        dict[str, tuple[torch.Tensor, torch.Tensor]] | None, str]:
    """PEFT's ``convert_to_lora`` factors by layer name, or ``(None, why not)``."""
    from peft import convert_to_lora
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        return None, "not a PEFT tuner: PEFT's convert_to_lora does not apply"
    unsupported = sorted({_layer_type(m) for m in layers if not m.supports_lora_conversion()})
    if unsupported:
        return None, f"PEFT cannot convert its layers ({', '.join(unsupported)})"
    try:
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("ignore")  # "already a LoRA adapter": converting on purpose
            _, state = convert_to_lora(model, rank)
    except (TypeError, ValueError) as exc:
        return None, f"PEFT's convert_to_lora refused: {first_line(exc)}"
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = FACTOR_KEY.match(key)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = tensor.detach().cpu()
    return {name: (f["A"], f["B"]) for name, f in found.items() if {"A", "B"} <= set(f)}, ""


def _layer_type(module: nn.Module) -> str:
    """``oft.Linear`` for ``peft.tuners.oft.layer.Linear``: the technique and the layer."""
    parts = type(module).__module__.split(".")
    owner = parts[2] if len(parts) > 2 and parts[:2] == ["peft", "tuners"] else parts[-1]
    return f"{owner}.{type(module).__name__}"


def factorize(update: Update, rank: Rank, dtype: torch.dtype,
              peft: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> tuple[
        list[LayerFactors], str]:
    """LoRA factors for every changed Linear layer: PEFT's when they are as good as the SVD of
    the measured update allows (else the update is not what PEFT factorizes), else the SVD's.

    Returns the factors and the path taken with its reason (``"peft"`` or ``"general: …"``).
    """
    general: list[LayerFactors] = []
    from_peft: list[LayerFactors] = []
    mismatch = []
    with one_thread():
        for name, delta in sorted(update.layers.items()):
            ours, theirs = _layer_factors(name, delta, rank, dtype, (peft or {}).get(name))
            general.append(ours)
            if theirs is not None:
                from_peft.append(theirs)
            if peft is not None and (theirs is None
                                     or theirs.relative_error > theirs.svd_bound
                                     + PEFT_TOLERANCE):
                mismatch.append(name)
    if peft is None:
        return general, "general"
    if not mismatch:
        return from_peft, "peft"
    return general, (f"general: PEFT's factors miss the merged update of {len(mismatch)} "
                     f"layer(s), e.g. {mismatch[0]} (its get_delta_weight is not the whole "
                     "update)")


def _layer_factors(name: str, delta: torch.Tensor, rank: Rank, dtype: torch.dtype,
                   peft: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[
        LayerFactors, LayerFactors | None]:
    """The SVD's factors of one layer, and PEFT's (when given) measured against the same ΔW."""
    a, b, s = svd_factors(delta, rank, dtype)
    shape = (int(delta.shape[0]), int(delta.shape[1]))
    ours = LayerFactors(name, shape, a, b, relative_error(delta, a, b), svd_bound(s, a.shape[0]))
    if peft is None:
        return ours, None
    pa, pb = peft
    return ours, LayerFactors(name, shape, pa.to(dtype), pb.to(dtype),
                              relative_error(delta, pa, pb), svd_bound(s, pa.shape[0]))

