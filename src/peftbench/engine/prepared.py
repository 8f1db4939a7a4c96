"""What a run loads before it trains (task data, model, device, general text), and scoring a
model on the run's splits.

    spec ─ task data (every split, validated) ─ technique ─ model ─ device ─ general text
         ─ `Prepared` ─ encode / score a split (the primary metric and each item's outcome)

Errors the user caused (bad data, unknown names, missing model) raise `UserError` here, before
anything is written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from peftbench.engine import evaluate
from peftbench.engine.answers import Answer
from peftbench.engine.batching import encode_causal, encode_classification
from peftbench.engine.cost_only import scores_note
from peftbench.engine.inputs import InputRecord, record_inputs
from peftbench.engine.measure import autocast_dtype, device_for_run
from peftbench.engine.models import LoadedModel, is_encoder, load_model
from peftbench.engine.progress import phase
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.methods import get_method
from peftbench.methods.base import Method
from peftbench.tasks import Example, Prediction, Task, get_task
from peftbench.tasks.prepared import extra_parts


@dataclass
class Prepared:
    """Everything loaded before training starts."""

    spec: ExperimentSpec
    task: Task
    splits: dict[str, list[Example]]
    method: Method
    loaded: LoadedModel
    device: torch.device
    amp_dtype: torch.dtype | None
    general_blocks: list[str] = field(default_factory=list)
    general_error: str = ""
    inputs: list[InputRecord] = field(default_factory=list)  # the user's files, by content


def prepare(spec: ExperimentSpec) -> Prepared:
    """Load and validate everything a run needs; raises `UserError` for the user's mistakes."""
    task = get_task(spec.task, spec.task_options)
    kind = model_kind(task, spec.model)
    task.use_model_kind(kind)
    splits = {name: task.load_split(name) for name in ("train", "validation", "test")}
    for name, examples in splits.items():
        if not examples:
            raise UserError(f"task '{spec.task}': the {name} split is empty")
    method = get_method(spec.method)
    loaded = load_model(spec.model, kind, num_labels=head_size(task), seed=spec.train.seed)
    if kind == "seq-cls" and task.regression:
        loaded.model.config.problem_type = "regression"  # mean squared error on the value
    device = device_for_run()
    if kind == "image-gen":
        _check_image_run(task, loaded)
    note = scores_note(spec, loaded)
    blocks, general_error = _general_text(spec, kind) if note is None else ([], note)
    return Prepared(spec, task, splits, method, loaded, device,
                    autocast_dtype(spec.train.dtype, device), blocks, general_error,
                    record_inputs(spec))


def _check_image_run(task: Task, loaded: LoadedModel) -> None:
    """Before anything trains: the task's resolution suits the model, and the task scores
    with the model's image encoder (``digit_similarity`` or ``dino_similarity``)."""
    from peftbench.engine.image_run import run_resolution
    from peftbench.engine.image_scores import DIGIT_METRIC, DINO_METRIC

    run_resolution(loaded.pipeline, task)
    task.metric = DIGIT_METRIC if loaded.pipeline.scorer == "digit" else DINO_METRIC


def head_size(task: Task) -> int:
    """The outputs of an encoder's head on ``task``: one for a regression, else one per class
    (at least two)."""
    return 1 if task.regression else max(len(task.labels), 2)


def model_kind(task: Task, model: str) -> str:
    """How ``model`` is trained on ``task``: an image task trains an image model (image-gen);
    an encoder on a classification task gets a classification head (seq-cls); everything
    else is a causal LM answering in text."""
    if task.kind == "image":
        return "image-gen"
    return "seq-cls" if task.kind == "classification" and is_encoder(model) else "causal-lm"


def _general_text(spec: ExperimentSpec, kind: str) -> tuple[list[str], str]:
    if kind != "causal-lm" or spec.train.forgetting_samples == 0:
        return [], "not applicable" if kind != "causal-lm" else "disabled"
    from peftbench.tasks.general_text import load_general_text

    try:
        return load_general_text(spec.general_text, spec.train.forgetting_samples), ""
    except UserError:
        if spec.general_text:  # the user named a path: a bad one is their mistake
            raise
        return [], "general text unavailable (no network?): forgetting not measured"
    except Exception as exc:  # hub unreachable: measure everything else
        return [], f"general text unavailable: {exc.__class__.__name__}"


def encode_examples(prep: Prepared, examples: list[Example]) -> list:
    """``examples`` tokenized for the run's model kind (labels masked to the answer)."""
    max_len = prep.spec.train.max_seq_length
    if prep.loaded.kind == "seq-cls":
        return encode_classification(examples, prep.loaded.tokenizer, max_len,
                                     regression=prep.task.regression)
    return encode_causal(examples, prep.loaded.tokenizer, max_len)


def score_split(prep: Prepared, model: nn.Module, split: str, bar: Any, label: str) -> float:
    """The task's primary metric of ``model`` on ``split`` (progress shown as ``label``)."""
    return score_items(prep, model, split, bar, label)[0]


def score_items(prep: Prepared, model: nn.Module, split: str, bar: Any,
                label: str) -> tuple[float, list[int]]:
    """The primary metric on ``split`` and each item's outcome (1 right, 0 wrong), in the
    split's order, so that techniques can be compared item by item."""
    score, answers = score_answers(prep, model, split, bar, label)
    return score, [int(a.correct) for a in answers]


