"""The catalog as rows: for the `peftbench methods` table, its JSON, and the README's table.

The rows need neither torch nor PEFT (fast). Trainable-parameter counts on a model need the
model, so the engine measures them (`peftbench.engine.counts.trainable_counts`) and callers pass
them to `markdown_table`.
"""

from __future__ import annotations

from typing import Any

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
            "options": method.options, "curated": method.curated, "caveat": method.caveat,
            "trains_base_weights": method.trains_base_weights,
            **capabilities(method.name),
            "capability_note": capability_note(method.name),
        }
        kinds = {k: method.why_not(k, probe=probe) for k in ("causal-lm", "seq-cls",
                                                               "image-gen")}
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


def markdown_table(rows: list[dict[str, Any]], counts: dict[str, int | str] | None = None,
                   model_name: str = "") -> str:
    """The catalog as a Markdown table (the README's technique table)."""
    head = ["Technique", "Name", "Kind", "Merge", "Multi", "Layers", "Quantized bases",
            "Exact →LoRA", "Export →LoRA", "Default LR"]
    if counts is not None:
        head.insert(3, f"Trainable on {model_name}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["display"], f"`{row['name']}`", _kind_text(row),
                 _yes(row["merge"]), _yes(row["multi_adapter"]),
                 ", ".join(row["layers"]) or ("prompt" if row["prompt_only"] else "—"),
                 ", ".join(row["quantized"]) or "—", _yes(row["lora_convertible"]),
                 _yes(exportable_to_lora(row)), f"{row['default_lr']:g}"]
        if counts is not None:
            value = counts.get(row["name"])
            cells.insert(3, f"{value:,}" if isinstance(value, int) else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def exportable_to_lora(row: dict[str, Any]) -> bool:
    """Whether `peftbench export --to-lora` takes the technique: a mergeable change of Linear
    weights, approximated by a truncated SVD where PEFT's convert_to_lora (the exact
    conversion, ``lora_convertible``) does not apply; trained − base for a technique that
    trains the base weights themselves (full, GaLore, freeze tuning, …)."""
    return row.get("trains_base_weights", False) or (
        not row["prompt_only"] and row["merge"] and "Linear" in row["layers"])


def _kind_text(row: dict[str, Any]) -> str:
    applies = [k for k, ok in row["applies"].items() if ok]
    return ", ".join(applies) if applies else "—"


def _yes(flag: bool) -> str:
    return "✓" if flag else ""
