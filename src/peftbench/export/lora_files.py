"""The exported LoRA on disk, in PEFT's layout: ``adapter_config.json`` (scaling 1 everywhere,
per-layer ranks in ``rank_pattern``) and ``adapter_model.safetensors``, written from the factors
and loaded back the way any PEFT user loads an adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.export.factorization import PREFIX, LayerFactors, Update

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def target_names(exported: set[str], linear: set[str]) -> list[str]:
    """Short names (q_proj, …) where every Linear layer of that name is exported, else full
    module names: PEFT then adapts exactly the exported layers. A numbered leaf keeps its
    parent (``to_out.0``: a bare ``0`` would match whole blocks)."""
    by_leaf: dict[str, set[str]] = {}
    for name in linear:
        by_leaf.setdefault(_leaf(name), set()).add(name)
    names: list[str] = []
    for leaf, members in sorted(by_leaf.items()):
        chosen = members & exported
        if chosen:
            names += [leaf] if chosen == members else sorted(chosen)
    return names


def _leaf(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def lora_config(factors: list[LayerFactors], linear: set[str], heads: list[str],
                kind: str, base_name: str | None) -> Any:
    """A `LoraConfig` with scaling 1 everywhere: ``r = lora_alpha =`` the largest rank, the
    other ranks in ``rank_pattern`` with equal ``alpha_pattern``."""
    from peft import LoraConfig

    r = max(f.rank for f in factors)
    pattern = {f.name: f.rank for f in factors if f.rank != r}
    return LoraConfig(
        r=r, lora_alpha=r, lora_dropout=0.0, bias="none", inference_mode=True,
        target_modules=target_names({f.name for f in factors}, linear),
        rank_pattern=pattern, alpha_pattern=dict(pattern),
        modules_to_save=heads or None,
        task_type={"seq-cls": "SEQ_CLS", "causal-lm": "CAUSAL_LM"}.get(kind),
        base_model_name_or_path=base_name,
    )


def write_lora(folder: Path, factors: list[LayerFactors], update: Update, kind: str,
               base_name: str | None) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` in PEFT's layout."""
    from safetensors.torch import save_file

    state: dict[str, torch.Tensor] = {}
    for f in factors:
        state[f"{PREFIX}{f.name}.lora_A.weight"] = f.A.contiguous()
        state[f"{PREFIX}{f.name}.lora_B.weight"] = f.B.contiguous()
    for key, tensor in update.heads.items():
        state[f"{PREFIX}{key}"] = tensor.contiguous()
    heads = sorted({key.split(".")[0] for key in update.heads})
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    lora_config(factors, update.linear_names, heads, kind, base_name).save_pretrained(str(folder))


def load_lora(base_model: nn.Module, folder: Path) -> nn.Module:
    """The base model with the exported LoRA, loaded the way any PEFT user would."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(folder))


def checkpoint_bytes(folder: Path) -> int:
    """Bytes of the weight files in ``folder`` (the rule of a run's ``file_size``)."""
    return sum(f.stat().st_size for f in folder.rglob("*")
               if f.is_file() and f.suffix in {".safetensors", ".bin", ".pt"})
