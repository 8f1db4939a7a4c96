"""`gsm8k` and `metamathqa`: grade-school math with step-by-step answers.

- ``gsm8k`` trains on GSM8K train, validates on a fixed seeded sample of GSM8K train (removed
  from train) and tests on GSM8K test.
- ``metamathqa`` trains on MetaMathQA (minus responses too long for the PEFT suite's
  768-token budget) and validates/tests on GSM8K exactly like ``gsm8k``, as the PEFT suite does.

Both use the PEFT suite's prompt ``"Question: {q} Think step by step.\\nAnswer:"``. GSM8K
targets drop the ``<<48/2=24>>`` calculator annotations and join the steps into one line:
``" Natalia sold 48/2 = 24 clips in May. ... #### 72"``. MetaMathQA targets are the response
as published (it ends in ``The answer is: 72``). Scoring is exact match of the final number.

Size caps (``n_train``, ``n_valid``, ``n_test``) take a seeded sample, kept in file order; see
`peftbench.tasks.sampling`. At seed 0 the 50-example validation set is the PEFT suite's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.tasks.answers import extract_final_number, normalize_number
from peftbench.tasks.base import Example, TaskDoc, TaskOption, document_task, register
from peftbench.tasks.hub import load_hub_rows
from peftbench.tasks.options import TaskOptions
from peftbench.tasks.prepared import PreparedTask
from peftbench.tasks.readers import Row, read_jsonl, read_records
from peftbench.tasks.sampling import carve, sample_indices

PROMPT = "Question: {question} Think step by step.\nAnswer:"
GSM8K_HUB = ("openai/gsm8k", "main")
METAMATH_HUB = "meta-math/MetaMathQA"
#: the PEFT suite drops MetaMathQA examples whose "query response" exceeds this many characters
METAMATH_CHAR_LIMIT = 1300
_CALCULATOR = re.compile(r"<<[^>]*>>")


def gsm8k_example(question: str, answer: str, where: str) -> Example:
    """A GSM8K record as an example; ``answer`` must end in ``#### <number>``."""
    steps, marker, final = answer.rpartition("####")
    if not marker or not final.strip():
        raise UserError(f"{where}: answer does not end in '#### <number>'")
    solution = " ".join(_CALCULATOR.sub("", steps).split())
    number = normalize_number(final)
    target = f" {solution} #### {number}" if solution else f" #### {number}"
    return Example(PROMPT.format(question=question.strip()), target, number)


def metamath_example(query: str, response: str) -> Example:
    """A MetaMathQA record as an example (the reference answer follows ``The answer is:``).

    MATH-derived records have non-numeric answers (``\\frac{1}{2}``); they are kept as text.
    """
    _, marker, final = response.rpartition("The answer is:")
    answer = normalize_number(final) if marker else extract_final_number(response)
    return Example(PROMPT.format(question=query.strip()), " " + response.strip(), answer)


def _local_gsm8k(folder: str, split: str) -> list[tuple[str, str, str]]:
    path = Path(folder) / f"{split}.jsonl"
    if not Path(folder).is_dir():
        raise UserError(f"{folder}: GSM8K folder not found (expected train.jsonl, test.jsonl)")
    rows = read_jsonl(path)
    return [(r.string("question"), r.string("answer"), r.where()) for r in rows]


def read_gsm8k(folder: str | None, split: str) -> list[tuple[str, str, str]]:
    """``(question, answer, where)`` of a GSM8K split, from ``folder`` or the hub."""
    if folder:
        return _local_gsm8k(folder, split)
    rows = load_hub_rows(*GSM8K_HUB, split, ("question", "answer"))
    return [
        (r["question"], r["answer"], f"{GSM8K_HUB[0]} {split} row {i}")
        for i, r in enumerate(rows, start=1)
    ]


def gsm8k_splits(
    folder: str | None, seed: int, n_train: int | None, n_valid: int, n_test: int | None
) -> dict[str, list[Example]]:
    """GSM8K's train/validation/test with the seeded validation carve-out and size caps."""
    train_rows = [gsm8k_example(*r) for r in read_gsm8k(folder, "train")]
    test_rows = [gsm8k_example(*r) for r in read_gsm8k(folder, "test")]
    if n_valid >= len(train_rows):
        raise UserError(f"task gsm8k: n_valid={n_valid} leaves no training examples")
    valid_idx, train_idx, rest = carve(len(train_rows), [n_valid, n_train or 0], seed)
    if n_train is None:
        train_idx = sorted(train_idx + rest)
    return {
        "train": [train_rows[i] for i in train_idx],
        "validation": [train_rows[i] for i in valid_idx],
        "test": [test_rows[i] for i in sample_indices(len(test_rows), n_test, seed)],
    }


def _metamath_records(data: str | None) -> list[tuple[str, str]]:
    if data:
        rows: list[Row] | list[dict[str, Any]] = read_records(data)
        return [(r.string("query"), r.string("response", allow_numbers=True)) for r in rows]
    rows = load_hub_rows(METAMATH_HUB, None, "train", ("query", "response"))
    return [(r["query"], r["response"]) for r in rows]


