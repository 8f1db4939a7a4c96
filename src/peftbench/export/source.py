"""Opening a finished run for export: read its result file, refuse what cannot be exported, and
re-create the task, the base model and the model with the original adapter, which are then
scored, probed and merged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from peftbench.engine import prepared
from peftbench.engine.batching import collate
from peftbench.engine.inputs import legacy_inputs, locate_inputs
from peftbench.engine.prepared import Prepared
from peftbench.engine.record import ResultView
from peftbench.engine.results import STATUS_SUCCESS, read_result
from peftbench.engine.spec import ExperimentSpec, parse_spec
from peftbench.errors import UserError, first_line

#: test examples whose logits are compared before and after conversion
PROBE_EXAMPLES = 4

Mode = Literal["lora", "merged"]


# ---------------------------------------------------------------------------- the result file


@dataclass
class SourceRun:
    """A finished run: its result file, spec and saved adapter folder."""

    path: Path
    result: dict[str, Any]
    spec: ExperimentSpec
    adapter_dir: Path
    located: ExperimentSpec | None = None  # the spec with its inputs where they are now

    @property
    def runnable(self) -> ExperimentSpec:
        """The spec to re-create the run from: its inputs found again, the forgetting probe
        off (an export does not measure it)."""
        return self.located or _without_forgetting(self.spec)


def open_run(path: str | os.PathLike[str], inputs: dict[str, str] | None = None) -> SourceRun:
    """Read a result file; the run must have succeeded and its adapter folder must exist.
    The files the run read are found again by content, from anywhere: the recorded absolute
    path, or ``inputs`` (role -> path, e.g. ``{"data": "moved/qa.jsonl"}``) for moved ones."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such result file")
    result = read_result(path)
    view = ResultView(result)
    if view.status != STATUS_SUCCESS:
        why = first_line(view.error or "no error recorded")
        raise UserError(f"{path}: the run did not succeed ({view.status}: {why}); "
                        "there is nothing to export")
    if not view.spec_data:
        raise UserError(f"{path}: not a peftbench result (no run_info.peftbench.spec), so its "
                        "task and model cannot be re-created")
    adapter_dir = _adapter_dir(path, view.adapter_path)
    spec = parse_spec(view.spec_data)
    recorded = view.inputs if view.inputs is not None else legacy_inputs(spec, view.dataset_info)
    located = locate_inputs(_without_forgetting(spec), recorded, str(path), inputs)
    return SourceRun(path, result, spec, adapter_dir, located)


def _without_forgetting(spec: ExperimentSpec) -> ExperimentSpec:
    return spec.model_copy(update={"train": spec.train.model_copy(
        update={"forgetting_samples": 0})})


def _adapter_dir(result_path: Path, recorded: str | None) -> Path:
    """The recorded adapter folder, else the standard one beside the result file."""
    beside = result_path.parent / "adapters" / result_path.stem
    for candidate in ([Path(recorded)] if recorded else []) + [beside]:
        if candidate.is_dir():
            return candidate
    if not recorded:
        raise UserError(f"{result_path}: the run saved no adapter (run_info.peftbench."
                        "adapter_path is empty)")
    raise UserError(f"{result_path}: the adapter folder {recorded} is missing")


def check_exportable(method: str, mode: Mode) -> None:
    """Refuse, in one line, techniques whose adapter is not a weight update (for ``lora``
    mode: not an update of Linear layers)."""
    from peftbench.methods import get_method
    from peftbench.methods.capabilities import all_capabilities

    if get_method(method).trains_base_weights:  # full, GaLore, freeze, …: trained − base
        return
    caps = all_capabilities().get(method, {})
    if caps.get("prompt_only"):
        raise UserError(f"{method} is prompt-based: it learns virtual tokens or prefixes, not "
                        "a change of weights, so it cannot become LoRA or be merged "
                        "(serve it with PEFT)")
    if not caps.get("merge", False):
        raise UserError(f"{method} cannot be merged into the base weights, so it has no "
                        "weight update that LoRA or a merged model could carry")
    if mode == "lora" and "Linear" not in caps.get("layers", ["Linear"]):
        adapts = ", ".join(caps.get("layers") or []) or "no Linear"
        raise UserError(f"{method} adapts {adapts} layers, not Linear ones: a LoRA adapter "
                        "cannot carry its change (--merge can)")


