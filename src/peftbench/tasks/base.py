"""What a task is: three splits of examples, a prompt format, and a scoring rule.

A task family is one module in this package that registers itself with `register`. The engine
only talks to the `Task` interface below, so adding a task never touches the training loop.

Two kinds of tasks exist:

- ``generation``: the model reads ``prompt`` and must produce ``target``; scored by generating
  greedily and comparing the extracted answer (e.g. the final number) with the reference;
- ``classification``: each example has an integer ``label`` in ``range(len(labels))``; an encoder
  gets a classification head, a causal LM is trained to answer with the label's verbalizer
  (``" " + labels[i]``) and scored on its generated answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from peftbench.errors import UserError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One example. ``prompt``/``target`` for causal LMs; ``text``/``label`` for encoders."""

    prompt: str
    target: str
    answer: str = ""  # the reference answer to score against (e.g. "42", "positive")
    text: str = ""  # raw input text, for encoders
    label: int | None = None


class Task(ABC):
    """A data set with train/validation/test splits and a primary metric (higher is better)."""

    name: str = ""
    kind: Literal["generation", "classification"] = "generation"
    metric: str = "accuracy"
    #: class names, index = label (classification tasks only)
    labels: tuple[str, ...] = ()
    #: generation budget for scoring, in new tokens
    max_new_tokens: int = 16
    #: generation stops at any of these strings (e.g. a newline after a one-line answer), so
    #: a model that rambles past its answer costs no extra decoding
    stop_strings: tuple[str, ...] = ()

    @abstractmethod
    def load_split(self, split: str) -> list[Example]:
        """Return the examples of ``split`` (one of `SPLITS`), in a fixed order.

        Must raise `UserError` naming the file, line and problem for malformed input.
        """

    @abstractmethod
    def extract_answer(self, generated: str) -> str:
        """Pull the answer out of a generated continuation (e.g. the number after ``####``)."""

    def is_correct(self, generated: str, example: Example) -> bool:
        """Whether a generated continuation answers ``example`` correctly."""
        return self.extract_answer(generated) == example.answer

    def describe(self) -> dict[str, Any]:
        """Identity of the task and its data for the result file's ``meta_info``."""
        return {"name": self.name, "kind": self.kind, "metric": self.metric}


TaskFactory = Callable[[str, dict[str, Any]], Task]
_REGISTRY: dict[str, TaskFactory] = {}


def register(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Register a factory ``(argument, options) -> Task`` under ``name``.

    ``argument`` is the part after ``NAME:`` in a task string (``jsonl:data.jsonl`` gives
    ``data.jsonl``), empty when there is none.
    """

    def deco(factory: TaskFactory) -> TaskFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def task_names() -> list[str]:
    """Names of all registered task families."""
    return sorted(_REGISTRY)


def get_task(spec: str, options: dict[str, Any] | None = None) -> Task:
    """Build the task named by ``spec`` (``arith``, ``gsm8k``, ``jsonl:PATH``, ...)."""
    name, _, argument = spec.partition(":")
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UserError(f"unknown task '{name}'; known: {', '.join(task_names())}")
    return factory(argument, dict(options or {}))
