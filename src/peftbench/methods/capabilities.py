"""What each technique can do: merge, several adapters, layer types, quantized bases, LoRA export.

Most of it is derived from the installed PEFT's own code (`derive_peft_capabilities`):

- ``merge``: a tuner layer of the technique implements ``merge`` (and does not just raise);
- ``multi_adapter``: PEFT can mix it with other adapters (its mixed-model mapping) or combine
  several of its adapters into one (``add_weighted_adapter``);
- ``layers``: the tuner layer classes it defines (``Linear``, ``Conv2d``, ``Embedding``, …);
- ``quantized``: the quantized base layers its code dispatches to (bitsandbytes 4/8-bit modules,
  PEFT's generic quantization backends, GPTQ/AWQ/… modules);
- ``lora_convertible``: a tuner layer overrides ``supports_lora_conversion`` (used by PEFT's
  ``convert_to_lora``);
- ``prompt_only``: the config is a prompt-learning config (the model's weights are untouched).

Deriving means importing PEFT (seconds), so the result is kept in a snapshot that ships with the
package (``peft_capabilities.json``) and is re-derived, once, into the user's cache whenever the
installed PEFT release differs from the snapshot's. What cannot be derived (techniques outside
PEFT, LoRA variants, known exceptions) is curated in `CURATED` below: one place.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import json
import os
import pkgutil
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

from peftbench.errors import UserError

LAYER_TYPES = ("Linear", "Conv", "Embedding")
#: quantized base layers a PEFT tuner can wrap, by peftbench's name
QUANT_BACKENDS = ("bnb-4bit", "bnb-8bit", "gptq", "awq", "aqlm", "eetq", "hqq", "torchao", "inc")
#: PEFT's generic quantization backend (``resolve_quantization_backend``) handles these
GENERIC_BACKENDS = ["bnb-4bit", "bnb-8bit", "hqq", "torchao", "aqlm", "eetq", "gptq", "inc"]
SNAPSHOT = Path(__file__).with_name("peft_capabilities.json")
CAPABILITY_KEYS = ("merge", "multi_adapter", "layers", "quantized", "lora_convertible",
                   "prompt_only")

_LORA = {"merge": True, "multi_adapter": True, "layers": ["Linear", "Conv", "Embedding"],
         "quantized": list(QUANT_BACKENDS), "lora_convertible": True, "prompt_only": False}

#: Curated capabilities: entries outside PEFT's mapping, and corrections to what is derived.
#: Each value is merged over the derived capabilities of ``based_on`` (or over nothing).
CURATED: dict[str, dict[str, Any]] = {
    # LoRA variants share LoRA's layers; only what differs is stated.
    "rslora": {"based_on": "lora"},
    "pissa": {"based_on": "lora",
              "why": "the residual base weights are exported as a rank-2r LoRA on save"},
    "olora": {"based_on": "lora",
              "why": "the residual base weights are exported as a rank-2r LoRA on save"},
    "dora": {"based_on": "lora", "multi_adapter": False, "lora_convertible": True,
             "why": "DoRA's magnitude vector rules out mixed-adapter batches"},
    "lora_plus": {"based_on": "lora", "why": "LoRA with a larger learning rate for B"},
    "lora_fa": {"based_on": "lora", "quantized": [],
                "why": "PEFT's LoRA-FA optimizer projects gradients on the unquantized layer"},
    "qlora": {"based_on": "lora", "quantized": ["bnb-4bit"], "layers": ["Linear"]},
    "delta_lora": {"merge": True, "multi_adapter": False, "layers": ["Linear"], "quantized": [],
                   "lora_convertible": False, "prompt_only": False,
                   "why": "updates the frozen weights in place, so they cannot stay quantized"},
    "full": {"merge": False, "multi_adapter": False, "layers": ["Linear", "Conv", "Embedding"],
             "quantized": [], "lora_convertible": False, "prompt_only": False,
             "why": "trains every weight: nothing separate to merge or to stack"},
    # Full-parameter training with memory-efficient optimizers, and freeze tuning: the trained
    # weights are the model (nothing to merge); the checkpoint is the weights or the trained
    # subset; `peftbench export` factorizes trained − base into LoRA.
    **{name: {"based_on": "full", "why": why} for name, why in {
        "galore": "trains every weight (low-rank optimizer state): nothing to merge",
        "galore_layerwise": "trains every weight (low-rank optimizer state): nothing to merge",
        "galore_8bit": "trains every weight (low-rank 8-bit optimizer state): nothing to merge",
        "apollo": "trains every weight (low-rank optimizer state): nothing to merge",
        "apollo_mini": "trains every weight (rank-1 optimizer state): nothing to merge",
        "badam": "trains the weights one block at a time: nothing to merge; ships the trained "
                 "blocks",
        "adam_mini": "trains every weight (one second moment per block): nothing to merge",
        "lomo": "trains every weight (update fused into backward): nothing to merge",
        "adalomo": "trains every weight (update fused into backward): nothing to merge",
        "freeze": "trains the last layers' own weights: nothing to merge; ships those layers",
    }.items()},
    # Corrections to the derivation, with the reason.
    "trainable_tokens": {"layers": ["Embedding"],
                         "why": "its layer wraps the embedding (the class name does not say so)"},
    "ln_tuning": {"layers": [], "why": "targets normalisation layers only"},
    "shadow": {"layers": [], "why": "wraps whole decoder blocks, not single layers"},
    "adaption_prompt": {"layers": [], "prompt_only": True, "merge": False,
                        "why": "adds gated prompt attention to decoder blocks"},
}

_PROMPT_QUANTIZED = list(QUANT_BACKENDS)  # the base is untouched, so any quantized base works


def capabilities(name: str) -> dict[str, Any]:
    """The capabilities of technique ``name``: the keys of `CAPABILITY_KEYS`.

    ``{"merge": bool, "multi_adapter": bool, "layers": [...], "quantized": [...],
    "lora_convertible": bool, "prompt_only": bool}``. Unknown names are a `UserError`.
    """
    key = name.strip().lower()
    table = all_capabilities()
    if key in table:
        caps = table[key]
    else:  # a technique registered from another package, or an alias; else a UserError
        from peftbench.methods import get_method

        caps = method_capabilities(get_method(name))
    return {k: _copy(v) for k, v in caps.items() if k in CAPABILITY_KEYS}


#: what a technique outside PEFT can do when its entry states nothing
NO_CAPABILITIES: dict[str, Any] = {"merge": False, "multi_adapter": False, "layers": [],
                                   "quantized": [], "lora_convertible": False,
                                   "prompt_only": False}


def method_capabilities(method: Any) -> dict[str, Any]:
    """The capabilities of catalog entry ``method`` (a `Method`): its row of the table, else
    (an entry the table does not know) those of its PEFT type, or `NO_CAPABILITIES` outside
    PEFT, with the entry's own ``capabilities`` over them."""
    table = all_capabilities()
    if method.name in table:
        return table[method.name]
    caps = dict(table.get((method.peft_type or "").lower(), NO_CAPABILITIES))
    caps.update({k: v for k, v in method.capabilities.items() if k in CAPABILITY_KEYS})
    return caps


