"""``superglue:NAME``: the SuperGLUE tasks (``aps/super_glue`` or a local folder in its schema).

How each task is put to the two model kinds:

- BoolQ, CB, RTE, WiC, WSC: a classification (an encoder reads a text pair, a causal LM
  answers ``yes``/``no``/``maybe``);
- COPA: a classification over its two choices, rendered into one text (premise, the question
  "cause" or "effect", both choices numbered); the answer is ``1`` or ``2``;
- MultiRC: one binary example per answer option, grouped by question (F1 over all options,
  exact match per question);
- ReCoRD: a causal LM reads the passage, the query and the candidate entities and answers the
  entity; an encoder scores each candidate entity as a binary example and the most probable
  candidate of a query is its answer (max token F1 and exact match over the gold mentions);
- AX-b, AX-g: test-only diagnostics; trained on RTE (``train.jsonl`` holds RTE's rows),
  tested on the diagnostic's ``test`` split (``test.jsonl``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peftbench.tasks import metrics
from peftbench.tasks.base import Example, Prediction, TaskDoc, document_task, register
from peftbench.tasks.readers import Row
from peftbench.tasks.suite_task import SuiteTask, make_suite_task, suite_options, text_field

HUB_REPO = "aps/super_glue"


class SuperGlueTask(SuiteTask):
    """A SuperGLUE task: rows of ``aps/super_glue``."""

    suite = "superglue"
    hub_repo = HUB_REPO


def _example(prompt: str, labels: tuple[str, ...], label: int, text: str,
             text_pair: str = "", **extra: Any) -> Example:
    name = labels[label]
    return Example(prompt=prompt, target=" " + name, answer=name, text=text,
                   text_pair=text_pair, label=label, **extra)


class BoolQ(SuperGlueTask):
    """BoolQ: a yes/no question about a passage. Accuracy."""

    name, config = "superglue:boolq", "boolq"
    labels = ("no", "yes")  # False, True
    fields = ("question", "passage", "label")
    summary = "BoolQ yes/no questions on a passage; accuracy"

    def render(self, row: Row) -> list[Example]:
        """One example: the question and its passage (an encoder: question, passage)."""
        label = self.label_of(row)
        question, passage = text_field(row, "question"), text_field(row, "passage")
        prompt = f"Passage: {passage}\nQuestion: {question}?\nAnswer yes or no.\nAnswer:"
        return [_example(prompt, self.labels, label, question, passage)]


class Entailment(SuperGlueTask):
    """A premise and a hypothesis: does the premise entail it?"""

    labels = ("yes", "no")  # entailment, not_entailment
    fields = ("premise", "hypothesis", "label")

    def render(self, row: Row) -> list[Example]:
        """One example: the pair (premise/hypothesis, or AX-b's sentence1/sentence2)."""
        label = self.label_of(row)
        first, second = ("premise", "hypothesis") if "premise" in row.fields \
            else ("sentence1", "sentence2")
        premise, hypothesis = text_field(row, first), text_field(row, second)
        options = " or ".join(self.labels) if len(self.labels) == 2 \
            else ", ".join(self.labels[:-1]) + " or " + self.labels[-1]
        prompt = (f"Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise entail the "
                  f"hypothesis? Answer {options}.\nAnswer:")
        return [_example(prompt, self.labels, label, premise, hypothesis)]


class Cb(Entailment):
    """CommitmentBank: entailment, contradiction or neutral. Macro-F1 and accuracy."""

    name, config = "superglue:cb", "cb"
    labels = ("yes", "no", "maybe")  # entailment, contradiction, neutral
    metric_names = ("macro_f1", "accuracy")
    summary = "CB three-way entailment (yes/no/maybe); macro-F1 and accuracy"


class Rte(Entailment):
    """RTE: two-way entailment. Accuracy."""

    name, config = "superglue:rte", "rte"
    summary = "RTE entailment (yes/no); accuracy"


class AxB(Entailment):
    """AX-b, the broad-coverage diagnostic: trained on RTE. Matthews correlation."""

    name, config, train_config, test_split = "superglue:axb", "axb", "rte", "test"
    test_fields = ("sentence1", "sentence2", "label")
    metric_names = ("matthews_corrcoef",)
    summary = "AX-b diagnostic (test only; trained on RTE); Matthews correlation"


class AxG(Entailment):
    """AX-g, the Winogender diagnostic: trained on RTE. Accuracy."""

    name, config, train_config, test_split = "superglue:axg", "axg", "rte", "test"
    summary = "AX-g Winogender diagnostic (test only; trained on RTE); accuracy"


class Copa(SuperGlueTask):
    """COPA: which of two choices is the cause (or effect) of the premise? Accuracy."""

    name, config = "superglue:copa", "copa"
    labels = ("1", "2")  # choice1, choice2
    fields = ("premise", "choice1", "choice2", "question", "label")
    summary = ("COPA cause/effect, both choices in one text (answer 1 or 2); accuracy")

    def render(self, row: Row) -> list[Example]:
        """One example: premise, question and both numbered choices in one text."""
        label = self.label_of(row)
        premise = text_field(row, "premise")
        choices = text_field(row, "choice1"), text_field(row, "choice2")
        relation = text_field(row, "question")
        if relation not in ("cause", "effect"):
            raise row.fail(f"field 'question' must be 'cause' or 'effect', got {relation!r}")
        text = f"{premise} What was the {relation}? 1: {choices[0]} 2: {choices[1]}"
        prompt = (f"Premise: {premise}\nWhat was the {relation}?\n1: {choices[0]}\n"
                  f"2: {choices[1]}\nAnswer 1 or 2.\nAnswer:")
        return [_example(prompt, self.labels, label, text)]


class Wic(SuperGlueTask):
    """WiC: is the word used in the same sense in both sentences? Accuracy."""

    name, config = "superglue:wic", "wic"
    labels = ("no", "yes")  # False, True
    fields = ("word", "sentence1", "sentence2", "label")
    summary = "WiC word sense in two sentences (no/yes); accuracy"

    def render(self, row: Row) -> list[Example]:
        """One example: the word with the first sentence, and the second sentence."""
        label = self.label_of(row)
        word = text_field(row, "word")
        first, second = text_field(row, "sentence1"), text_field(row, "sentence2")
        prompt = (f"Sentence 1: {first}\nSentence 2: {second}\nIs the word '{word}' used in "
                  "the same sense in both sentences?\nAnswer:")
        return [_example(prompt, self.labels, label, f"{word}: {first}", second)]


class Wsc(SuperGlueTask):
    """WSC: does the pronoun (span 2) refer to the noun phrase (span 1)? Accuracy."""

    name, config = "superglue:wsc", "wsc.fixed"
    labels = ("no", "yes")  # False, True
    fields = ("text", "span1_text", "span2_text", "label")
    summary = "WSC coreference: does the pronoun refer to the span (no/yes); accuracy"

    def render(self, row: Row) -> list[Example]:
        """One example: the text, and the question about its two spans."""
        label = self.label_of(row)
        text = text_field(row, "text")
        noun, pronoun = text_field(row, "span1_text"), text_field(row, "span2_text")
        question = f"Does the pronoun '{pronoun}' refer to '{noun}'?"
        return [_example(f"Sentence: {text}\n{question}\nAnswer:", self.labels, label, text,
                         question)]


class MultiRc(SuperGlueTask):
    """MultiRC: is each answer option to a question about a paragraph true? F1a and EM."""

    name, config = "superglue:multirc", "multirc"
    labels = ("no", "yes")  # False, True
    fields = ("paragraph", "question", "answer", "idx", "label")
    metric_names = ("f1a", "em")
    summary = ("MultiRC answer options judged one by one (no/yes), grouped by question; F1a "
               "over options and exact match per question")

    def render(self, row: Row) -> list[Example]:
        """One example per answer option, in the group of its question."""
        label = self.label_of(row)
        paragraph, question = text_field(row, "paragraph"), text_field(row, "question")
        answer = text_field(row, "answer")
        prompt = (f"Paragraph: {paragraph}\nQuestion: {question}\nCandidate answer: {answer}\n"
                  "Is the candidate answer correct?\nAnswer:")
        return [_example(prompt, self.labels, label, paragraph, f"{question} {answer}",
                         group=question_group(row))]

    def score(self, predictions: Sequence[Prediction],
              examples: Sequence[Example]) -> dict[str, float]:
        """F1 of "true" over every answer option and the share of questions all right."""
        predicted = [self.class_index(p) for p in predictions]
        gold = [e.label if e.label is not None else -2 for e in examples]
        return metrics.multirc_scores([e.group for e in examples], predicted, gold)


def question_group(row: Row) -> str:
    """A MultiRC row's question: ``PARAGRAPH:QUESTION`` from its ``idx`` object."""
    idx = row.fields.get("idx")
    if not isinstance(idx, dict) or not all(isinstance(idx.get(k), int)
                                            for k in ("paragraph", "question")):
        raise row.fail("field 'idx' must be an object with integer 'paragraph' and 'question'")
    return f"{idx['paragraph']}:{idx['question']}"


class Record(SuperGlueTask):
    """ReCoRD: which entity of the passage fills the query's placeholder? F1 and EM."""

    name, config = "superglue:record", "record"
    labels = ("no", "yes")  # an encoder's classes: is this candidate the answer?
    fields = ("passage", "query", "entities", "answers", "idx")
    metric_names = ("f1", "em")
    stop_strings = ("\n",)
    summary = ("ReCoRD cloze over the passage's entities: a causal LM answers the entity, an "
               "encoder scores each candidate (the most probable wins); token F1 and EM")

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.max_new_tokens = 24

    def render(self, row: Row) -> list[Example]:
        """One example per query (causal LM) or per candidate entity (encoder)."""
        passage = text_field(row, "passage").replace("@highlight\n", "- ")
        query = text_field(row, "query")
        if "@placeholder" not in query:
            raise row.fail("field 'query' has no '@placeholder'")
        entities, answers = string_list(row, "entities"), string_list(row, "answers")
        if self.model_kind == "seq-cls":
            group = f"{row.file}:{row.line}"
            return [Example(prompt=query, target="", answer=self.labels[int(e in answers)],
                            text=passage, text_pair=query.replace("@placeholder", e),
                            label=int(e in answers), group=group, references=answers,
                            choice=e)
                    for e in dict.fromkeys(entities)]
        prompt = (f"Passage: {passage}\nQuery: {query}\nCandidates: "
                  f"{', '.join(dict.fromkeys(entities))}\nWhich candidate fills @placeholder?"
                  "\nAnswer:")
        return [Example(prompt=prompt, target=" " + answers[0], answer=answers[0],
                        references=answers)]

    def extract_answer(self, generated: str) -> str:
        """The generation's first line, stripped."""
        return generated.strip().split("\n", 1)[0].strip()

    def is_correct(self, generated: str, example: Example) -> bool:
        """Right when the answer matches a gold mention exactly (normalized)."""
        return bool(metrics.exact_match(self.extract_answer(generated), example.references))

    def score(self, predictions: Sequence[Prediction],
              examples: Sequence[Example]) -> dict[str, float]:
        """Max token F1 and exact match of each query's answer over its gold mentions (an
        encoder's answer: the candidate it finds most probably right)."""
        chosen = (self.choose(predictions, examples) if any(e.choice for e in examples)
                  else [(p.answer, e.references) for p, e in zip(predictions, examples,
                                                                 strict=True)])
        if not chosen:
            return {"f1": 0.0, "em": 0.0}
        return {"f1": sum(metrics.token_f1(a, refs) for a, refs in chosen) / len(chosen),
                "em": sum(metrics.exact_match(a, refs) for a, refs in chosen) / len(chosen)}

    def choose(self, predictions: Sequence[Prediction],
               examples: Sequence[Example]) -> list[tuple[str, tuple[str, ...]]]:
        """Each query's chosen candidate and gold mentions: the highest probability of
        "yes" (without probabilities: the first candidate answered "yes", else the first)."""
        groups: dict[str, list[tuple[float, str]]] = {}
        references: dict[str, tuple[str, ...]] = {}
        for p, e in zip(predictions, examples, strict=True):
            weight = p.probabilities[1] if len(p.probabilities) > 1 else \
                float(p.answer == self.labels[1])
            groups.setdefault(e.group, []).append((weight, e.choice))
            references[e.group] = e.references
        return [(max(candidates, key=lambda c: c[0])[1], references[group])
                for group, candidates in groups.items()]


def string_list(row: Row, name: str) -> tuple[str, ...]:
    """Field ``name`` as a non-empty list of non-empty strings."""
    value = row.fields.get(name)
    if name not in row.fields:
        raise row.fail(f"missing field '{name}'")
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise row.fail(f"field '{name}' must be a non-empty list of texts")
    return tuple(v.strip() for v in value)


TASKS: dict[str, type[SuiteTask]] = {
    task.name.partition(":")[2]: task
    for task in (BoolQ, Cb, Copa, MultiRc, Record, Rte, Wic, Wsc, AxB, AxG)
}

document_task("superglue", TaskDoc(
    summary="SuperGLUE (" + ", ".join(TASKS) + "): aps/super_glue or a local folder of JSONL "
            "files in its schema; test = the public validation split (axb, axg: their test "
            "split, trained on RTE), validation carved from train",
    metric="the official metric per task: F1a and EM (multirc), F1 and EM (record), macro-F1 "
           "and accuracy (cb), Matthews correlation (axb), accuracy (others)",
    argument="NAME: " + ", ".join(TASKS) + "; all: every task (tournament only)",
    options=suite_options(),
    example="--model smollm2-135m --task superglue:boolq --data path/to/boolq",
))


@register("superglue")
def make_superglue(argument: str, options: dict[str, Any]) -> SuiteTask:
    """A SuperGLUE task, ``superglue:NAME``; options: data (folder), seed, n_train, n_valid,
    n_test."""
    return make_suite_task("superglue", TASKS, argument, options)