def score_answers(prep: Prepared, model: nn.Module, split: str, bar: Any,
                  label: str) -> tuple[float, list[Answer]]:
    """The primary metric on ``split`` and each item's `Answer` (prompt, reference, output,
    extracted answer, verdict), in the split's order."""
    metrics, answers = score_metrics(prep, model, split, bar, label)
    return metrics[prep.task.metric], answers


def score_metrics(prep: Prepared, model: nn.Module, split: str, bar: Any,
                  label: str) -> tuple[dict[str, float], list[Answer]]:
    """Every metric the task computes on ``split`` (`Task.score`: corpus-level figures such
    as F1 or a correlation, the primary metric among them) and each item's `Answer`."""
    examples = prep.splits[split]
    with phase(bar, label, len(examples)) as advance:
        if prep.loaded.kind == "seq-cls":
            answers, probabilities = _classifier_answers(prep, model, examples, advance)
        else:
            answers, probabilities = _generated_answers(prep, model, examples, advance)
    predictions = [Prediction(a.answer, a.correct, p)
                   for a, p in zip(answers, probabilities, strict=True)]
    metrics = prep.task.score(predictions, examples)
    if prep.task.metric not in metrics:
        raise ValueError(f"task {prep.task.name!r} scored no {prep.task.metric!r} "
                         f"(it gave {sorted(metrics)})")
    return metrics, answers


def _classifier_answers(prep: Prepared, model: nn.Module, examples: list[Example],
                        advance: Any) -> tuple[list[Answer], list[tuple[float, ...]]]:
    """A classifier head's predicted label for each example, and its class probabilities."""
    params, names = prep.spec.train, prep.task.labels
    features = encode_examples(prep, examples)
    predictions, probabilities = evaluate.classify(
        model, features, pad_id=prep.loaded.tokenizer.pad_token_id,
        batch_size=params.eval_batch_size, device=prep.device, amp_dtype=prep.amp_dtype,
        advance=advance)
    if prep.task.regression:
        return _regression_answers(prep.task, predictions, examples), probabilities
    answers = []
    for i, (pred, feature, example) in enumerate(zip(predictions, features, examples,
                                                     strict=True)):
        said = _label_name(names, pred)
        answers.append(Answer(i, _classifier_input(example),
                              _label_name(names, feature.labels), said, said,
                              pred == feature.labels))
    return answers, probabilities


def _regression_answers(task: Task, predictions: list[float],
                        examples: list[Example]) -> list[Answer]:
    """A regression head's outputs as answers (nine significant digits: a float32 output
    exactly, so the metrics see the real values), each judged by the task's `Task.is_correct`
    (STS-B: the output rounds to the reference's rounded score)."""
    answers = []
    for i, (value, example) in enumerate(zip(predictions, examples, strict=True)):
        said = f"{value:.9g}"
        answers.append(Answer(i, _classifier_input(example), example.answer, said, said,
                              bool(task.is_correct(said, example))))
    return answers


def _classifier_input(example: Example) -> str:
    """What a classifier head read: the text, and a pair's second text on its own line."""
    text = example.text or example.prompt
    return f"{text}\n{example.text_pair}" if example.text_pair else text


def _label_name(names: tuple[str, ...], index: Any) -> str:
    """The name of class ``index`` (its number when the task names no such class)."""
    return names[index] if isinstance(index, int) and 0 <= index < len(names) else str(index)


def _generated_answers(prep: Prepared, model: nn.Module, examples: list[Example],
                       advance: Any) -> tuple[list[Answer], list[tuple[float, ...]]]:
    """Each example's greedy generation, the answer the task extracts and its verdict (no
    class probabilities: empty tuples)."""
    params, task = prep.spec.train, prep.task
    _, outputs = evaluate.score_generation(
        task, model, prep.loaded.tokenizer, examples,
        max_new_tokens=params.max_new_tokens or task.max_new_tokens,
        batch_size=params.eval_batch_size, device=prep.device, amp_dtype=prep.amp_dtype,
        max_prompt_tokens=params.max_seq_length, advance=advance)
    answers = [Answer(i, e.prompt, e.answer or e.target.strip(), o, task.extract_answer(o),
                      bool(task.is_correct(o, e)))
               for i, (o, e) in enumerate(zip(outputs, examples, strict=True))]
    return answers, [()] * len(answers)


def items_fingerprint(examples: list[Example]) -> str:
    """A hash of a split's items, in order: per-item outcomes of two runs are paired only
    when their fingerprints agree (same items, same order)."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(json.dumps([e.prompt, e.target, e.answer, e.text, e.label,
                                  *extra_parts(e)]).encode())
    return digest.hexdigest()[:16]


def general_loss(prep: Prepared, model: nn.Module) -> float:
    """The cross-entropy of ``model`` on the run's general-text sample (forgetting probe)."""
    return evaluate.general_text_loss(
        model, prep.loaded.tokenizer, prep.general_blocks,
        max_len=prep.spec.train.max_seq_length, batch_size=prep.spec.train.eval_batch_size,
        device=prep.device, amp_dtype=prep.amp_dtype)
