"""Where a model's layers are: its transformer blocks, its classifier head, the linear weights a
projected optimizer targets, and the parameters freeze tuning trains."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from peftbench.errors import UserError
from peftbench.methods.fitting import HEAD_NAMES, _selected

#: the classification heads of sequence classifiers, trained by every technique
CLASSIFIER_HEADS = ("score", "classifier")


def unique_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Each parameter tensor once (a tied one under its first name)."""
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if id(param) not in seen:
            seen.add(id(param))
            yield name, param


def block_list(model: nn.Module) -> str:
    """The name of the module list holding the model's transformer blocks (``model.layers``,
    ``bert.encoder.layer``): the longest ``nn.ModuleList`` of equal-typed modules."""
    best, length = "", 0
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > length \
                and len({type(m) for m in module}) == 1:
            best, length = name, len(module)
    if not length:
        raise UserError(f"{type(model).__name__} has no list of transformer blocks to train "
                        "layer by layer")
    return best


def block_prefixes(model: nn.Module) -> list[str]:
    """The parameter-name prefix of every transformer block, first to last (``model.layers.0.``)."""
    name = block_list(model)
    return [f"{name}.{i}." for i in range(len(model.get_submodule(name)))]


def classifier_heads(model: nn.Module, kind: str) -> list[str]:
    """The head modules of a sequence classifier (none for a language model)."""
    if kind != "seq-cls":
        return []
    names = {n for n, _ in model.named_children()}
    return [h for h in CLASSIFIER_HEADS if h in names]


def freeze_selection(model: nn.Module, kind: str, settings: dict[str, Any]) -> set[str]:
    """Names of the parameters freeze tuning trains: those of the last ``trainable_layers``
    blocks (the first ones when negative) whose module path names one of
    ``trainable_modules`` ("all" for every module), those of ``extra_modules`` and a
    classifier's head."""
    prefixes = block_prefixes(model)
    count = settings["trainable_layers"]
    if abs(count) > len(prefixes):
        raise UserError(f"freeze: trainable_layers={count} but the model has {len(prefixes)} "
                        "layers")
    chosen_blocks = prefixes[-count:] if count > 0 else prefixes[:-count]
    modules = _names(settings["trainable_modules"])
    extra = _names(settings["extra_modules"]) + classifier_heads(model, kind)
    chosen: set[str] = set()
    for name, _ in model.named_parameters():
        in_block = any(name.startswith(p) for p in chosen_blocks)
        if in_block and (modules == ["all"] or _names_module(name, modules)):
            chosen.add(name)
        elif _names_module(name, extra):
            chosen.add(name)
    _check_names_exist(model, modules, extra, settings)
    return chosen


def _names(value: str | list[str]) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _names_module(param_name: str, modules: list[str]) -> bool:
    """Whether a module path of ``param_name`` has one of ``modules`` as a component or a
    dotted suffix (``mlp`` and ``self_attn.q_proj`` both select ``…self_attn.q_proj.weight``)."""
    parts = param_name.split(".")[:-1]
    path = ".".join(parts)
    return any(m in parts or path.endswith("." + m) or path == m or path.startswith(m + ".")
               for m in modules)


def _check_names_exist(model: nn.Module, modules: list[str], extra: list[str],
                       settings: dict[str, Any]) -> None:
    names = [n for n, _ in model.named_parameters()]
    for wanted, key in ((modules, "trainable_modules"), (extra, "extra_modules")):
        for module in wanted:
            if module != "all" and not any(_names_module(n, [module]) for n in names):
                raise UserError(f"freeze: {key} names '{module}', which is no module of "
                                "this model")


def projected_weights(model: nn.Module, targets: Any) -> list[nn.Parameter]:
    """The 2-D weights of the linear layers ``targets`` selects ("all-linear": every linear
    layer but the output heads, as LLaMA-Factory's ``galore_target: all``), each once."""
    seen: set[int] = set()
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or not _selected(name, targets):
            continue
        if any(part in HEAD_NAMES for part in name.split(".")):
            continue
        weight = module.weight
        if weight.requires_grad and weight.dim() == 2 and id(weight) not in seen:
            seen.add(id(weight))
            out.append(weight)
    if not out:
        raise UserError(f"no linear layer matches target_modules={targets!r}")
    return out
