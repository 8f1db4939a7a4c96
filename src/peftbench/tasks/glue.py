"""``glue:NAME``: the nine GLUE tasks (``nyu-mll/glue`` or a local folder in its schema).

Every task is a classification: an encoder gets a classification head over the task's classes
(a sentence pair is encoded as a pair), a causal LM reads a prompt per task and answers with
the class's word (``yes``/``no``, ``positive``...). STS-B's similarity score is the exception
in scoring: a causal LM answers the number (one decimal), an encoder gets a regression head
(one output, mean squared error on the exact score); both are scored by Pearson and Spearman
correlation of the predicted scores against the reference. MNLI is two tasks,
``mnli_matched`` and ``mnli_mismatched``, which train alike and are tested on the matched or
the mismatched validation set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from peftbench.tasks import metrics
from peftbench.tasks.base import Example, Prediction, TaskDoc, document_task, register
from peftbench.tasks.readers import Row
from peftbench.tasks.suite_task import SuiteTask, make_suite_task, suite_options, text_field

HUB_REPO = "nyu-mll/glue"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class GlueTask(SuiteTask):
    """A GLUE task: rows of ``nyu-mll/glue``."""

    suite = "glue"
    hub_repo = HUB_REPO


class SentenceTask(GlueTask):
    """One sentence, one question about it, a class named by a word."""

    field = "sentence"
    question = ""

    def render(self, row: Row) -> list[Example]:
        """One example: the sentence and its class."""
        label = self.label_of(row)
        text = text_field(row, self.field)
        prompt = f"Sentence: {text}\n{self.question}\nAnswer:"
        name = self.labels[label]
        return [Example(prompt=prompt, target=" " + name, answer=name, text=text, label=label)]


class PairTask(GlueTask):
    """Two texts (``first``, ``second`` fields, shown as ``names``), a question about them."""

    first, second = "sentence1", "sentence2"
    names = ("Sentence 1", "Sentence 2")
    question = ""

    def pair(self, row: Row) -> tuple[str, str]:
        """The row's two texts."""
        return text_field(row, self.first), text_field(row, self.second)

    def pair_prompt(self, first: str, second: str) -> str:
        """The causal LM's prompt for a pair."""
        return f"{self.names[0]}: {first}\n{self.names[1]}: {second}\n{self.question}\nAnswer:"

    def render(self, row: Row) -> list[Example]:
        """One example: the pair (an encoder reads it as a pair) and its class."""
        label = self.label_of(row)
        first, second = self.pair(row)
        name = self.labels[label]
        return [Example(prompt=self.pair_prompt(first, second), target=" " + name, answer=name,
                        text=first, text_pair=second, label=label)]


class Cola(SentenceTask):
    """CoLA: is the sentence grammatical? Matthews correlation."""

    name, config = "glue:cola", "cola"
    labels = ("no", "yes")  # unacceptable, acceptable
    fields = ("sentence", "label")
    question = "Is this sentence grammatically acceptable?"
    metric_names = ("matthews_corrcoef",)
    summary = "CoLA grammatical acceptability (no/yes); Matthews correlation"


class Sst2(SentenceTask):
    """SST-2: the sentiment of a movie review sentence. Accuracy."""

    name, config = "glue:sst2", "sst2"
    labels = ("negative", "positive")
    fields = ("sentence", "label")
    question = "Is the sentiment of this sentence positive or negative?"
    summary = "SST-2 sentiment (negative/positive); accuracy"


class Mrpc(PairTask):
    """MRPC: are the two sentences paraphrases? F1 and accuracy."""

    name, config = "glue:mrpc", "mrpc"
    labels = ("no", "yes")  # not_equivalent, equivalent
    fields = ("sentence1", "sentence2", "label")
    question = "Do both sentences mean the same thing?"
    metric_names = ("f1", "accuracy")
    summary = "MRPC paraphrase (no/yes); F1 and accuracy"


class Qqp(PairTask):
    """QQP: do the two questions ask the same thing? F1 and accuracy."""

    name, config = "glue:qqp", "qqp"
    labels = ("no", "yes")  # not_duplicate, duplicate
    first, second = "question1", "question2"
    names = ("Question 1", "Question 2")
    fields = ("question1", "question2", "label")
    question = "Do both questions ask the same thing?"
    metric_names = ("f1", "accuracy")
    summary = "QQP duplicate questions (no/yes); F1 and accuracy"


class MnliMatched(PairTask):
    """MNLI, tested on the matched validation set: entailment, neutral or contradiction."""

    name, config, test_split = "glue:mnli_matched", "mnli", "validation_matched"
    labels = ("yes", "maybe", "no")  # entailment, neutral, contradiction
    first, second = "premise", "hypothesis"
    names = ("Premise", "Hypothesis")
    fields = ("premise", "hypothesis", "label")
    question = "Does the premise entail the hypothesis? Answer yes, maybe or no."
    summary = "MNLI entailment (yes/maybe/no), matched validation set as test; accuracy"


class MnliMismatched(MnliMatched):
    """MNLI, tested on the mismatched validation set."""

    name, test_split = "glue:mnli_mismatched", "validation_mismatched"
    summary = "MNLI entailment (yes/maybe/no), mismatched validation set as test; accuracy"


