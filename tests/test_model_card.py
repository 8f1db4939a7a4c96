"""The model card written into each saved adapter folder: read by huggingface_hub's `ModelCard`
as the Hub reads it, reproducing its run, and counted right by the census of cards."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from peftbench.census import census_cards
from peftbench.engine.experiment import run_experiment
from peftbench.engine.model_card import card_text, hub_base_model, library_of
from peftbench.engine.spec import ExperimentSpec, TrainParams, parse_spec

TINY_TRAIN = TrainParams(max_steps=2, batch_size=8, eval_every=2, max_new_tokens=6,
                         forgetting_samples=0, eval_batch_size=16, max_seq_length=64,
                         measure_inference=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A tiny LoRA run with its adapter saved: (result, adapter folder)."""
    spec = ExperimentSpec(model="tiny-llama", task="arith", method="lora",
                          task_options={"n_train": 16, "n_valid": 8, "n_test": 8},
                          train=TINY_TRAIN)
    outcome = run_experiment(spec, tmp_path_factory.mktemp("card"), progress=False)
    assert outcome.ok, outcome.error
    return outcome.result, Path(outcome.view.adapter_path)


def on_hub_model(result: dict, model: str = "smollm2-135m", method: str | None = None) -> dict:
    """The result as if its base model had been ``model`` (and its technique ``method``)."""
    changed = copy.deepcopy(result)
    spec = changed["run_info"]["peftbench"]["spec"]
    spec["model"] = model
    if method:
        spec["method"] = method
    return changed


def test_the_adapter_folder_holds_a_card_the_hub_reads(saved) -> None:
    result, adapter = saved
    card = ModelCard.load(adapter / "README.md")
    data = card.data
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert {"peft", "peftbench", "lora"} <= set(data.tags)
    assert data.base_model is None  # a tiny random model is not on the Hub
    info = result["train_info"]
    assert data.eval_results[0].metric_type == "accuracy"
    assert data.eval_results[0].metric_value == info["test_score"]
    assert data.eval_results[0].dataset_split == "test"
    assert f"{info['num_trainable_params']:,} of {info['num_total_params']:,}" in card.text
    assert "Model Card for Model ID" not in card.text  # PEFT's empty template is replaced


def test_a_hub_base_model_is_named_with_its_adapter_tag(saved) -> None:
    result, adapter = saved
    card = ModelCard(card_text(on_hub_model(result), library_of(adapter), adapter.name))
    base = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.base_model == base
    assert f"base_model:adapter:{base}" in card.data.tags
    assert "AutoPeftModelForCausalLM" in card.text
    assert hub_base_model("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    assert hub_base_model("tiny-llama") is None and hub_base_model("config:qwen2.5-0.5b") is None


def test_the_cards_command_reproduces_the_same_run(saved, tmp_path: Path) -> None:
    from peftbench.cli.run import build_spec

    result, adapter = saved
    text = (adapter / "README.md").read_text()
    block = re.search(r"cat > spec\.json <<'EOF'\n(.*?)\nEOF\npeftbench run --spec spec\.json",
                      text, re.S)
    assert block is not None
    spec = parse_spec(json.loads(block.group(1)))
    assert spec.content_hash() == result["run_info"]["peftbench"]["spec_hash"]
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(block.group(1))
    again = build_spec(spec_file, None, model="smollm2-135m", task="arith", method="lora",
                       adapter_config=None, set_=None, targets=None, data=None, task_opt=None,
                       eval_base=False, general_text=None, train={})
    assert again.content_hash() == spec.content_hash()  # `peftbench run`'s defaults yield


def test_the_census_counts_each_card_as_one_adapter_of_its_technique(saved, tmp_path) -> None:
    result, adapter = saved
    rows = []
    for method in ("lora", "ia3", "prompt_tuning"):
        card = ModelCard(card_text(on_hub_model(result, method=method), "peft", adapter.name))
        rows.append({"card": card.content, "tags": card.data.tags,
                     "library_name": card.data.library_name})
    cards = tmp_path / "cards.jsonl"
    cards.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    summary = census_cards(str(cards)).summary()
    assert summary["scanned"] == 3 and summary["peft_adapters"] == 3
    exactly = {row["technique"]: row["count"] for row in summary["exactly_one"]}
    assert exactly == {"lora": 1, "ia3": 1, "prompt_tuning": 1}
    mentioned = {row["technique"]: row["count"] for row in summary["any_mention"]}
    assert mentioned == exactly  # no card names a technique besides its own
