"""GLUE and SuperGLUE tasks through the engine on tiny random models: an encoder with a
classification head on a sentence-pair task, a causal LM answering in text, an encoder scoring
ReCoRD's candidates; every official metric recorded, per-item outcomes kept."""

from __future__ import annotations

import json

import pytest
from glue_fixtures import write_task

from peftbench.engine.batching import encode_classification
from peftbench.engine.experiment import run_experiment
from peftbench.engine.record import ResultView
from peftbench.engine.results import read_result, summarize
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.tasks import Example


def spec_for(model: str, task: str, folder, **options) -> ExperimentSpec:
    train = TrainParams(max_steps=2, batch_size=4, eval_every=2, max_new_tokens=4,
                        forgetting_samples=0, eval_batch_size=8, max_seq_length=96,
                        measure_inference=False)
    return ExperimentSpec(model=model, task=task, method="lora", train=train,
                          task_options={"data": str(folder), "n_valid": 4, **options})


def test_an_encoder_on_mrpc_records_f1_and_accuracy(tmp_path):
    folder = write_task(tmp_path / "mrpc", "glue:mrpc", n_train=24, n_test=8)
    outcome = run_experiment(spec_for("tiny-bert", "glue:mrpc", folder), tmp_path / "out",
                             progress=False, save_adapter=False)
    assert outcome.ok, outcome.error
    data = read_result(outcome.path)
    info = data["train_info"]
    assert info["test_metric"] == "f1" and data["meta_info"]["dataset_info"]["name"] == "glue:mrpc"
    final = info["metrics"][-1]
    assert final["test f1"] == info["test_score"] and 0 <= final["test accuracy"] <= 1
    items = info["test_items"]  # per-item outcomes stay recorded: accuracy is their mean
    assert len(items) == 8 and final["test accuracy"] == pytest.approx(sum(items) / 8)
    assert "valid f1" in info["metrics"][0]
    view = ResultView(data)
    assert set(view.test_metrics) == {"f1", "accuracy"}
    assert summarize(data, str(outcome.path)).test_metrics == view.test_metrics
    answers = [json.loads(line) for line in outcome.path.with_name(
        info["test_answers"]).read_text().splitlines()]  # both texts of a pair are shown
    assert answers[1]["prompt"] == "test first text 1\ntest second text 1"
    assert [int(a["correct"]) for a in answers] == items


def test_a_causal_lm_on_cb_answers_in_words_and_records_macro_f1(tmp_path):
    folder = write_task(tmp_path / "cb", "superglue:cb", n_train=24, n_test=6)
    outcome = run_experiment(spec_for("tiny-llama", "superglue:cb", folder), tmp_path / "out",
                             progress=False, save_adapter=False)
    assert outcome.ok, outcome.error
    info = outcome.result["train_info"]
    final = info["metrics"][-1]
    assert info["test_metric"] == "macro_f1" and final["test macro_f1"] == info["test_score"]
    assert final["test accuracy"] == pytest.approx(sum(info["test_items"]) / 6)
    assert outcome.view.test_metrics.keys() == {"macro_f1", "accuracy"}


def test_an_encoder_on_record_scores_each_candidate_and_chooses_per_query(tmp_path):
    folder = write_task(tmp_path / "record", "superglue:record", n_train=12, n_test=4)
    outcome = run_experiment(spec_for("tiny-bert", "superglue:record", folder),
                             tmp_path / "out", progress=False, save_adapter=False)
    assert outcome.ok, outcome.error
    info = outcome.result["train_info"]
    assert len(info["test_items"]) == 4 * 3  # one outcome per candidate entity
    final = info["metrics"][-1]
    # every fixture query's answer is a single-token entity: F1 equals exact match
    assert final["test f1"] == final["test em"] == info["test_score"]
    assert final["test em"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert outcome.result["meta_info"]["dataset_info"]["sizes"]["test"] == 12


def test_an_encoder_reads_a_pair_with_its_separator():
    from transformers import AutoTokenizer

    from peftbench.engine.models import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))  # the embedded encoder's
    single = Example(prompt="", target="", text="first words", label=0)
    pair = Example(prompt="", target="", text="first words", text_pair="second words",
                   label=1)
    one, two = encode_classification([single, pair], tokenizer, 64)
    sep = tokenizer.sep_token_id
    assert one.input_ids.count(sep) == 1 and two.input_ids.count(sep) == 2
    assert two.input_ids[:len(one.input_ids)] == one.input_ids and two.labels == 1


def test_fingerprints_see_a_pair_and_leave_other_examples_as_they_were():
    import hashlib
    import json

    from peftbench.engine.prepared import items_fingerprint
    from peftbench.tasks.prepared import fingerprint

    plain = Example(prompt="p", target=" t", answer="t", text="x", label=1)
    before = hashlib.sha256(json.dumps(["p", " t", "t", "x", 1]).encode()).hexdigest()[:16]
    assert items_fingerprint([plain]) == before  # results written earlier still pair up
    bob, paris = (Example(prompt="q", target="", answer="no", text="passage", label=0,
                          text_pair=f"{who} went home") for who in ("Bob", "Paris"))
    assert items_fingerprint([bob, paris]) != items_fingerprint([paris, bob])
    splits = {"train": [bob], "validation": [], "test": []}
    assert fingerprint(splits) != fingerprint({**splits, "train": [paris]})


def test_an_encoder_regresses_stsb_and_its_run_still_exports(tmp_path):
    import torch

    from peftbench import export
    from peftbench.engine.batching import collate
    from peftbench.tasks import get_task

    folder = write_task(tmp_path / "stsb", "glue:stsb", n_train=24, n_test=8)
    task = get_task("glue:stsb", {"data": str(folder), "n_valid": 4})
    examples = task.load_split("train")[:3]
    features = encode_classification(examples, _tokenizer(), 64, regression=True)
    assert [f.labels for f in features] == [e.value for e in examples]  # the exact scores
    assert collate(features, 0)["labels"].dtype == torch.float32

    outcome = run_experiment(spec_for("tiny-bert", "glue:stsb", folder), tmp_path / "out",
                             progress=False, save_adapter=True)
    assert outcome.ok, outcome.error
    info = outcome.result["train_info"]
    final = info["metrics"][-1]
    assert info["test_metric"] == "pearson" and final["test pearson"] == info["test_score"]
    assert -1 <= final["test spearman"] <= 1 and len(info["test_items"]) == 8
    answers = [json.loads(line) for line in outcome.path.with_name(
        info["test_answers"]).read_text().splitlines()]
    outputs = [float(a["output"]) for a in answers]  # the head's output, not a class name
    assert len(set(outputs)) > 1 and not {a["output"] for a in answers} & set(task.labels)
    assert [a["reference"] for a in answers] == [e.answer for e in task.load_split("test")]

    # the run's head has one output: export rebuilds it at that size and scores the same
    report = export.export_lora(outcome.path, tmp_path / "lora", 16, progress=False)
    assert report.heads == ["classifier"] and report.probe_max_abs_logit_diff < 1e-4
    assert report.score_after == pytest.approx(report.score_before, abs=1e-6)
    merged = export.export_merged(outcome.path, tmp_path / "merged", progress=False)
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    # the same outputs (a tiny model's are nearly equal, so ties in the scores' low bits
    # may still swing its correlation: compare the outputs, not the score)
    assert merged.probe_max_abs_logit_diff < 1e-4 and -1 <= merged.score_after <= 1


def _tokenizer():
    from transformers import AutoTokenizer

    from peftbench.engine.models import minilm_folder

    return AutoTokenizer.from_pretrained(str(minilm_folder()))
