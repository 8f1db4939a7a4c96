"""What a task is: three splits of examples, a prompt format, and a scoring rule.

A task family is one module in this package that registers itself with `register_task` (or
its decorator form `register`); other packages add theirs the same way or through an entry
point in the group ``peftbench.tasks`` (see docs/extending.md). The engine only talks to the
`Task` interface below, so adding a task never touches the training loop.

Two kinds of tasks exist:

- ``generation``: the model reads ``prompt`` and must produce ``target``; scored by generating
  greedily and comparing the extracted answer (e.g. the final number) with the reference;
- ``classification``: each example has an integer ``label`` in ``range(len(labels))``; an encoder
  gets a classification head, a causal LM is trained to answer with the label's verbalizer
  (``" " + labels[i]``) and scored on its generated answer. A task with ``regression`` set
  (STS-B) gives an encoder a one-output regression head instead, trained on each example's
  real-valued ``value`` (mean squared error) and scored on the head's output;
- ``image``: each example is a prompt and an image (`peftbench.tasks.dreambooth`); an image
  model learns to draw it and is scored by image similarity.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from peftbench.errors import UserError
from peftbench.registry import Registry

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One example. ``prompt``/``target`` for causal LMs; ``text``/``label`` for encoders."""

    prompt: str
    target: str
    answer: str = ""  # the reference answer to score against (e.g. "42", "positive")
    text: str = ""  # raw input text, for encoders
    label: int | None = None
    #: the second text of a pair (an encoder reads ``text`` and ``text_pair`` as one pair)
    text_pair: str = ""
    #: the examples scored together share a group (a MultiRC question's answers, a ReCoRD
    #: query's candidates); "" when the example stands alone
    group: str = ""
    #: every accepted answer where there is more than one (a ReCoRD entity's mentions)
    references: tuple[str, ...] = ()
    #: the candidate this example asks about (a ReCoRD entity scored by an encoder)
    choice: str = ""
    #: the real-valued target of a regression head (STS-B's similarity); None elsewhere
    value: float | None = None


@dataclass(frozen=True)
class Prediction:
    """What a model answered for one example: the extracted answer (a classifier head: the
    predicted label's name), its verdict, and a classifier head's class probabilities."""

    answer: str
    correct: bool
    probabilities: tuple[float, ...] = ()


class Task(ABC):
    """A data set with train/validation/test splits and a primary metric (higher is better)."""

    name: str = ""
    kind: Literal["generation", "classification", "image"] = "generation"
    metric: str = "accuracy"
    #: class names, index = label (classification tasks only)
    labels: tuple[str, ...] = ()
    #: an encoder gets a one-output regression head (mean squared error on `Example.value`)
    #: instead of a classification head; its output, as text, is the answer scored
    regression: bool = False
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

    def score(self, predictions: Sequence[Prediction],
              examples: Sequence[Example]) -> dict[str, float]:
        """The corpus-level metrics of ``predictions`` (one per example, in order), the
        primary ``metric`` among them. The default: the share of correct answers."""
        share = sum(p.correct for p in predictions) / len(predictions) if predictions else 0.0
        return {self.metric: share}

    def use_model_kind(self, kind: str) -> None:
        """Told by the engine, before any split is loaded, how the model is trained:
        ``"causal-lm"`` or ``"seq-cls"`` (a task whose examples differ by kind, like ReCoRD,
        builds them accordingly). The default does nothing."""
        del kind  # the examples of most tasks are the same for both kinds

    def describe(self) -> dict[str, Any]:
        """Identity of the task and its data for the result file's ``meta_info``."""
        return {"name": self.name, "kind": self.kind, "metric": self.metric}


TaskFactory = Callable[[str, dict[str, Any]], Task]


@dataclass(frozen=True)
class TaskOption:
    """One option of a task as `peftbench tasks` shows it (``--task-opt NAME=VALUE``)."""

    name: str
    #: the value used when the option is not given (None: not set, see ``meaning``)
    default: Any
    meaning: str


@dataclass(frozen=True)
class TaskDoc:
    """What `peftbench tasks` says about a task: what it is, how it is scored, the argument
    of ``NAME:ARGUMENT`` (empty when it takes none) and its options."""

    summary: str
    metric: str = ""
    argument: str = ""
    options: tuple[TaskOption, ...] = ()
    example: str = ""


_DOCS: dict[str, TaskDoc] = {}


def document_task(name: str, doc: TaskDoc) -> None:
    """Describe the task ``name`` for `peftbench tasks` (a plugin may describe its own)."""
    _DOCS[name] = doc


def task_doc(name: str) -> TaskDoc:
    """The description of task ``name``: the documented one, else its factory's docstring."""
    if name in _DOCS:
        return _DOCS[name]
    factory = _REGISTRY.get(name)
    text = (getattr(factory, "__doc__", None) or "").strip().splitlines()
    return TaskDoc(summary=text[0] if text else "(not documented)")

#: the entry point group through which installed packages add tasks
ENTRY_POINT_GROUP = "peftbench.tasks"


def _as_factory(name: str, loaded: Any) -> TaskFactory:
    if not callable(loaded):
        raise UserError(f"the task '{name}' is registered as {loaded!r}, which is not a "
                        "function (argument, options) -> Task")
    return loaded


_REGISTRY: Registry[TaskFactory] = Registry(
    "task", group=ENTRY_POINT_GROUP, convert=_as_factory,
    unknown="unknown task '{name}'; known: {known}")


def register_task(factory_or_name: TaskFactory | str, name: str | None = None, *,
                  replace: bool = False) -> Any:
    """Register a task factory ``(argument, options) -> Task`` under ``name``.

    ``argument`` is the part after ``NAME:`` in a task string (``jsonl:data.jsonl`` gives
    ``data.jsonl``), empty when there is none; ``options`` are the task options (a dict).
    ``register_task(factory, "name")`` registers a function, ``register_task("package.module:
    attribute", "name")`` one imported on first use, and ``@register_task("name")`` decorates
    one. A taken name raises `ValueError` unless ``replace``.
    """
    if name is None:
        if not isinstance(factory_or_name, str):
            raise TypeError("register_task needs a name")
        return register(factory_or_name, replace=replace)
    if not (callable(factory_or_name) or isinstance(factory_or_name, str)):
        raise TypeError(f"a task factory is a function (argument, options) -> Task, not "
                        f"{factory_or_name!r}")
    _REGISTRY.register(name, factory_or_name, replace=replace)
    return factory_or_name


def register(name: str, *, replace: bool = False) -> Callable[[TaskFactory], TaskFactory]:
    """Decorator: register a factory ``(argument, options) -> Task`` under ``name`` (see
    `register_task`)."""

    def deco(factory: TaskFactory) -> TaskFactory:
        register_task(factory, name, replace=replace)
        return factory

    return deco


def task_names() -> list[str]:
    """Names of all registered task families (built-in and from installed packages)."""
    return _REGISTRY.names()


def get_task(spec: str, options: dict[str, Any] | None = None) -> Task:
    """Build the task named by ``spec`` (``arith``, ``gsm8k``, ``jsonl:PATH``, ...); an
    unknown name is a `UserError` that suggests the closest name."""
    name, _, argument = spec.partition(":")
    factory = _REGISTRY.get(name)
    return factory(argument, dict(options or {}))
