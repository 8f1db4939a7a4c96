"""`sst2`: GLUE SST-2 binary sentiment (labels ``negative``, ``positive``), accuracy.

The hub copy's test split has no labels, so, from either source, the test split is the
official validation set (``dev.tsv``, 872 sentences) and our validation split is a seeded
sample carved out of train. A local folder needs ``train.tsv`` and ``dev.tsv`` with a header
naming a label column (``label``) and a text column (``content`` or ``sentence``); its
labelled ``test.tsv`` is not used, which keeps local and hub results comparable.
Causal LM prompt: ``"Review: {text}\\nSentiment:"``, target ``" positive"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.tasks.base import Example, TaskDoc, TaskOption, document_task, register
from peftbench.tasks.classification import ClassificationTask
from peftbench.tasks.hub import load_hub_rows
from peftbench.tasks.options import TaskOptions
from peftbench.tasks.readers import read_table
from peftbench.tasks.sampling import carve, sample_indices

LABELS = ("negative", "positive")
HUB = ("nyu-mll/glue", "sst2")
_TEXT_COLUMNS = ("content", "sentence")


def read_local_sst2(folder: str, name: str) -> list[tuple[str, int]]:
    """``(text, label)`` rows of ``folder/name``; labels must be 0 or 1."""
    if not Path(folder).is_dir():
        raise UserError(f"{folder}: SST-2 folder not found (expected train.tsv, dev.tsv)")
    rows = read_table(Path(folder) / name, delimiter="\t", columns=("label",))
    text_column = next((c for c in _TEXT_COLUMNS if c in rows[0].fields), None)
    if text_column is None:
        raise UserError(f"{rows[0].file} line 1: missing column 'content' (or 'sentence')")
    out = []
    for row in rows:
        label = row.fields["label"].strip()
        if label not in ("0", "1"):
            raise row.fail(f"label must be 0 or 1, got {label!r}")
        out.append((row.string(text_column), int(label)))
    return out


def read_hub_sst2(split: str) -> list[tuple[str, int]]:
    """``(sentence, label)`` rows of the hub's SST-2 ``split``."""
    rows = load_hub_rows(*HUB, split, ("sentence", "label"))
    return [(r["sentence"], int(r["label"])) for r in rows]


class Sst2Task(ClassificationTask):
    """SST-2 sentiment classification."""

    name = "sst2"
    prompt_template = "Review: {text}\nSentiment:"

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.set_labels(LABELS)

    def build_splits(self) -> dict[str, list[Example]]:
        """Validation carved from train (seeded), test = the official validation set."""
        s = self.settings
        if s["data"]:
            train, test = (read_local_sst2(s["data"], f) for f in ("train.tsv", "dev.tsv"))
        else:
            train, test = read_hub_sst2("train"), read_hub_sst2("validation")
        if s["n_valid"] >= len(train):
            raise UserError(f"task sst2: n_valid={s['n_valid']} leaves no training examples")
        valid_idx, train_idx, rest = carve(len(train), [s["n_valid"], s["n_train"] or 0], s["seed"])
        if s["n_train"] is None:
            train_idx = sorted(train_idx + rest)
        test_idx = sample_indices(len(test), s["n_test"], s["seed"])
        return {
            "train": [self.make_example(*train[i]) for i in train_idx],
            "validation": [self.make_example(*train[i]) for i in valid_idx],
            "test": [self.make_example(*test[i]) for i in test_idx],
        }

    def source(self) -> dict[str, Any]:
        """Local folder (absolute) or hub id, seed and the requested caps."""
        s = dict(self.settings)
        s["data"] = str(Path(s["data"]).resolve()) if s["data"] else f"hub:{HUB[0]}/{HUB[1]}"
        s["test_source"] = "official validation set (dev.tsv; hub: validation)"
        return s


document_task("sst2", TaskDoc(
    summary="GLUE SST-2 sentiment (negative/positive); an encoder gets a classification head, "
            "a causal LM answers with the label; test = the official validation set",
    metric="accuracy",
    options=(
        TaskOption("data", None, "a local folder with train.tsv and dev.tsv (default: "
                   "nyu-mll/glue from the hub)"),
        TaskOption("seed", 0, "seed of the validation sample and of size caps"),
        TaskOption("n_train", None, "cap on training sentences (default: all)"),
        TaskOption("n_valid", 200, "validation sentences, carved from train"),
        TaskOption("n_test", None, "cap on test sentences (default: all 872)"),
    ),
    example="--model minilm-l6 --task sst2 --data path/to/SST-2 --task-opt n_train=2000",
))


@register("sst2")
def make_sst2(argument: str, options: dict[str, Any]) -> Sst2Task:
    """SST-2; options: data (folder), seed, n_train (all), n_valid (200), n_test (all)."""
    if argument:
        raise UserError("task sst2 takes its folder as option 'data', not 'sst2:PATH'")
    opts = TaskOptions("sst2", options)
    settings = {
        "data": opts.text("data", None),
        "seed": opts.integer("seed", 0),
        "n_train": opts.integer("n_train", None, minimum=1),
        "n_valid": opts.integer("n_valid", 200, minimum=1),
        "n_test": opts.integer("n_test", None, minimum=1),
    }
    opts.finish()
    if settings["n_valid"] is None:
        raise UserError("task sst2: n_valid needs a number (not 'all')")
    return Sst2Task(settings)
