"""Read an experiment folder of the PEFT method-comparison suite into a peftbench spec.

A folder holds ``adapter_config.json`` (a PEFT config) and optionally ``training_params.json``
(overrides of the suite's default training parameters). The suite's step counts, batch sizes and
model ids are for a 3B model on a GPU, so only what describes the *technique* carries over: the
adapter config, the learning rate and weight decay, and the optimizer type (LoRA-FA, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftbench.errors import UserError

#: the suite's ``optimizer_type`` values that are their own catalog entries
OPTIMIZER_METHODS = {"lora-fa": "lora_fa", "lora+": "lora_plus", "loraplus": "lora_plus"}
#: prompt-learning fields that describe the suite's model (Llama-3.2-3B), not the technique:
#: dropped so that PEFT infers them from the model being trained
MODEL_SHAPE_FIELDS = {"token_dim", "num_attention_heads", "num_layers",
                      "num_transformer_submodules"}


def is_experiment_folder(path: Path) -> bool:
    """True when ``path`` looks like a PEFT-suite experiment folder."""
    return path.is_dir() and (
        (path / "adapter_config.json").is_file() or (path / "training_params.json").is_file()
    )


def read_experiment_folder(path: str | Path) -> dict[str, Any]:
    """Spec fields (``method``, ``adapter_config``, ``train``, ``name``) from a suite folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a folder")
    adapter = _read_json(path / "adapter_config.json")
    params = _read_json(path / "training_params.json") or {}
    if adapter is None:
        if path.parent.name != "full-finetuning":
            raise UserError(f"{path}: no adapter_config.json (and not a full fine-tuning folder)")
        method = "full"
        adapter = {}
    else:
        peft_type = adapter.get("peft_type")
        if not isinstance(peft_type, str):
            raise UserError(f"{path / 'adapter_config.json'}: no 'peft_type' field")
        method = peft_type.lower()
        adapter = _known_fields(peft_type, adapter)
    optimizer = params.get("optimizer_type")
    if optimizer and optimizer.lower() != "adamw":
        if optimizer.lower() not in OPTIMIZER_METHODS:
            raise UserError(f"{path}: optimizer_type '{optimizer}' is not in peftbench's catalog")
        method = OPTIMIZER_METHODS[optimizer.lower()]
    kwargs = params.get("optimizer_kwargs") or {}
    train: dict[str, Any] = {}
    if "lr" in kwargs:
        train["lr"] = float(kwargs["lr"])
    if "weight_decay" in kwargs:
        train["weight_decay"] = float(kwargs["weight_decay"])
    return {"method": method, "adapter_config": adapter, "train": train,
            "name": f"{path.parent.name}--{path.name}"}


def _known_fields(peft_type: str, adapter: dict[str, Any]) -> dict[str, Any]:
    """Keep the fields the installed PEFT's config class knows, as PEFT's own loader does:
    configs saved by a newer PEFT carry fields an older one lacks."""
    import dataclasses

    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    cls = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type)
    if cls is None:
        raise UserError(f"PEFT type '{peft_type}' is not in the installed PEFT release")
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in adapter.items() if k in known and k not in MODEL_SHAPE_FIELDS}


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data
