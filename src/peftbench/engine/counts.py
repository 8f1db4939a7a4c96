"""Trainable parameters of every technique's default config on a model (`peftbench methods
--model`, the README's technique table).

Each applicable technique is built once on a freshly loaded model, with its optimizer (which
may freeze parameters, as LoRA-FA's does), to count its trainable parameters; the counts are
cached per (PEFT and transformers releases, model, targets) because
building every technique on a real model takes a while.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

from peftbench.engine.measure import count_parameters
from peftbench.engine.models import cache_dir, load_model
from peftbench.errors import UserError, first_line
from peftbench.methods import all_methods, get_method
from peftbench.methods.base import Method, ModelKind
from peftbench.methods.capabilities import installed_peft_version


def trainable_counts(model_name: str, kind: ModelKind, targets: str | None = None,
                     names: list[str] | None = None) -> dict[str, int | str]:
    """Trainable parameters of each technique's default config on ``model_name`` (or why it
    cannot apply), cached per PEFT and transformers release, model and targets (whether a
    technique applies to a model can depend on both releases)."""
    transformers = importlib.metadata.version("transformers")
    releases = f"{installed_peft_version()}-transformers{transformers}"
    # "v2": counted after the optimizer is built (LoRA-FA's freezes its A matrices);
    # "v3": quantized weights by their logical size, catalog exclusions checked before the cache
    path = cache_dir() / "method-counts-v3" / (
        f"{releases}--{model_name.replace('/', '_')}--{kind}--{targets or 'attention'}.json")
    cached = _read(path)
    failed: dict[str, str] = {}  # answers not cached: exclusions and failed builds
    wanted = names or [m.name for m in all_methods()]
    for name in wanted:
        method = get_method(name)
        reason = method.why_not(kind)  # the catalog's answer, whatever the cache holds
        if reason:
            failed[name] = reason
            continue
        if name in cached:
            continue
        model = load_model(model_name, kind, seed=0).model
        try:
            cached[name] = _count_trainable(method, model, kind, targets)
        except UserError as exc:
            cached[name] = str(exc)
        except Exception as exc:  # a bug: say so, and do not cache it
            failed[name] = f"failed to build: {type(exc).__name__}: {first_line(exc)}"
            continue
        _write(path, cached)
    _write(path, cached)
    return {n: failed.get(n, cached.get(n)) for n in wanted}


def _count_trainable(method: Method, model: Any, kind: ModelKind, targets: str | None) -> int:
    """Trainable parameters of ``method`` built on ``model``, once its optimizer is built (it
    may freeze some, as LoRA-FA's does), each quantized weight by its logical size."""
    if kind == "image-gen":  # the image track's targets (the suite's Flux modules)
        from peftbench.engine.image_run import build_adapter

        built = build_adapter(method, model, targets, {})
    else:
        built = method.build(model, kind, targets, {})
    method.make_optimizer(built, method.default_lr, 0.0)
    return count_parameters(built)[0]


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass
