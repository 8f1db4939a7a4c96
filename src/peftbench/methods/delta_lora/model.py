"""Delta-LoRA on a whole model: inject the layers, step the frozen weights, save and load.

The checkpoint (``adapter_model.safetensors`` + ``delta_lora_config.json``) holds, per adapted
layer, A and B and, once W has moved, the factors at the end of the warm-up (A_K, B_K): W's
change λ·(α/r)·(B A − B_K A_K) is exactly their product, of rank at most 2r, so the checkpoint
stores it factored (twice LoRA's size) instead of as a dense matrix. Heads trained in full are
saved too, and the number of steps taken (metadata), so that a reloaded model saves the same
change again. Its size is what Delta-LoRA really costs to ship.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.errors import UserError
from peftbench.methods.delta_lora.config import DeltaLoraConfig
from peftbench.methods.delta_lora.layer import DeltaLoraLinear
from peftbench.methods.fitting import _selected

WEIGHTS_NAME = "adapter_model.safetensors"
#: safetensors metadata key: optimizer steps taken (W moves after ``warmup_steps`` of them)
STEPS_KEY = "delta_lora_steps"
#: tensor names per layer: the LoRA factors, and those at the end of the warm-up
FACTORS = ("lora_A", "lora_B")
WARMUP_FACTORS = ("warmup_A", "warmup_B")


class DeltaLoraModel(nn.Module):
    """A base model whose target linear layers are `DeltaLoraLinear`; the rest is frozen."""

    def __init__(self, model: nn.Module, config: DeltaLoraConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config
        for param in model.parameters():
            param.requires_grad_(False)
        self.adapted = _inject(model, config)
        self.steps_before = 0  # steps of a loaded checkpoint: training continues from there
        self.steps_done = 0  # optimizer steps taken, those of a loaded checkpoint included
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
        """Delta-LoRA's update after optimizer step ``step`` (1-based, counted on from the steps
        of a loaded checkpoint)."""
        self.steps_done = self.steps_before + step
        moving = self.moving
        for layer in self.layers().values():
            layer.move_weight(self.config.update_ratio, apply=moving)
            if not moving:  # W has not moved yet: its change is measured from here
                layer.mark_warmup_end()

    @property
    def moving(self) -> bool:
        """Whether the warm-up is over, so that W moves with the LoRA product."""
        return self.steps_done > self.config.warmup_steps

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run without the LoRA path (as PEFT's ``disable_adapter``): the base layers alone,
        for measuring the adapter's inference overhead. W keeps its Delta-LoRA change."""
        layers = list(self.layers().values())
        for layer in layers:
            layer.enabled = False
        try:
            yield
        finally:
            for layer in layers:
                layer.enabled = True

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors: A and B per layer, A_K and B_K once W has moved (its change
        is their product), and heads trained in full."""
        state: dict[str, torch.Tensor] = {}
        for name, layer in self.layers().items():
            state[f"{name}.lora_A"] = layer.lora_A.detach()
            state[f"{name}.lora_B"] = layer.lora_B.detach()
            if self.moving:
                state[f"{name}.warmup_A"] = layer.start_A.detach()
                state[f"{name}.warmup_B"] = layer.start_B.detach()
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
                  metadata={"format": "pt", "peft_type": "DELTA_LORA",
                            STEPS_KEY: str(self.steps_done)})

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: str | Path) -> DeltaLoraModel:
        """Rebuild a trained Delta-LoRA model from the base ``model`` and a saved checkpoint."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        folder = Path(directory)
        config = DeltaLoraConfig.load(folder)
        wrapped = cls(model, config)
        path = str(folder / WEIGHTS_NAME)
        try:
            state = load_file(path)
            with safe_open(path, framework="pt") as opened:
                metadata = opened.metadata() or {}
        except (OSError, RuntimeError) as exc:
            raise UserError(f"cannot read the Delta-LoRA weights in {folder}: {exc}") from None
        wrapped.load_adapter_state(state, _saved_steps(metadata, state, config))
        return wrapped

    @torch.no_grad()
    def load_adapter_state(self, state: dict[str, torch.Tensor], steps: int = 0) -> None:
        """Set A and B, move W by the change the saved factors define, restore heads, and
        continue the step count at ``steps``; the state must be complete."""
        for name, layer in self.layers().items():
            if f"{name}.weight_delta" in state:
                raise UserError("this Delta-LoRA checkpoint stores W's change densely (an older "
                                "peftbench); train it again to get the factored checkpoint")
            try:
                a, b = (state.pop(f"{name}.{key}") for key in FACTORS)
            except KeyError as exc:
                raise UserError(f"the Delta-LoRA checkpoint lacks {exc}") from None
            start_a = state.pop(f"{name}.warmup_A", a)
            start_b = state.pop(f"{name}.warmup_B", b)
            layer.restore(a, b, start_a, start_b, self.config.update_ratio)
        self.steps_before = self.steps_done = steps
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


def _saved_steps(metadata: dict[str, str], state: dict[str, torch.Tensor],
                 config: DeltaLoraConfig) -> int:
    """Steps a checkpoint was trained for (past the warm-up when it has warm-up factors)."""
    try:
        return int(metadata[STEPS_KEY])
    except (KeyError, ValueError):
        moved = any(k.endswith(".warmup_A") for k in state)
        return config.warmup_steps + 1 if moved else 0


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