def capability_note(name: str) -> str:
    """Why a curated capability differs from what PEFT's code says (empty if nothing curated)."""
    return str(CURATED.get(name.strip().lower(), {}).get("why", ""))


@lru_cache(maxsize=1)
def all_capabilities() -> dict[str, dict[str, Any]]:
    """Capabilities of every PEFT technique and every curated entry, by catalog name."""
    derived = peft_capabilities()["types"]
    table = {name: dict(caps) for name, caps in derived.items()}
    for name, curated in CURATED.items():
        base = dict(table.get(curated.get("based_on", name), {}))
        base.update({k: v for k, v in curated.items() if k in CAPABILITY_KEYS})
        if all(k in base for k in CAPABILITY_KEYS):
            table[name] = base
    return table


def peft_types() -> list[str]:
    """The techniques in the installed PEFT's mapping (catalog names: PEFT type, lower case)."""
    return sorted(peft_capabilities()["types"])


@lru_cache(maxsize=1)
def peft_capabilities() -> dict[str, Any]:
    """The derived capabilities for the installed PEFT: from the shipped snapshot when the
    PEFT release matches, else from the user cache, else derived now (and cached)."""
    version = installed_peft_version()
    for path in (SNAPSHOT, _cache_file(version)):
        data = _read(path)
        if data is not None and data.get("peft_version") == version:
            return data
    data = derive_peft_capabilities()
    _write(_cache_file(version), data)
    return data


def installed_peft_version() -> str:
    """The installed PEFT release (read from package metadata: no import)."""
    try:
        return importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        raise UserError("PEFT is not installed: pip install peft") from None


