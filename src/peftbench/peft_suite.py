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
OPTIMIZER_METHODS = {"lora-fa": "lora-fa", "lora+": "lora-plus", "loraplus": "lora-plus",
                     "riemannian": "lora-riemannian"}


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
    optimizer = params.get("optimizer_type")
    if optimizer and optimizer.lower() != "adamw":
        if optimizer.lower() not in OPTIMIZER_METHODS:
            raise UserError(f"{path}: optimizer_type '{optimizer}' is not supported")
        method = OPTIMIZER_METHODS[optimizer.lower()]
    kwargs = params.get("optimizer_kwargs") or {}
    train: dict[str, Any] = {}
    if "lr" in kwargs:
        train["lr"] = float(kwargs["lr"])
    if "weight_decay" in kwargs:
        train["weight_decay"] = float(kwargs["weight_decay"])
    return {"method": method, "adapter_config": adapter, "train": train,
            "name": f"{path.parent.name}--{path.name}"}


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
