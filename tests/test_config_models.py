"""Models built from a config alone (``config:…``) and cost-only runs: real sizes without
weights, scores recorded as not measured (null with a note, never 0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from peftbench.engine.config_models import CONFIGS, params_on_meta, read_config
from peftbench.engine.experiment import run_experiment
from peftbench.engine.models import is_encoder, load_model
from peftbench.engine.results import read_result, summarize
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError

TINY_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 512, "max_position_embeddings": 256, "tie_word_embeddings": True,
               "torch_dtype": "bfloat16"}
#: published parameter counts of the shipped architectures (embeddings tied)
SIZES = {"llama-3.2-1b": 1_235_814_400, "llama-3.2-3b": 3_212_749_824,
         "qwen2.5-0.5b": 494_032_768}


@pytest.fixture
def tiny_config(tmp_path: Path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return str(path)


def cost_spec(model: str, **train) -> ExperimentSpec:
    params = {"max_steps": 3, "batch_size": 4, "eval_every": 1, "forgetting_samples": 4,
              "eval_batch_size": 8, "max_seq_length": 64, **train}
    return ExperimentSpec(model=model, task="arith", method="lora",
                          task_options={"n_train": 16, "n_valid": 4, "n_test": 4},
                          train=TrainParams(**params))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_shipped_configs_build_their_architecture_at_its_published_size(name):
    config, where = read_config(name)
    assert Path(where).is_file() and Path(where).parent.name == "configs"
    with params_on_meta(), torch.device("meta"):  # the size only: nothing allocated
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == SIZES[name]
    assert not is_encoder(f"config:{name}")


def test_config_model_has_seeded_random_weights_at_real_shapes(tiny_config):
    loaded = load_model(f"config:{tiny_config}", seed=3)
    model = loaded.model
    assert loaded.random_weights and loaded.info["source"] == "config"
    assert "stand-in" in loaded.info["tokenizer"]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tying kept
    assert not any(p.is_meta for p in model.parameters())
    assert torch.equal(model.model.norm.weight, torch.ones(64))
    q = model.model.layers[0].self_attn.q_proj.weight
    assert q.dtype == torch.float32 and 0.015 < float(q.detach().std()) < 0.025
    again = load_model(f"config:{tiny_config}", seed=3).model
    assert torch.equal(again.model.layers[1].mlp.up_proj.weight,
                       model.model.layers[1].mlp.up_proj.weight)
    ids = loaded.tokenizer("Question: 3 + 4 =", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)  # rotary buffers are real


def test_config_mistakes_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a shipped config"):
        load_model("config:no-such-model")
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match="not a readable JSON config"):
        load_model(f"config:{broken}")
    broken.write_text(json.dumps({**TINY_CONFIG, "vocab_size": 100}))
    with pytest.raises(UserError, match="smaller than the stand-in"):
        load_model(f"config:{broken}")


def test_run_on_a_config_model_records_costs_and_null_scores(tmp_path, tiny_config):
    outcome = run_experiment(cost_spec(f"config:{tiny_config}", eval_base=True), tmp_path,
                             progress=False)
    assert outcome.ok, outcome.error
    info = read_result(outcome.path)["train_info"]
    for score in ("test_score", "valid_score", "base_test_score", "forgetting", "test_items"):
        assert info[score] is None, score
    assert "random weights" in info["scores_note"]
    assert info["train_time"] > 0 and info["tokens_per_sec"] > 0 and info["peak_memory"] > 0
    assert info["num_trainable_params"] > 0 and info["file_size"] > 0
    assert [m["step"] for m in info["metrics"]] == [1, 2, 3]  # no validation, no test entry
    assert not any(k.startswith(("valid ", "test ")) for m in info["metrics"] for k in m)
    assert outcome.view.adapter_path is None and not any((tmp_path / "adapters").iterdir())
    run = summarize(read_result(outcome.path), str(outcome.path))
    assert run.test_score is None and run.file_size == info["file_size"]


def test_cost_only_spec_on_a_real_model_skips_every_score(tmp_path):
    outcome = run_experiment(cost_spec("tiny-llama", measure_scores=False), tmp_path,
                             progress=False, save_adapter=False)
    info = outcome.result["train_info"]
    assert outcome.ok and info["scores_note"].endswith("(measure_scores=false)")
    assert info["test_score"] is None and info["valid_score"] is None
    assert info["file_size"] is None  # not saved: nothing to measure


def test_measure_scores_enters_the_hash_only_when_off():
    spec = cost_spec("tiny-llama")
    assert "measure_scores" not in spec.canonical_json()  # earlier results keep their hashes
    off = spec.model_copy(update={"train": spec.train.model_copy(
        update={"measure_scores": False})})
    assert '"measure_scores":false' in off.canonical_json()
    assert off.content_hash() != spec.content_hash()


def test_cli_rejects_an_unknown_shipped_config_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "peftbench.cli", "run", "--model",
                           "config:llama-3.2-2b", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "did you mean 'llama-3.2-3b'" in done.stderr and "Traceback" not in done.stderr
