"""Delta-LoRA on a whole model: inject the layers, step the frozen weights, save and load.

The checkpoint (``adapter_model.safetensors`` + ``delta_lora_config.json``) holds, per adapted
layer, A, B and the dense change of the frozen weight W (``weight_delta``), plus any head trained
in full: everything needed to rebuild the trained model from the base model, so its size is
what Delta-LoRA really costs to ship.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.errors import UserError
from peftbench.methods.delta_lora.config import DeltaLoraConfig
from peftbench.methods.delta_lora.layer import DeltaLoraLinear
from peftbench.methods.fitting import _selected

WEIGHTS_NAME = "adapter_model.safetensors"


class DeltaLoraModel(nn.Module):
    """A base model whose target linear layers are `DeltaLoraLinear`; the rest is frozen."""

    def __init__(self, model: nn.Module, config: DeltaLoraConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        for param in model.parameters():
            param.requires_grad_(False)
        self.adapted = _inject(model, config)
        if not self.adapted:
            raise UserError(f"delta_lora: no linear layer matches target_modules="
                            f"{config.target_modules!r}")
        for name in config.modules_to_save:
            for param in model.get_submodule(name).parameters():
                param.requires_grad_(True)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's forward."""
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)  # generate, config, … of the wrapped model

    def layers(self) -> dict[str, DeltaLoraLinear]:
        """The adapted layers by module name (relative to the wrapped model)."""
        return {name: self.model.get_submodule(name) for name in self.adapted}

    def after_step(self, step: int) -> None:
        """Delta-LoRA's update after optimizer step ``step`` (1-based)."""
        warmup = self.config.warmup_steps
        for layer in self.layers().values():
            layer.move_weight(self.config.update_ratio, apply=step > warmup)
            if step <= warmup:  # W has not moved yet: its change is measured from here
                layer.mark_warmup_end()

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors: A, B and W's change per layer, and heads trained in full."""
        state: dict[str, torch.Tensor] = {}
        for name, layer in self.layers().items():
            state[f"{name}.lora_A"] = layer.lora_A.detach()
            state[f"{name}.lora_B"] = layer.lora_B.detach()
            state[f"{name}.weight_delta"] = layer.weight_delta(self.config.update_ratio)
        for head in self.config.modules_to_save:
            for key, tensor in self.model.get_submodule(head).state_dict().items():
                state[f"{head}.{key}"] = tensor.detach()
        return {k: v.contiguous().cpu() for k, v in state.items()}

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the config and the tensors of `adapter_state` to ``directory``."""
        from safetensors.torch import save_file

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save(folder)
        save_file(self.adapter_state(), str(folder / WEIGHTS_NAME),
                  metadata={"format": "pt", "peft_type": "DELTA_LORA"})

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | Path) -> DeltaLoraModel:
        """Rebuild a trained Delta-LoRA model from the base ``model`` and a saved checkpoint."""
        from safetensors.torch import load_file

        folder = Path(directory)
        config = DeltaLoraConfig.load(folder)
        wrapped = cls(model, config)
        try:
            state = load_file(str(folder / WEIGHTS_NAME))
        except (OSError, RuntimeError) as exc:
            raise UserError(f"cannot read the Delta-LoRA weights in {folder}: {exc}") from None
        wrapped.load_adapter_state(state)
        return wrapped

    @torch.no_grad()
    def load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Set A, B, move W by its saved change, restore heads; the state must be complete."""
        for name, layer in self.layers().items():
            try:
                layer.lora_A.copy_(state.pop(f"{name}.lora_A"))
                layer.lora_B.copy_(state.pop(f"{name}.lora_B"))
                delta = state.pop(f"{name}.weight_delta")
            except KeyError as exc:
                raise UserError(f"the Delta-LoRA checkpoint lacks {exc}") from None
            weight = layer.base_layer.weight
            weight.add_(delta.to(weight.device, weight.dtype))
            layer.previous_A.copy_(layer.lora_A)
            layer.previous_B.copy_(layer.lora_B)
            layer.mark_warmup_end()
        for head in self.config.modules_to_save:
            module = self.model.get_submodule(head)
            own = {k[len(head) + 1:]: v for k, v in state.items() if k.startswith(head + ".")}
            module.load_state_dict(own)

    def merge_and_unload(self) -> nn.Module:
        """The base model with A·B folded into W and the Delta-LoRA layers removed."""
        for name, layer in self.layers().items():
            parent, _, leaf = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, leaf,
                    layer.merged())
        self.adapted = []
        return self.model


def _inject(model: nn.Module, config: DeltaLoraConfig) -> list[str]:
    """Replace every selected ``nn.Linear`` by a `DeltaLoraLinear`; return their names."""
    chosen = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and _selected(name, config.target_modules)
              and not any(name == h or name.startswith(h + ".")
                          for h in config.modules_to_save)]
    for name in chosen:
        parent, _, leaf = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, leaf, DeltaLoraLinear(getattr(owner, leaf), config.r, config.scaling))
    return chosen
