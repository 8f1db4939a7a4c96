"""A checkpoint of only the tensors a technique trained (freeze tuning, BAdam's visited blocks).

Every other tensor is the base model's, bit for bit, so shipping the trained ones is enough:
``trained_weights.safetensors`` holds them under their parameter names, and loading puts them
into a fresh base model. Which tensors were trained is recorded on the model while it trains
(`TRAINED_ATTR`: names of every parameter that was trainable at some point).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from peftbench.errors import UserError, first_line

WEIGHTS_NAME = "trained_weights.safetensors"
INDEX_NAME = "trained_weights.json"
#: attribute of a built model: names of the parameters trained at some point of the run
TRAINED_ATTR = "peftbench_trained"


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained tensors by parameter name (each tied tensor once, under its first name)."""
    from peftbench.methods.full_ft.layers import unique_parameters

    names = getattr(model, TRAINED_ATTR, None)
    return {name: param.detach().contiguous().cpu() for name, param in unique_parameters(model)
            if names is None or name in names}


def save_trained(model: nn.Module, directory: Path, method: str) -> None:
    """Write the trained tensors and an index naming the technique and the tensors."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = trained_state(model)
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt",
                                                                "peftbench_method": method})
    index = {"method": method, "tensors": sorted(state),
             "base_model_class": type(model).__name__}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2))


def is_subset(directory: Path) -> bool:
    """Whether ``directory`` holds a checkpoint of `save_trained`."""
    return (Path(directory) / WEIGHTS_NAME).is_file()


def load_trained(model: nn.Module, directory: Path, method: str) -> nn.Module:
    """Put the saved tensors into the fresh base ``model``; a tensor the model lacks, or of
    another shape, is a `UserError`."""
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_NAME
    try:
        state = load_file(str(path))
    except (OSError, RuntimeError) as exc:
        raise UserError(f"cannot read the {method} weights in {directory}: "
                        f"{first_line(exc)}") from None
    own = dict(model.named_parameters())
    for name, tensor in state.items():
        if name not in own:
            raise UserError(f"the {method} checkpoint in {directory} has '{name}', which this "
                            "base model lacks")
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise UserError(f"the {method} checkpoint's '{name}' has shape "
                            f"{tuple(tensor.shape)}, the base model's {tuple(own[name].shape)}")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor.to(own[name].dtype))
    setattr(model, TRAINED_ATTR, set(state))
    return model