def metamath_train(data: str | None, seed: int, n_train: int | None) -> list[Example]:
    """MetaMathQA training examples: length-filtered like the PEFT suite, then capped."""
    records = [(q, r) for q, r in _metamath_records(data) if len(f"{q} {r}") <= METAMATH_CHAR_LIMIT]
    if not records:
        raise UserError(f"{data or METAMATH_HUB}: no MetaMathQA records within the length limit")
    return [metamath_example(*records[i]) for i in sample_indices(len(records), n_train, seed)]


class MathWordTask(PreparedTask):
    """GSM8K-style math: generation scored by exact match of the final number."""

    kind = "generation"
    metric = "accuracy"
    max_new_tokens = 256

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.settings = settings
        # GSM8K targets are joined onto one line; MetaMathQA responses span several
        self.stop_strings = ("\n",) if name == "gsm8k" else ()

    def build_splits(self) -> dict[str, list[Example]]:
        """GSM8K splits; for ``metamathqa`` the train split is replaced by MetaMathQA."""
        s = self.settings
        if self.name == "gsm8k":
            return gsm8k_splits(s["data"], s["seed"], s["n_train"], s["n_valid"], s["n_test"])
        splits = gsm8k_splits(s["gsm8k_data"], s["seed"], 0, s["n_valid"], s["n_test"])
        splits["train"] = metamath_train(s["data"], s["seed"], s["n_train"])
        return splits

    def source(self) -> dict[str, Any]:
        """Local paths (absolute) or hub ids, seed and the requested caps."""
        s = dict(self.settings)
        if self.name == "gsm8k":
            s["data"] = _where(s["data"], f"hub:{GSM8K_HUB[0]}/{GSM8K_HUB[1]}")
        else:
            s["data"] = _where(s["data"], f"hub:{METAMATH_HUB}")
            s["gsm8k_data"] = _where(s["gsm8k_data"], f"hub:{GSM8K_HUB[0]}/{GSM8K_HUB[1]}")
            s["char_limit"] = METAMATH_CHAR_LIMIT
        return s

    def extract_answer(self, generated: str) -> str:
        """The number after ``####`` or ``The answer is`` (else the last number), normalized."""
        return extract_final_number(generated)

    def is_correct(self, generated: str, example: Example) -> bool:
        """Exact match of the normalized final number (``"$1,000.00"`` equals ``"1000"``)."""
        found = self.extract_answer(generated)
        return bool(found) and found == normalize_number(example.answer)


def _where(path: str | None, hub: str) -> str:
    return str(Path(path).resolve()) if path else hub


def _read_settings(name: str, options: dict[str, Any]) -> dict[str, Any]:
    opts = TaskOptions(name, options)
    settings = {
        "data": opts.text("data", None),
        "seed": opts.integer("seed", 0),
        "n_train": opts.integer("n_train", None, minimum=1),
        "n_valid": opts.integer("n_valid", 50, minimum=1),
        "n_test": opts.integer("n_test", None, minimum=1),
    }
    if name == "metamathqa":
        settings["gsm8k_data"] = opts.text("gsm8k_data", None)
    opts.finish()
    if settings["n_valid"] is None:
        raise UserError(f"task {name}: n_valid needs a number (not 'all')")
    return settings


_MATH_SIZES = (
    TaskOption("seed", 0, "seed of the validation sample and of size caps"),
    TaskOption("n_train", None, "cap on training problems, a seeded sample (default: all)"),
    TaskOption("n_valid", 50, "validation problems, carved from GSM8K train"),
    TaskOption("n_test", None, "cap on test problems, a seeded sample (default: all 1,319)"),
)
document_task("gsm8k", TaskDoc(
    summary="GSM8K grade-school math: train on GSM8K train, validate on a fixed sample of it, "
            "test on GSM8K test",
    metric="exact match of the final number",
    options=(TaskOption("data", None, "a local folder with train.jsonl and test.jsonl "
                        "(default: openai/gsm8k from the hub)"), *_MATH_SIZES),
    example="--task gsm8k --data path/to/gsm8k --task-opt n_test=200",
))
document_task("metamathqa", TaskDoc(
    summary="train on MetaMathQA, validate and test on GSM8K (as the PEFT method-comparison "
            "suite does)",
    metric="exact match of the final number",
    options=(TaskOption("data", None, "a local MetaMathQA JSON/JSONL file (default: "
                        "meta-math/MetaMathQA from the hub)"),
             TaskOption("gsm8k_data", None, "a local GSM8K folder for validation and test "
                        "(default: the hub)"), *_MATH_SIZES),
    example="--task metamathqa --data MetaMathQA-40K.json --task-opt gsm8k_data=gsm8k",
))


@register("gsm8k")
def make_gsm8k(argument: str, options: dict[str, Any]) -> MathWordTask:
    """GSM8K; options: data (folder), seed, n_train, n_valid (50), n_test."""
    if argument:
        raise UserError("task gsm8k takes its folder as option 'data', not 'gsm8k:PATH'")
    return MathWordTask("gsm8k", _read_settings("gsm8k", options))


@register("metamathqa")
def make_metamathqa(argument: str, options: dict[str, Any]) -> MathWordTask:
    """MetaMathQA → GSM8K; options: data (JSON/JSONL file), gsm8k_data (folder), seed, n_*."""
    if argument:
        raise UserError("task metamathqa takes its file as option 'data', not 'metamathqa:PATH'")
    return MathWordTask("metamathqa", _read_settings("metamathqa", options))
