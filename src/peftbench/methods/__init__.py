"""The catalog of techniques: `get_method("lora")`.

Any PEFT technique is available by its PEFT type name (lower case); curated entries add
defaults and learning rates on top.
"""

from __future__ import annotations

from peftbench.errors import UserError
from peftbench.methods.base import Method, ModelKind, resolve_targets
from peftbench.methods.capabilities import capabilities

_CURATED: dict[str, Method] = {
    "lora": Method(
        name="lora",
        peft_type="LORA",
        description="Low-rank update B·A added to frozen weights (Hu et al., 2021).",
        defaults={"r": 16, "lora_alpha": 32, "lora_dropout": 0.0},
        default_lr=1e-3,
        lr_source="peftbench calibration on SmolLM2-135M/arith (LoRA at r=16 on a 135M model)",
    ),
}


def method_names() -> list[str]:
    """Every technique name the catalog knows."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    generic = {str(getattr(k, "value", k)).lower() for k in PEFT_TYPE_TO_CONFIG_MAPPING}
    return sorted(set(_CURATED) | generic)


def get_method(name: str) -> Method:
    """The catalog entry for ``name``; unknown names are a `UserError`."""
    key = name.strip().lower()
    if key in _CURATED:
        return _CURATED[key]
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    for peft_type in PEFT_TYPE_TO_CONFIG_MAPPING:
        value = str(getattr(peft_type, "value", peft_type))
        if value.lower() == key:
            prompt = value in {"PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING",
                               "MULTITASK_PROMPT_TUNING", "ADAPTION_PROMPT", "CPT"}
            return Method(name=key, peft_type=value, targets_modules=not prompt)
    raise UserError(f"unknown method '{name}'; see `peftbench methods` for the catalog")


__all__ = ["Method", "ModelKind", "capabilities", "get_method", "method_names",
           "resolve_targets"]