# ---------------------------------------------------------------------------- re-creating the run


@dataclass
class Session:
    """The re-created run: task and base model, and the base model with the original adapter."""

    source: SourceRun
    prep: Prepared
    model: nn.Module
    base: dict[str, torch.Tensor]  # the base model's state, by name, on the CPU
    bar: Any
    #: an image run's encoded images and prompts and its image encoder (None for text)
    image: Any = None


def load_session(source: SourceRun, bar: Any) -> Session:
    """Re-create task and base model from the spec, snapshot the base, load the adapter."""
    prep = prepared.prepare(source.runnable)
    base_model = prep.loaded.model
    base = {k: v.detach().cpu().clone() for k, v in base_model.state_dict().items()}
    model = prep.method.load(base_model, prep.loaded.kind, source.adapter_dir)
    _refuse_quantized(model, source.spec.method)
    image = _image_scoring(prep) if prep.loaded.kind == "image-gen" else None
    return Session(source, prep, model.to(prep.device), base, bar, image)


def _image_scoring(prep: Prepared) -> tuple[Any, Any]:
    """An image run's encoded data and its image encoder, for scoring before and after."""
    from peftbench.engine.image_run import prepare_images
    from peftbench.engine.image_scores import encoder_for

    return prepare_images(prep.loaded.pipeline, prep.task, prep.splits), \
        encoder_for(prep.loaded.pipeline.scorer)


def _refuse_quantized(model: nn.Module, method: str) -> None:
    if any(type(m).__module__.startswith("bitsandbytes") for m in model.modules()):
        raise UserError(f"{method} runs on a quantized base: its merged weights carry the "
                        "quantization error, so its update cannot be measured; not supported")


def score_on_test(session: Session, model: nn.Module, label: str) -> float:
    """The task's test score of ``model``: the run's own test set, metric and settings."""
    model.to(session.prep.device)
    if session.image is not None:  # the run's own test similarity: same seeds, 3 repeats
        from peftbench.engine.image_run import TEST_REPEATS, similarity_items
        from peftbench.engine.image_scores import mean

        data, encoder = session.image
        params = session.prep.spec.train
        return mean(similarity_items(data, model, encoder, "test", params.seed,
                                     params.eval_batch_size, TEST_REPEATS))
    return prepared.score_split(session.prep, model, "test", session.bar, label)


@torch.no_grad()
def probe_logits(prep: Prepared, model: nn.Module, image: Any = None) -> torch.Tensor:
    """Logits on the first test examples (float32), to compare outputs across conversion;
    for an image run (``image``: its data), the transformer's velocity on a probe batch."""
    if image is not None:
        from peftbench.engine.image_run import probe_batch

        model.eval()
        batch = {k: v.to(prep.device) for k, v in probe_batch(image[0], PROBE_EXAMPLES).items()}
        return model(**batch, return_dict=False)[0].float().cpu()
    features = prepared.encode_examples(prep, prep.splits["test"][:PROBE_EXAMPLES])
    batch = collate(features, prep.loaded.tokenizer.pad_token_id)
    model.eval()
    out = model(input_ids=batch["input_ids"].to(prep.device),
                attention_mask=batch["attention_mask"].to(prep.device))
    return out.logits.float().cpu()


def merged_model(session: Session) -> nn.Module:
    """The base model with the adapter folded in (for a technique that trains the base
    weights themselves, full fine-tuning or GaLore, freeze tuning, …: the model itself)."""
    method, model = session.prep.method, session.model
    if method.trains_base_weights:
        return model
    if not method.can_merge(model):
        why = " (it folds into biases the adapted layers lack)" if method.merge_needs_bias else ""
        raise UserError(f"{method.name} cannot be merged on this model{why}, so it has no "
                        "weight update to export")
    return method.merge(model)


def restore_base(session: Session, model: nn.Module) -> nn.Module:
    """Put the snapshot of the base weights back into ``model`` (same architecture)."""
    model.load_state_dict(session.base)
    return model.to(session.prep.device)