def derive_peft_capabilities() -> dict[str, Any]:
    """Derive every PEFT technique's capabilities from PEFT's code (imports PEFT: seconds)."""
    from peft.mapping import (
        PEFT_TYPE_TO_CONFIG_MAPPING,
        PEFT_TYPE_TO_MIXED_MODEL_MAPPING,
        PEFT_TYPE_TO_TUNER_MAPPING,
    )

    mixed = {_type_name(t) for t in PEFT_TYPE_TO_MIXED_MODEL_MAPPING}
    types: dict[str, dict[str, Any]] = {}
    for peft_type, config_cls in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        name = _type_name(peft_type)
        tuner = PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type)
        if _is_prompt_learning(config_cls) or tuner is None:
            types[name] = _prompt_capabilities(str(getattr(peft_type, "value", peft_type)))
        else:
            types[name] = _tuner_capabilities(peft_type, tuner, name in mixed)
    return {"peft_version": installed_peft_version(), "types": types}


def _prompt_capabilities(peft_type: str) -> dict[str, Any]:
    return {"peft_type": peft_type, "merge": False, "multi_adapter": False, "layers": [],
            "quantized": list(_PROMPT_QUANTIZED), "lora_convertible": False,
            "prompt_only": True}


def _tuner_capabilities(peft_type: Any, tuner: type, mixable: bool) -> dict[str, Any]:
    package = tuner.__module__.rsplit(".", 1)[0]
    layer_classes = _tuner_layer_classes(package)
    layers = sorted({kind for cls in layer_classes if (kind := _layer_kind(cls.__name__))},
                    key=LAYER_TYPES.index)
    return {
        "peft_type": str(getattr(peft_type, "value", peft_type)),
        "merge": any(_implements_merge(cls) for cls in layer_classes),
        "multi_adapter": mixable or hasattr(tuner, "add_weighted_adapter"),
        "layers": layers,
        "quantized": _quantized_backends(package),
        "lora_convertible": any(_overrides(cls, "supports_lora_conversion")
                                for cls in layer_classes),
        "prompt_only": False,
    }


def _tuner_layer_classes(package: str) -> list[type]:
    """The tuner layer classes a technique's package defines (quantized wrappers excluded)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found = []
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.replace("_", "") in {b.replace("-", "") for b in QUANT_BACKENDS} | {"bnb"}:
            continue
        try:
            module = importlib.import_module(f"{package}.{info.name}")
        except ImportError:  # optional dependencies of a submodule
            continue
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseTunerLayer)
                    and obj.__module__ == module.__name__):
                found.append(obj)
    return found


def _layer_kind(class_name: str) -> str | None:
    for kind in ("Conv", "Embedding", "Linear"):
        if kind in class_name:
            return kind
    return None


def _overrides(cls: type, attribute: str) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return getattr(cls, attribute, None) is not getattr(BaseTunerLayer, attribute, None)


def _implements_merge(cls: type) -> bool:
    """``merge`` is overridden and its body does more than raise."""
    if not _overrides(cls, "merge"):
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls.merge)))
    except (OSError, TypeError, SyntaxError):
        return True
    body = tree.body[0].body if tree.body and hasattr(tree.body[0], "body") else []
    statements = [s for s in body if not (isinstance(s, ast.Expr)
                                          and isinstance(s.value, ast.Constant))]
    return not (statements and isinstance(statements[0], ast.Raise))


def _quantized_backends(package: str) -> list[str]:
    """Quantized base layers the technique's code handles, from its source text."""
    pkg = importlib.import_module(package)
    folder = Path(pkg.__path__[0])
    source = {p.stem: p.read_text(errors="replace") for p in folder.glob("*.py")}
    text = "\n".join(source.values())
    found: set[str] = set()
    if "resolve_quantization_backend" in text:
        found.update(GENERIC_BACKENDS)
    if "Linear8bitLt" in text:
        found.add("bnb-8bit")
    if "Linear4bit" in text:
        found.add("bnb-4bit")
    for backend in ("gptq", "awq", "aqlm", "eetq", "hqq", "torchao", "inc"):
        if backend in source:
            found.add(backend)
    return [b for b in QUANT_BACKENDS if b in found]


def _is_prompt_learning(config_cls: type) -> bool:
    from peft.config import PromptLearningConfig

    return issubclass(config_cls, PromptLearningConfig)


def _type_name(peft_type: Any) -> str:
    return str(getattr(peft_type, "value", peft_type)).lower()


def _cache_file(version: str) -> Path:
    root = os.environ.get("PEFTBENCH_CACHE") or Path.home() / ".cache" / "peftbench"
    return Path(root) / f"peft-capabilities-{version}.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only cache only costs speed
        pass


def write_snapshot(path: Path = SNAPSHOT) -> dict[str, Any]:
    """Re-derive the capabilities from the installed PEFT and write the shipped snapshot."""
    data = derive_peft_capabilities()
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


if __name__ == "__main__":
    snapshot = write_snapshot()
    print(f"wrote {SNAPSHOT} for PEFT {snapshot['peft_version']} "
          f"({len(snapshot['types'])} techniques)")
