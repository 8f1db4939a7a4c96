"""Every experiment folder of the PEFT method-comparison suite is a valid `run` input."""

from __future__ import annotations

from pathlib import Path

import pytest

from peftbench.engine.experiment import run_experiment
from peftbench.engine.peft_suite import read_experiment_folder
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError

SUITE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "peft-method-comparison"
FOLDERS = sorted(p.parent for p in (SUITE / "MetaMathQA" / "experiments").glob("*/*/*.json"))
FOLDERS = sorted(set(FOLDERS))
#: folders sized for Llama-3.2-3B that cannot apply to a tiny Llama (hidden size 64,
#: 2 layers, vocabulary 384), and the reason each must give
SHAPE = "cannot be applied to this model"
NOT_APPLICABLE: dict[str, str] = {
    "adaptionprompt/llama-3.2-3B-lr_0.0005": "more adapter layers '28' than the model has '2'",
    "adaptionprompt/llama-3.2-3B-lr_5e-3": "more adapter layers '28' than the model has '2'",
    "c3a/llama-3.2-3B-default": "block size should be a factor of the output size",
    "fourierft/llama-3.2-3B-n_frequency-5000": "n_frequency",
    "waveft/llama-3.2-3B-n_frequency-5000": "n_frequency",
    "lora/llama-3.2-3B-rank32-kasa": "KaSA requires `r` (32) to be smaller",
    "lora/llama-3.2-3B-rank32-riemannian": "optimizer_type 'riemannian' is not in",
    "miss/llama-3.2-3B-bat": "divisible into [r, r] blocks",
    "miss/llama-3.2-3B-mini": "out_features be divisible by mini_r",
    "osf/llama-3.2-3B-rank128": "no trainable parameters",
    "psoft/llama-3.2-3B-default": "must be less than or equal to min(in_features",
    "psoft/llama-3.2-3B-fast": "must be less than or equal to min(in_features",
    "road/llama-3.2-3B-lr_0.001": "divisible by group_size",
    "shira/llama-3.2-3B-lr_0.0003-random_seed_42": "more shira params than",
    "vblora/llama-3.2-3B-bank1024-lr5e4": "must be divisible by `vector_length`",
    "vblora/llama-3.2-3B-default": "must be divisible by `vector_length`",
    # token ids of Llama 3's vocabulary: recorded as a failed run with the indexing error
    "trainable_tokens/llama-3.2-3B-sos+eos": "index 128000 is out of bounds",
}


def test_the_suite_folders_are_present(peft_reference):
    assert len(FOLDERS) >= 40


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_folder_trains_a_few_steps_on_tiny_llama(folder, tmp_path, peft_reference):
    reason = NOT_APPLICABLE.get(f"{folder.parent.name}/{folder.name}")
    try:
        fields = read_experiment_folder(folder)
    except UserError as exc:
        assert reason is not None and reason in str(exc), str(exc)
        return
    train = TrainParams(max_steps=3, batch_size=2, eval_every=3, max_new_tokens=4,
                        eval_batch_size=4, forgetting_samples=0, measure_inference=False,
                        **fields.pop("train"))
    spec = ExperimentSpec(model="tiny-llama", task="arith",
                          task_options={"n_train": 8, "n_valid": 2, "n_test": 2},
                          train=train, **fields)
    try:
        outcome = run_experiment(spec, tmp_path, progress=False, save_adapter=True)
    except UserError as exc:
        assert reason is not None, f"unexpected refusal: {exc}"
        assert reason in str(exc)
        return
    if reason is not None:
        assert not outcome.ok and reason in outcome.result["run_info"]["error_msg"]
        return
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    assert outcome.result["train_info"]["num_trainable_params"] > 0
