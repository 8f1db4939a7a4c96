"""The catalog as rows: for the `peftbench methods` table, its JSON, and the README's table.

Without a model the rows need neither torch nor PEFT (fast). With a model, each applicable
technique is built on it once to count its trainable parameters; the counts are cached per
(PEFT and transformers releases, model, targets) because building every technique on a real
model takes a while.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.methods import all_methods, capabilities, capability_note
from peftbench.methods.base import ModelKind

FLAG_COLUMNS = [("merge", "merge"), ("multi_adapter", "multi"),
                ("lora_convertible", "→LoRA"), ("prompt_only", "prompt")]


def catalog_rows(kind: ModelKind | None = None, probe: bool = False) -> list[dict[str, Any]]:
    """One dict per technique: name, display name, description, capabilities, default LR and
    its source, and (for ``kind``) whether it applies here and why not."""
    from peftbench.methods.aliases import display_name

    rows = []
    for method in all_methods():
        row: dict[str, Any] = {
            "name": method.name, "display": display_name(method.name),
            "family": method.family, "peft_type": method.peft_type,
            "description": method.description, "default_lr": method.default_lr,
            "lr_source": method.lr_source, "defaults": method.defaults,
            "options": method.options, "curated": method.curated,
            **capabilities(method.name),
            "capability_note": capability_note(method.name),
        }
        kinds = {k: method.why_not(k, probe=probe) for k in ("causal-lm", "seq-cls")}
        row["applies"] = {k: why is None for k, why in kinds.items()}
        row["why_not"] = {k: why for k, why in kinds.items() if why}
        if kind is not None:
            row["applicable"] = kinds[kind] is None
        rows.append(row)
    return rows


def filter_rows(rows: list[dict[str, Any]], *, merge: bool | None = None,
                multi_adapter: bool | None = None, lora_convertible: bool | None = None,
                prompt_only: bool | None = None, layer: str | None = None,
                quantized: str | None = None, applicable: bool = False) -> list[dict[str, Any]]:
    """Rows with the asked capabilities (None = no filter)."""
    wanted = {"merge": merge, "multi_adapter": multi_adapter,
              "lora_convertible": lora_convertible, "prompt_only": prompt_only}
    out = []
    for row in rows:
        if any(v is not None and row[k] != v for k, v in wanted.items()):
            continue
        if layer and layer.lower() not in [x.lower() for x in row["layers"]]:
            continue
        if quantized and quantized.lower() not in row["quantized"]:
            continue
        if applicable and not row.get("applicable", True):
            continue
        out.append(row)
    return out


def trainable_counts(model_name: str, kind: ModelKind, targets: str | None = None,
                     names: list[str] | None = None) -> dict[str, int | str]:
    """Trainable parameters of each technique's default config on ``model_name`` (or why it
    cannot apply), cached per PEFT and transformers release, model and targets (whether a
    technique applies to a model can depend on both releases)."""
    import importlib.metadata

    from peftbench.methods import get_method
    from peftbench.methods.capabilities import installed_peft_version
    from peftbench.models import cache_dir, load_model

    transformers = importlib.metadata.version("transformers")
    releases = f"{installed_peft_version()}-transformers{transformers}"
    path = cache_dir() / "method-counts" / (
        f"{releases}--{model_name.replace('/', '_')}--{kind}--{targets or 'attention'}.json")
    cached = _read(path)
    wanted = names or [m.name for m in all_methods()]
    for name in wanted:
        if name in cached:
            continue
        method = get_method(name)
        reason = method.why_not(kind)
        if reason:
            cached[name] = reason
            continue
        model = load_model(model_name, kind, seed=0).model
        try:
            built = method.build(model, kind, targets, {})
        except UserError as exc:
            cached[name] = str(exc)
            continue
        cached[name] = sum(p.numel() for p in built.parameters() if p.requires_grad)
        _write(path, cached)
    _write(path, cached)
    return {n: cached[n] for n in wanted}


def markdown_table(rows: list[dict[str, Any]], counts: dict[str, int | str] | None = None,
                   model_name: str = "") -> str:
    """The catalog as a Markdown table (the README's technique table)."""
    head = ["Technique", "Name", "Kind", "Merge", "Multi", "Layers", "Quantized bases",
            "→LoRA", "Default LR"]
    if counts is not None:
        head.insert(3, f"Trainable on {model_name}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["display"], f"`{row['name']}`", _kind_text(row),
                 _yes(row["merge"]), _yes(row["multi_adapter"]),
                 ", ".join(row["layers"]) or ("prompt" if row["prompt_only"] else "—"),
                 ", ".join(row["quantized"]) or "—", _yes(row["lora_convertible"]),
                 f"{row['default_lr']:g}"]
        if counts is not None:
            value = counts.get(row["name"])
            cells.insert(3, f"{value:,}" if isinstance(value, int) else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _kind_text(row: dict[str, Any]) -> str:
    applies = [k for k, ok in row["applies"].items() if ok]
    return ", ".join(applies) if applies else "—"


def _yes(flag: bool) -> str:
    return "✓" if flag else ""


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
