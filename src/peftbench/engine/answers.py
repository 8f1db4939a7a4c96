"""Each test item's answer, saved beside the result: what the model was asked, what it said,
what was extracted from it and whether that was right.

    result ``NAME--HASH.json`` ─ answers ``NAME--HASH.answers.jsonl`` (one item per line, in
    the test split's order; ``train_info.test_answers`` names the file)

A score of 0.000 is then something to look at, not to guess about: an instruct model answering
in full sentences under exact match shows its sentences here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peftbench.engine.results import atomic_write_text

#: what follows a result file's stem in its answers file's name
ANSWERS_SUFFIX = ".answers.jsonl"


@dataclass(frozen=True)
class Answer:
    """One test item: the prompt (or text), the reference answer, the model's raw output
    (generation; the predicted label for a classifier head), the answer extracted from it and
    whether it was right."""

    index: int
    prompt: str
    reference: str
    output: str
    answer: str
    correct: bool

    def to_json(self) -> dict[str, Any]:
        """The answer as one JSON line's data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        """The answer from one JSON line's data."""
        return cls(int(data["index"]), str(data["prompt"]), str(data["reference"]),
                   str(data["output"]), str(data["answer"]), bool(data["correct"]))


def answers_path(result_path: str | os.PathLike[str]) -> Path:
    """Where the answers of the result at ``result_path`` are: beside it, named after it."""
    path = Path(result_path)
    return path.with_name(path.stem + ANSWERS_SUFFIX)


def write_answers(path: Path, answers: list[Answer]) -> Path:
    """Write ``answers`` as JSON Lines, atomically (readers see the old file or the new one)."""
    return atomic_write_text(path, "".join(json.dumps(a.to_json(), ensure_ascii=False) + "\n"
                                           for a in answers))


def read_answers(path: str | os.PathLike[str]) -> list[Answer]:
    """The answers in the file at ``path`` ([] when it is missing or unreadable)."""
    try:
        lines = Path(path).read_text().splitlines()
        return [Answer.from_json(json.loads(line)) for line in lines if line.strip()]
    except (OSError, ValueError, KeyError, TypeError):
        return []
