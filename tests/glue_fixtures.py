"""Small local copies of every GLUE and SuperGLUE task in the hub's schema, written by the
tests: one JSONL file per split, a few rows each."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def _pair(first: str, second: str, classes: int) -> Callable[[int, str], Row]:
    return lambda i, s: {first: f"{s} first text {i}", second: f"{s} second text {i}",
                         "label": i % classes, "idx": i}


def _sentence(classes: int) -> Callable[[int, str], Row]:
    return lambda i, s: {"sentence": f"{s} sentence number {i}", "label": i % classes, "idx": i}


def _stsb(i: int, s: str) -> Row:
    return {"sentence1": f"{s} a {i}", "sentence2": f"{s} b {i}", "label": (i * 0.7) % 5.0,
            "idx": i}


def _copa(i: int, s: str) -> Row:
    return {"premise": f"{s} premise {i}", "choice1": f"first {i}", "choice2": f"second {i}",
            "question": ("cause", "effect")[i % 2], "label": i % 2, "idx": i}


def _wic(i: int, s: str) -> Row:
    return {"word": f"bank{i}", "sentence1": f"{s} river bank {i}",
            "sentence2": f"{s} money bank {i}", "start1": 0, "start2": 0, "end1": 4, "end2": 4,
            "label": i % 2, "idx": i}


def _wsc(i: int, s: str) -> Row:
    return {"text": f"{s} Mark told Pete he was late {i}", "span1_index": 0, "span2_index": 3,
            "span1_text": "Mark", "span2_text": "he", "label": i % 2, "idx": i}


def _boolq(i: int, s: str) -> Row:
    return {"question": f"{s} is it true {i}", "passage": f"{s} a passage {i}",
            "label": i % 2, "idx": i}


def multirc_rows(split: str, questions: int) -> list[Row]:
    """Three answer options per question, two questions per paragraph."""
    rows = []
    for q in range(questions):
        for a in range(3):
            rows.append({"paragraph": f"{split} paragraph {q // 2}", "question": f"question {q}",
                         "answer": f"option {a}", "label": int(a == q % 3),
                         "idx": {"paragraph": q // 2, "question": q, "answer": a}})
    return rows


def record_rows(split: str, queries: int) -> list[Row]:
    """Three candidate entities per query (one repeated), the first one right."""
    return [{"passage": f"{split} Alice met Bob in Paris {q}.\n@highlight\nnews {q}",
             "query": f"@placeholder went home {q}",
             "entities": ["Alice", "Bob", "Paris", "Bob"], "answers": ["Alice"],
             "idx": {"passage": q, "query": q}} for q in range(queries)]


#: each task's row maker ``(index, split) -> row``
MAKERS: dict[str, Callable[[int, str], Row]] = {
    "glue:cola": _sentence(2), "glue:sst2": _sentence(2),
    "glue:mrpc": _pair("sentence1", "sentence2", 2),
    "glue:qqp": _pair("question1", "question2", 2), "glue:stsb": _stsb,
    "glue:mnli_matched": _pair("premise", "hypothesis", 3),
    "glue:mnli_mismatched": _pair("premise", "hypothesis", 3),
    "glue:qnli": _pair("question", "sentence", 2), "glue:rte": _pair("sentence1", "sentence2", 2),
    "glue:wnli": _pair("sentence1", "sentence2", 2),
    "superglue:boolq": _boolq, "superglue:cb": _pair("premise", "hypothesis", 3),
    "superglue:copa": _copa, "superglue:rte": _pair("premise", "hypothesis", 2),
    "superglue:wic": _wic, "superglue:wsc": _wsc,
    "superglue:axb": _pair("premise", "hypothesis", 2),
    "superglue:axg": _pair("premise", "hypothesis", 2),
}

#: the file scored as test, per task (the rest use validation.jsonl)
TEST_FILES = {"glue:mnli_matched": "validation_matched", "glue:mnli_mismatched":
              "validation_mismatched", "superglue:axb": "test", "superglue:axg": "test"}


def write_jsonl(path: Path, rows: list[Row]) -> Path:
    """``rows`` as JSON Lines at ``path``."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_task(folder: Path, task: str, n_train: int = 20, n_test: int = 6) -> Path:
    """A local copy of ``task`` in ``folder``: train.jsonl and the file scored as test."""
    folder.mkdir(parents=True, exist_ok=True)
    test_name = TEST_FILES.get(task, "validation")
    if task == "superglue:multirc":
        train, test = multirc_rows("train", n_train), multirc_rows("test", n_test)
    elif task == "superglue:record":
        train, test = record_rows("train", n_train), record_rows("test", n_test)
    else:
        make = MAKERS[task]
        train = [make(i, "train") for i in range(n_train)]
        test = [make(i, "test") for i in range(n_test)]
        if task == "superglue:axb":  # the diagnostic's own field names
            test = [{"sentence1": r["premise"], "sentence2": r["hypothesis"],
                     "label": r["label"], "idx": r["idx"]} for r in test]
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / f"{test_name}.jsonl", test)
    return folder


ALL_TASKS = (*MAKERS, "superglue:multirc", "superglue:record")
