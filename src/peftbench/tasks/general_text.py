"""General text for the forgetting probe: a fixed sample of WikiText-2 paragraphs.

The probe measures how much a fine-tuned model's loss on ordinary prose rises compared with
the base model, so the text must be the same for every run: a seeded sample of paragraphs,
each cut to a block of a few hundred characters at a word boundary. Headings (`` = Title = ``)
and empty lines are skipped, and WikiText's split markers (``@-@``, ``@,@``, ``@.@``) are
joined back into plain ``-``, ``,`` and ``.``.
"""

from __future__ import annotations

import re
from pathlib import Path

from peftbench.errors import UserError
from peftbench.tasks.hub import load_hub_rows
from peftbench.tasks.readers import read_text
from peftbench.tasks.sampling import sample_indices

HUB = ("Salesforce/wikitext", "wikitext-2-raw-v1")
FILES = {"validation": "valid.txt", "test": "test.txt"}
_MARKER = re.compile(r" @([-,.])@ ")


def paragraph_blocks(lines: list[str], min_chars: int, max_chars: int) -> list[str]:
    """Blocks of at most ``max_chars`` from paragraphs of at least ``min_chars``, in order."""
    blocks = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("="):
            continue
        text = _MARKER.sub(r"\1", text)
        if len(text) < min_chars:
            continue
        if len(text) > max_chars:
            cut = text.rfind(" ", 0, max_chars + 1)
            text = text[: cut if cut > 0 else max_chars]
        blocks.append(text)
    return blocks


def _lines(path: str | None, split: str) -> list[str]:
    if path is None:
        return [row["text"] for row in load_hub_rows(*HUB, split, ("text",))]
    folder = Path(path)
    file = folder / FILES[split] if folder.is_dir() else folder
    return read_text(file).splitlines()


def load_general_text(
    path: str | None,
    n_blocks: int,
    *,
    seed: int = 0,
    split: str = "validation",
    min_chars: int = 200,
    max_chars: int = 500,
) -> list[str]:
    """``n_blocks`` WikiText-2 paragraphs (seeded sample, document order), for forgetting.

    ``path`` is a WikiText-2 folder (``valid.txt``/``test.txt``) or one text file; ``None``
    loads ``Salesforce/wikitext`` (``wikitext-2-raw-v1``) from the hub. Fewer blocks come back
    when the text has fewer paragraphs.
    """
    if split not in FILES:
        raise UserError(f"general text: split must be one of {', '.join(FILES)}, got {split!r}")
    if n_blocks <= 0:
        return []
    blocks = paragraph_blocks(_lines(path, split), min_chars, max_chars)
    if not blocks:
        raise UserError(f"{path or HUB[0]}: no paragraphs of {min_chars}+ characters found")
    return [blocks[i] for i in sample_indices(len(blocks), n_blocks, seed)]
