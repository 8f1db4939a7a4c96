"""The catalog of techniques: `get_method("lora")`, `method_names()`, `capabilities("lora")`.

Every technique of the installed PEFT release is an entry (discovered from PEFT's mapping);
curated entries add defaults, learning rates and descriptions on top, and peftbench adds LoRA
variants, optimizer-based techniques, Delta-LoRA and full fine-tuning. Other packages add
techniques with `register_method` or an entry point in the group ``peftbench.methods`` (see
docs/extending.md). Importing this package imports neither torch nor PEFT, and the catalog is
built on first use, so listing it is fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peftbench.errors import UserError
from peftbench.methods.base import MODEL_KINDS, Method, ModelKind, resolve_targets
from peftbench.methods.capabilities import capabilities, capability_note
from peftbench.methods.overrides import parse_overrides
from peftbench.registry import Registry

#: the entry point group through which installed packages add techniques
ENTRY_POINT_GROUP = "peftbench.methods"

#: names people use that the alias table does not list
EXTRA_ALIASES = {"full_finetuning": "full", "full_fine_tuning": "full", "fft": "full",
                 "bone": "miss", "loraplus": "lora_plus", "lorafa": "lora_fa"}

MethodFactory = Callable[[], Method]


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _builtin_methods() -> None:
    """Register the catalog: curated entries, then every other technique in PEFT's mapping."""
    import peftbench.methods.delta_lora  # noqa: F401  (registers itself)
    from peftbench.methods.capabilities import peft_types
    from peftbench.methods.catalog import curated_methods, uncurated_method

    table = curated_methods()
    for name in peft_types():
        if name not in table:
            table[name] = uncurated_method(name)
    for name, method in table.items():
        _METHODS.register(name, method)


def _as_method(name: str, loaded: Any) -> Method:
    """A `Method` from what a registration loaded: the entry itself, or a factory's result."""
    method = loaded if isinstance(loaded, Method) else loaded() if callable(loaded) else None
    if not isinstance(method, Method):
        raise UserError(f"the method '{name}' is registered as {loaded!r}, which is neither a "
                        "peftbench.methods.Method nor a function returning one")
    if method.name != name:
        raise UserError(f"the method registered as '{name}' is named '{method.name}'; register "
                        "it under its own name")
    return method


_METHODS: Registry[Method] = Registry(
    "method", group=ENTRY_POINT_GROUP, builtins=_builtin_methods, normalize=_key,
    convert=_as_method, unknown="unknown method '{name}'; see `peftbench methods` for the catalog")


def register_method(method_or_factory: Any = None, name: str | None = None, *,
                    replace: bool = False) -> Any:
    """Add a technique to the catalog; returns what it was given.

    ``method_or_factory`` is a `Method` (its name is the default ``name``), a function without
    arguments returning one (called on first use), or the string ``"package.module:attribute"``
    naming either (imported on first use). Without it, this is a decorator for a factory::

        @register_method(name="my_lora")
        def my_lora() -> Method: ...

    A taken name raises `ValueError` unless ``replace``.
    """
    if method_or_factory is None:
        if name is None:
            raise TypeError("register_method needs a name to decorate a factory")

        def decorate(factory: MethodFactory) -> MethodFactory:
            register_method(factory, name, replace=replace)
            return factory

        return decorate
    if name is None:
        if not isinstance(method_or_factory, Method):
            raise TypeError("register_method needs a name for a factory or a 'module:attribute'")
        name = method_or_factory.name
    if isinstance(method_or_factory, Method):
        _as_method(_key(name), method_or_factory)
    elif not (callable(method_or_factory) or isinstance(method_or_factory, str)):
        raise TypeError(f"register_method takes a Method, a factory or 'module:attribute', "
                        f"not {method_or_factory!r}")
    _METHODS.register(name, method_or_factory, replace=replace)
    return method_or_factory


def method_names() -> list[str]:
    """Every technique name the catalog knows (sorted)."""
    return _METHODS.names()


def all_methods() -> list[Method]:
    """Every catalog entry, sorted by name."""
    return _METHODS.values()


def get_method(name: str) -> Method:
    """The catalog entry for ``name`` (or an alias: "LoRA-FA", "Bone"); unknown is a
    `UserError` that suggests the closest name."""
    found = _METHODS.find(name)
    if found is not None:
        return found
    key = _key(name)
    if key in EXTRA_ALIASES:
        return _METHODS.get(EXTRA_ALIASES[key])
    from peftbench.methods.aliases import technique_for_alias

    alias = technique_for_alias(name)
    if alias is not None:
        found = _METHODS.find(alias)
        if found is not None:
            return found
    raise _METHODS.unknown_error(name, EXTRA_ALIASES)


def applicable_methods(kind: ModelKind) -> list[Method]:
    """The entries that can train a ``kind`` model here (the contestants)."""
    return [m for m in all_methods() if m.why_not(kind) is None]


__all__ = ["ENTRY_POINT_GROUP", "MODEL_KINDS", "Method", "ModelKind", "all_methods",
           "applicable_methods", "capabilities", "capability_note", "get_method",
           "method_names", "parse_overrides", "register_method", "resolve_targets"]
