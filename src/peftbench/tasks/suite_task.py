"""`SuiteTask`: what every GLUE and SuperGLUE task shares — reading its rows, carving the
splits, scoring with the official metrics — and the factory behind ``--task SUITE:NAME``.

Data comes from the hub (``nyu-mll/glue``, ``aps/super_glue``) or from a local folder in the
hub's schema: one JSON Lines file per split, named after the hub's split
(``train.jsonl``, ``validation.jsonl``; MNLI's ``validation_matched.jsonl``...), one row per
line with the hub's field names and integer labels.

The labelled test splits are not public, so the public validation split serves as test and our
validation split is carved out of train (seeded). Sizes count items: a row, or for the grouped
tasks (MultiRC's questions, ReCoRD's queries) a group of examples scored together.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from peftbench.errors import UserError, did_you_mean
from peftbench.tasks import metrics
from peftbench.tasks.base import Example, Prediction, TaskOption
from peftbench.tasks.classification import ClassificationTask
from peftbench.tasks.hub import load_hub_rows
from peftbench.tasks.options import TaskOptions
from peftbench.tasks.readers import Row, read_jsonl
from peftbench.tasks.sampling import carve, sample_indices

#: validation items carved out of train: this many at most, and at most a tenth of train
MAX_VALID = 200


class SuiteTask(ClassificationTask):
    """One task of a suite. Subclasses set the class attributes and implement `render`."""

    suite: str = ""  # "glue" or "superglue"
    hub_repo: str = ""
    config: str = ""  # the hub's configuration name of the task
    train_config: str = ""  # the hub configuration trained on when it differs (AX-b: rte)
    test_split: str = "validation"  # the public split scored as test
    fields: tuple[str, ...] = ()  # the row fields read
    test_fields: tuple[str, ...] = ()  # the test rows' fields when they differ (AX-b)
    metric_names: tuple[str, ...] = ("accuracy",)  # the official metrics, primary first
    summary: str = ""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.metric = self.metric_names[0]
        self.model_kind = "causal-lm"
        self.set_labels(self.labels)

    @abstractmethod
    def render(self, row: Row) -> list[Example]:
        """The examples of one row (one, or several scored together), validated: a bad row
        raises `UserError` naming its file, line and problem."""

    def use_model_kind(self, kind: str) -> None:
        """Remember the model kind (tasks whose examples differ by kind read it)."""
        if kind != self.model_kind:
            self.model_kind, self._splits = kind, None

    # ------------------------------------------------------------------ data

    def read(self, split: str, config: str, fields: tuple[str, ...]) -> list[Row]:
        """The rows of ``split``: the local folder's ``SPLIT.jsonl``, else the hub's."""
        folder = self.settings["data"]
        if folder:
            if not Path(folder).is_dir():
                raise UserError(f"{folder}: {self.name} folder not found (expected "
                                f"{' and '.join(self.files())})")
            return read_jsonl(Path(folder) / f"{split}.jsonl")
        hub_rows = load_hub_rows(self.hub_repo, config, split, fields)
        where = f"hub:{self.hub_repo}/{config}/{split}"
        return [Row(where, number, row) for number, row in enumerate(hub_rows, start=1)]

    def files(self) -> tuple[str, str]:
        """The local folder's two files: train and the split scored as test."""
        return "train.jsonl", f"{self.test_split}.jsonl"

    def items(self, rows: list[Row]) -> list[list[Example]]:
        """The rows' examples grouped into items: consecutive examples of one group (or one
        row's examples) form one item."""
        found: list[list[Example]] = []
        for row in rows:
            examples = self.render(row)
            group = examples[0].group if examples else ""
            if group and found and found[-1][0].group == group:
                found[-1].extend(examples)
            elif examples:
                found.append(list(examples))
        return found

    def build_splits(self) -> dict[str, list[Example]]:
        """Validation carved from train (seeded); test = the public validation split."""
        s = self.settings
        train = self.items(self.read("train", self.train_config or self.config, self.fields))
        test = self.items(self.read(self.test_split, self.config,
                                    self.test_fields or self.fields))
        n_valid = self.valid_size(len(train))
        valid_idx, train_idx, rest = carve(len(train), [n_valid, s["n_train"] or 0], s["seed"])
        if s["n_train"] is None:
            train_idx = sorted(train_idx + rest)
        test_idx = sample_indices(len(test), s["n_test"], s["seed"])
        return {"train": _flat(train, train_idx), "validation": _flat(train, valid_idx),
                "test": _flat(test, test_idx)}

    def valid_size(self, n_train: int) -> int:
        """The validation items to carve: the option, else min(200, a tenth of train)."""
        wanted = self.settings["n_valid"]
        n_valid = wanted if wanted is not None else max(1, min(MAX_VALID, n_train // 10))
        if n_valid >= n_train:
            raise UserError(f"task {self.name}: n_valid={n_valid} leaves no training items "
                            f"(train has {n_train})")
        return n_valid

    def source(self) -> dict[str, Any]:
        """Local folder (absolute) or hub id, seed, the caps, and where each split came
        from."""
        s = dict(self.settings)
        train_config = self.train_config or self.config
        s["data"] = (str(Path(s["data"]).resolve()) if s["data"]
                     else f"hub:{self.hub_repo}/{self.config}")
        s["validation_source"] = (f"carved from train ({train_config}; seed {s['seed']}): the "
                                  "labelled test split is not public")
        s["test_source"] = (f"public {self.test_split} split ({self.test_split}.jsonl; hub: "
                            f"{self.config}/{self.test_split})")
        return s

    # ------------------------------------------------------------------ scoring

    def label_of(self, row: Row) -> int:
        """The row's ``label``: an integer naming one of the task's classes."""
        if "label" not in row.fields:
            raise row.fail("missing field 'label'")
        value = row.fields["label"]
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value < len(self.labels):
            raise row.fail(f"field 'label' must be an integer from 0 to {len(self.labels) - 1}, "
                           f"got {value!r}")
        return value

    def class_index(self, prediction: Prediction) -> int:
        """The class a prediction names (-1: none)."""
        return self.labels.index(prediction.answer) if prediction.answer in self.labels else -1

    def score(self, predictions: Sequence[Prediction],
              examples: Sequence[Example]) -> dict[str, float]:
        """The task's official metrics on class indices (an answer naming no class is
        wrong)."""
        predicted = [self.class_index(p) for p in predictions]
        gold = [e.label if e.label is not None else -2 for e in examples]
        return {name: _CLASS_METRICS[name](predicted, gold, len(self.labels))
                for name in self.metric_names}


_CLASS_METRICS: dict[str, Callable[[list[int], list[int], int], float]] = {
    "accuracy": lambda p, g, _: metrics.accuracy(p, g),
    "f1": lambda p, g, _: metrics.f1_of_class(p, g, positive=1),
    "macro_f1": lambda p, g, n: metrics.macro_f1(p, g, n),
    "matthews_corrcoef": lambda p, g, _: metrics.matthews(p, g),
}


def _flat(items: list[list[Example]], indices: list[int]) -> list[Example]:
    return [example for i in indices for example in items[i]]


def text_field(row: Row, name: str) -> str:
    """Field ``name`` of ``row`` as stripped, non-empty text."""
    return row.string(name).strip()


def suite_options() -> tuple[TaskOption, ...]:
    """The options every suite task takes, as `peftbench tasks` shows them."""
    return (
        TaskOption("data", None, "a local folder with one JSONL file per split in the hub's "
                   "schema (train.jsonl, validation.jsonl; default: the hub)"),
        TaskOption("seed", 0, "seed of the validation sample and of size caps"),
        TaskOption("n_train", None, "cap on training items (default: all)"),
        TaskOption("n_valid", None, f"validation items carved from train (default: "
                   f"{MAX_VALID}, at most a tenth of train)"),
        TaskOption("n_test", None, "cap on test items (default: all)"),
    )


def make_suite_task(suite: str, tasks: dict[str, type[SuiteTask]], argument: str,
                    options: dict[str, Any]) -> SuiteTask:
    """The task ``SUITE:ARGUMENT`` with its options (data, seed, n_train, n_valid, n_test)."""
    opts = TaskOptions(f"{suite}:{argument}", options)
    settings = {
        "data": opts.text("data", None),
        "seed": opts.integer("seed", 0),
        "n_train": opts.integer("n_train", None, minimum=1),
        "n_valid": opts.integer("n_valid", None, minimum=1),
        "n_test": opts.integer("n_test", None, minimum=1),
    }
    if argument == "all":
        raise UserError(f"{suite}:all is the whole suite: `peftbench tournament --task "
                        f"{suite}:all` runs one tournament per task; here give one task, "
                        f"{suite}:NAME")
    if argument not in tasks:
        known = ", ".join(tasks)
        raise UserError(f"unknown {suite} task '{argument}'{did_you_mean(argument, list(tasks))}"
                        f"; known: {known} (as --task {suite}:NAME)")
    opts.finish()
    return tasks[argument](settings)