class Qnli(PairTask):
    """QNLI: does the sentence answer the question? Accuracy."""

    name, config = "glue:qnli", "qnli"
    labels = ("yes", "no")  # entailment, not_entailment
    first, second = "question", "sentence"
    names = ("Question", "Sentence")
    fields = ("question", "sentence", "label")
    question = "Does the sentence answer the question?"
    summary = "QNLI question answering as entailment (yes/no); accuracy"


class Rte(PairTask):
    """RTE: does the first sentence entail the second? Accuracy."""

    name, config = "glue:rte", "rte"
    labels = ("yes", "no")  # entailment, not_entailment
    fields = ("sentence1", "sentence2", "label")
    question = "Does sentence 1 entail sentence 2?"
    summary = "RTE entailment (yes/no); accuracy"


class Wnli(PairTask):
    """WNLI: does the sentence with the pronoun replaced follow? Accuracy."""

    name, config = "glue:wnli", "wnli"
    labels = ("no", "yes")  # not_entailment, entailment
    fields = ("sentence1", "sentence2", "label")
    question = "Does sentence 1 entail sentence 2?"
    summary = "WNLI pronoun resolution as entailment (no/yes); accuracy"


class Stsb(PairTask):
    """STS-B: how similar are the two sentences, from 0 to 5? Pearson and Spearman."""

    name, config = "glue:stsb", "stsb"
    labels = ("0", "1", "2", "3", "4", "5")  # the rounded score, each example's label
    regression = True  # an encoder regresses the exact score (Example.value)
    fields = ("sentence1", "sentence2", "label")
    question = "How similar are the two sentences, from 0 to 5?"
    metric_names = ("pearson", "spearman")
    summary = ("STS-B similarity 0-5: a causal LM answers the number, an encoder regresses "
               "it; Pearson and Spearman correlation")

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.max_new_tokens = 6

    def render(self, row: Row) -> list[Example]:
        """One example: the pair, the score as text (one decimal), its rounded class and the
        exact score (an encoder's regression target)."""
        score = similarity_of(row)
        first, second = self.pair(row)
        answer = f"{score:.1f}"
        return [Example(prompt=self.pair_prompt(first, second), target=" " + answer,
                        answer=answer, text=first, text_pair=second, label=rounded(score),
                        value=score)]

    def extract_answer(self, generated: str) -> str:
        """The first number of the generation, held to 0..5, with one decimal; ``""`` when
        there is none."""
        match = _NUMBER.search(generated)
        if not match:
            return ""
        return f"{min(5.0, max(0.0, float(match.group()))):.1f}"

    def is_correct(self, generated: str, example: Example) -> bool:
        """Right when the answer rounds to the reference's rounded score."""
        said = self.extract_answer(generated)
        return bool(said) and rounded(float(said)) == rounded(float(example.answer))

    def score(self, predictions: Sequence[Prediction],
              examples: Sequence[Example]) -> dict[str, float]:
        """Pearson and Spearman correlation of the answered scores (a causal LM's answer
        without a number counts as 2.5, the middle of the scale; a regression head's output
        as it is) with the exact ones."""
        said = [_score_or_middle(p.answer) for p in predictions]
        gold = [e.value if e.value is not None else float(e.answer) for e in examples]
        return {"pearson": metrics.pearson(said, gold), "spearman": metrics.spearman(said, gold)}


def similarity_of(row: Row) -> float:
    """An STS-B row's ``label``: a number from 0 to 5."""
    if "label" not in row.fields:
        raise row.fail("missing field 'label'")
    value = row.fields["label"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 5:
        raise row.fail(f"field 'label' must be a number from 0 to 5, got {value!r}")
    return float(value)


def rounded(score: float) -> int:
    """A score rounded half up to the nearest whole number (2.5 -> 3)."""
    return math.floor(score + 0.5)


def _score_or_middle(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 2.5


TASKS: dict[str, type[SuiteTask]] = {
    task.config if task.config != "mnli" else task.name.partition(":")[2]: task
    for task in (Cola, Sst2, Mrpc, Stsb, Qqp, MnliMatched, MnliMismatched, Qnli, Rte, Wnli)
}

document_task("glue", TaskDoc(
    summary="GLUE (" + ", ".join(TASKS) + "): nyu-mll/glue or a local folder of JSONL files "
            "in its schema; test = the public validation split, validation carved from train",
    metric="the official metric per task: Matthews correlation (cola), F1 and accuracy (mrpc, "
           "qqp), Pearson and Spearman (stsb), accuracy (others)",
    argument="NAME: " + ", ".join(TASKS) + "; all: every task (tournament only)",
    options=suite_options(),
    example="--model minilm-l6 --task glue:mrpc --data path/to/mrpc --task-opt n_train=2000",
))


@register("glue")
def make_glue(argument: str, options: dict[str, Any]) -> SuiteTask:
    """A GLUE task, ``glue:NAME``; options: data (folder), seed, n_train, n_valid, n_test."""
    return make_suite_task("glue", TASKS, argument, options)
