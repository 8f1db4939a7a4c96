"""Sample images of image-generation runs, for the report: one row per sample prompt, the base
model's image and each technique's (its best configuration's first run).

Runs list their samples in ``train_info.sample_images`` ({prompt, file, model}, the file beside
the result); a run without them (a text run, a PEFT-suite file) adds nothing.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peftbench import analysis as an


@dataclass
class SampleGrid:
    """Prompts (rows) by models (columns: "base", then techniques): PNG bytes or None."""

    prompts: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    images: dict[tuple[str, str], bytes] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.images)


def sample_grid(techniques: Sequence[an.Aggregate]) -> SampleGrid:
    """The samples of each technique's first successful run; the base model's from the
    first technique that saved them."""
    grid = SampleGrid()
    for agg in techniques:
        run = next(iter(agg.runs), None)
        for sample in _samples(run.path if run else ""):
            column = "base" if sample["model"] == "base" else agg.technique
            if (sample["prompt"], column) in grid.images:
                continue
            data = _read(Path(run.path).parent / sample["file"])
            if data is None:
                continue
            if sample["prompt"] not in grid.prompts:
                grid.prompts.append(sample["prompt"])
            if column not in grid.columns:
                grid.columns.append(column)
            grid.images.setdefault((sample["prompt"], column), data)
    if "base" in grid.columns:  # the base model first
        grid.columns.remove("base")
        grid.columns.insert(0, "base")
    return grid


def _samples(path: str) -> list[dict[str, str]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    found = (data.get("train_info") or {}).get("sample_images") or []
    return [s for s in found if isinstance(s, dict) and {"prompt", "file", "model"} <= set(s)]


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def grid_html(grid: SampleGrid) -> str:
    """The grid as an HTML table with the PNGs inline (the report stays one file)."""
    if not grid:
        return ""
    head = "<th>prompt</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in grid.columns)
    rows = []
    for prompt in grid.prompts:
        cells = []
        for column in grid.columns:
            data = grid.images.get((prompt, column))
            cells.append("<td>" + (
                f"<img alt='{html.escape(column)}' width='64' style='image-rendering:pixelated'"
                f" src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
                if data else "—") + "</td>")
        rows.append(f"<tr><td>{html.escape(prompt)}</td>{''.join(cells)}</tr>")
    return ("<h3>Sample images</h3><p>The same seeds for every model; the last prompts "
            "check leakage (the subject's word on another noun, the class without it).</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def grid_markdown(grid: SampleGrid, slug: str) -> tuple[str, dict[str, bytes]]:
    """The grid as a Markdown table linking image files, and those files' names and bytes
    (written beside report.md)."""
    if not grid:
        return "", {}
    files: dict[str, bytes] = {}
    lines = ["### Sample images\n", "| prompt | " + " | ".join(grid.columns) + " |",
             "|" + "---|" * (len(grid.columns) + 1)]
    for row, prompt in enumerate(grid.prompts, 1):
        cells = []
        for column in grid.columns:
            data = grid.images.get((prompt, column))
            if data is None:
                cells.append("—")
                continue
            name = f"sample-{slug}-{re.sub(r'[^A-Za-z0-9]+', '-', column)}-{row:02d}.png"
            files[name] = data
            cells.append(f"![{column}]({name})")
        lines.append(f"| {prompt.replace('|', '/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", files
