"""The catalog of techniques: `get_method("lora")`, `method_names()`, `capabilities("lora")`.

Every technique of the installed PEFT release is an entry (discovered from PEFT's mapping);
curated entries add defaults, learning rates and descriptions on top, and peftbench adds LoRA
variants, optimizer-based techniques, Delta-LoRA and full fine-tuning. Importing this package
imports neither torch nor PEFT, so listing the catalog is fast.
"""

from __future__ import annotations

from functools import lru_cache

from peftbench.errors import UserError
from peftbench.methods.base import MODEL_KINDS, Method, ModelKind, resolve_targets
from peftbench.methods.capabilities import capabilities, capability_note
from peftbench.methods.overrides import parse_overrides

#: names people use that the alias table does not list
EXTRA_ALIASES = {"full_finetuning": "full", "full_fine_tuning": "full", "fft": "full",
                 "bone": "miss", "loraplus": "lora_plus", "lorafa": "lora_fa"}


@lru_cache(maxsize=1)
def _catalog() -> dict[str, Method]:
    from peftbench.methods.capabilities import peft_types
    from peftbench.methods.catalog import curated_methods, uncurated_method

    table = curated_methods()
    for name in peft_types():
        if name not in table:
            table[name] = uncurated_method(name)
    return dict(sorted(table.items()))


def method_names() -> list[str]:
    """Every technique name the catalog knows (sorted)."""
    return list(_catalog())


def all_methods() -> list[Method]:
    """Every catalog entry, sorted by name."""
    return list(_catalog().values())


def get_method(name: str) -> Method:
    """The catalog entry for ``name`` (or an alias: "LoRA-FA", "Bone"); unknown is a
    `UserError`."""
    table = _catalog()
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in table:
        return table[key]
    if key in EXTRA_ALIASES:
        return table[EXTRA_ALIASES[key]]
    from peftbench.methods.aliases import technique_for_alias

    alias = technique_for_alias(name)
    if alias in table:
        return table[alias]
    raise UserError(f"unknown method '{name}'; see `peftbench methods` for the catalog")


def applicable_methods(kind: ModelKind) -> list[Method]:
    """The entries that can train a ``kind`` model here (the contestants)."""
    return [m for m in all_methods() if m.why_not(kind) is None]


__all__ = ["MODEL_KINDS", "Method", "ModelKind", "all_methods", "applicable_methods",
           "capabilities", "capability_note", "get_method", "method_names", "parse_overrides",
           "resolve_targets"]
