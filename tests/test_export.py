"""`peftbench export`: any adapter as a plain LoRA (or merged model), verified, on tiny models."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from peftbench import export as ex
from peftbench.engine.experiment import run_experiment
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError
from peftbench.export import pipeline

TINY_TASK = {"n_train": 24, "n_valid": 4, "n_test": 4}


def tiny_spec(method: str, **fields) -> ExperimentSpec:
    train = TrainParams(max_steps=4, batch_size=4, eval_every=4, max_new_tokens=6,
                        forgetting_samples=0, eval_batch_size=8, max_seq_length=96,
                        measure_inference=False)
    base = {"model": "tiny-llama", "task": "arith", "task_options": dict(TINY_TASK),
            "method": method, "train": train}
    return ExperimentSpec(**{**base, **fields})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and threads stall when the cores are shared."""
    with ex.one_thread():
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Result files of tiny runs, trained once per module and technique."""
    made: dict[str, Path] = {}

    def get(method: str, **fields) -> Path:
        key = method + json.dumps(fields, sort_keys=True, default=str)
        if key not in made:
            out = tmp_path_factory.mktemp(method)
            outcome = run_experiment(tiny_spec(method, **fields), out, progress=False)
            assert outcome.ok, outcome.result["run_info"]["error_msg"]
            made[key] = outcome.path
        return made[key]

    return get


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `peftbench export ARGS` in-process: exit code, stdout, stderr."""
    from peftbench.cli import main

    monkeypatch.setattr(sys, "argv", ["peftbench", "export", *args, "--no-progress"])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in err, err
    assert "Traceback" not in err


def only_entry(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def original_logits(result: Path, tokens: torch.Tensor) -> torch.Tensor:
    """Logits of base + original adapter, loaded independently of the export."""
    source = ex.open_run(result)
    session = ex.load_session(source, bar=None)
    with torch.no_grad():
        return session.model(input_ids=tokens).logits


# ---------------------------------------------------------------------------- LoRA → LoRA

#: four one-word answers the tiny model learns by heart (train = validation = test)
MEMO = [{"prompt": f"Q{i}:", "response": word}
        for i, word in enumerate(("red", "blue", "green", "gold"))]


@pytest.fixture(scope="module")
def memorised(tmp_path_factory) -> Path:
    """A tiny LoRA run that has memorised its four test problems: it scores well above 0, so
    a score round trip through an export can show a loss (a run scoring 0 cannot)."""
    folder = tmp_path_factory.mktemp("memorised")
    data = folder / "memo.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MEMO))
    train = TrainParams(max_steps=120, batch_size=4, eval_every=120, max_new_tokens=4,
                        forgetting_samples=0, eval_batch_size=8, max_seq_length=32,
                        measure_inference=False, lr=1e-2, dtype="float32")
    spec = ExperimentSpec(model="tiny-llama", task=f"jsonl:{data}", method="lora", train=train,
                          task_options={"validation": str(data), "test": str(data),
                                        "match": "first_line"})
    outcome = run_experiment(spec, folder / "out", progress=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    assert outcome.result["train_info"]["test_score"] >= 0.5, "the run must score to compare"
    return outcome.path


@pytest.fixture(scope="module")
def lora_export(memorised, tmp_path_factory):
    """The memorised LoRA run exported at its own rank (16): the folder and the report."""
    out = tmp_path_factory.mktemp("lora-export") / "out"
    return out, ex.export_lora(memorised, out, 16, min_score_ratio=0.99, progress=False)


def test_lora_at_its_own_rank_reproduces_its_outputs(lora_export):
    out, report = lora_export
    assert report.ok and report.conversion == "peft"
    assert report.max_relative_error < 1e-5
    assert report.probe_max_abs_logit_diff < 1e-4
    recorded = json.loads(Path(report.result).read_text())["train_info"]["test_score"]
    assert report.score_recorded == recorded >= 0.5  # a score there is to lose
    assert report.score_after == report.score_before == report.score_recorded
    assert report.score_ratio == 1.0
    assert report.size_exported_bytes == report.size_original_bytes  # same rank, same tensors
    assert report.vllm == {"compatible": True, "problems": [], "notes": [],
                           "max_lora_rank": 16}
    config = json.loads((out / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["rank_pattern"]) == (16, 16, {})
    assert sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["status"] == "exported" and len(saved["layers"]) == 8


def test_exported_folder_loads_with_peft_from_pretrained(memorised, lora_export):
    from peft import PeftModel

    from peftbench.engine.models import load_model

    out, _ = lora_export
    tokens = torch.tensor([[5, 17, 42, 99, 7, 3]])
    exported = PeftModel.from_pretrained(load_model("tiny-llama", seed=0).model, str(out))
    with torch.no_grad():
        got = exported.eval()(input_ids=tokens).logits
        base = exported.get_base_model()
        with exported.disable_adapter():
            without = base(input_ids=tokens).logits
    want = original_logits(memorised, tokens)
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())
    assert not torch.allclose(without, want, atol=1e-4)  # and the adapter does something


# ---------------------------------------------------------------------------- general path


@pytest.fixture(scope="module")
def oft_update(runs):
    """The measured weight update of a tiny OFT run (a technique PEFT cannot convert)."""
    source = ex.open_run(runs("oft"))
    session = ex.load_session(source, bar=None)
    peft, why_not = ex.peft_factors(session.model, 8)
    assert peft is None and "oft.Linear" in why_not
    merged = ex.merged_model(session)
    return ex.weight_update(merged, session.base, "causal-lm")


def test_reconstruction_error_falls_with_rank_and_vanishes_at_full_rank(oft_update):
    errors = []
    for rank in (1, 4, 16, 64):
        factors, path = ex.factorize(oft_update, rank, torch.float32, None)
        assert path == "general"
        errors.append(sum(f.relative_error for f in factors) / len(factors))
        for f in factors:  # the truncated SVD is the best rank-r approximation
            assert f.relative_error == pytest.approx(f.svd_bound, abs=1e-5)
            assert f.rank == min(rank, *f.shape)
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == 4
    assert errors[0] > 0.1 and errors[-1] < 1e-6


def test_fractional_rank_keeps_that_share_of_each_layers_energy(oft_update):
    factors, _ = ex.factorize(oft_update, 0.9, torch.float32, None)
    ranks = {f.rank for f in factors}
    assert len(ranks) > 1, "per-layer ranks should differ"
    for f in factors:
        delta = oft_update.layers[f.name]
        assert f.relative_error <= math.sqrt(0.1) + 1e-6  # ≥ 90% of Σσ² kept
        s = torch.linalg.svdvals(delta.double())
        assert ex.svd_bound(s, f.rank - 1) > math.sqrt(0.1)  # and the rank is the smallest


def test_energy_rank_follows_peft_rule():
    s = torch.tensor([3.0, 2.0, 1.0])  # energies 9, 4, 1 of 14
    assert ex.energy_rank(s, 9 / 14) == 1
    assert ex.energy_rank(s, 0.9) == 2
    assert ex.energy_rank(s, 1.0) == 3


def test_oft_export_through_the_cli_writes_a_general_path_lora(runs, tmp_path, monkeypatch,
                                                                capsys):
    out = tmp_path / "oft-lora"
    code, stdout, err = cli(monkeypatch, capsys, str(runs("oft")), "--to-lora", "--rank", "0.9",
                            "--out", str(out))
    assert code == 0, err
    assert only_entry(out) == ["adapter_config.json", "adapter_model.safetensors",
                               "export_report.json"]
    report = json.loads((out / "export_report.json").read_text())
    assert report["conversion"].startswith("general: PEFT cannot convert")
    assert report["rank_requested"] == 0.9 and report["max_relative_error"] <= math.sqrt(0.1)
    assert "relative reconstruction error" in stdout and "exported:" in stdout  # the result
    assert "vLLM rules" in stdout and "static" in stdout  # a check of the files, not a load
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["rank_pattern"] and config["alpha_pattern"] == config["rank_pattern"]
    assert config["r"] == config["lora_alpha"] == max(la["rank"] for la in report["layers"])


def test_delta_lora_exports_through_the_general_path(runs, tmp_path):
    result = runs("delta_lora", adapter_config={"warmup_steps": 1})
    report = ex.export_lora(result, tmp_path / "out", 64, progress=False)
    assert report.conversion.startswith("general: not a PEFT tuner")
    assert report.max_relative_error < 1e-5  # full rank: W's move and B·A reproduced
    assert report.probe_max_abs_logit_diff < 1e-4
    assert report.score_after == report.score_before
    assert not report.dropped and report.vllm["compatible"]


def test_full_fine_tuning_exports_linear_updates_and_lists_what_it_drops(runs, tmp_path):
    report = ex.export_lora(runs("full"), tmp_path / "out", 8, progress=False)
    assert report.conversion.startswith("general")
    leaves = {layer["name"].rpartition(".")[2] for layer in report.layers}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                      "down_proj"}
    dropped = {d["name"] for d in report.dropped}
    assert "model.embed_tokens.weight" in dropped and "lm_head.weight" in dropped
    assert any("norm" in name for name in dropped)
    assert 0 < report.mean_relative_error < 1  # rank 8 of 64: a real truncation
    assert report.vllm["compatible"]


def test_dora_falls_back_to_the_general_path(runs, tmp_path):
    """PEFT's get_delta_weight leaves DoRA's magnitude out: its factors would be wrong."""
    report = ex.export_lora(runs("dora"), tmp_path / "out", 16, progress=False)
    assert report.conversion.startswith("general: PEFT's factors miss the merged update")
    for layer in report.layers:  # the best a rank-16 LoRA can do for the whole update
        assert layer["relative_error"] == pytest.approx(layer["svd_bound"], abs=1e-5)


# ---------------------------------------------------------------------------- merge


def test_merge_writes_a_full_model_that_scores_the_same(runs, tmp_path, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    code, _, err = cli(monkeypatch, capsys, str(runs("lora")), "--merge", "--out", str(out))
    assert code == 0, err
    names = only_entry(out)
    assert "model.safetensors" in names and "config.json" in names
    assert "tokenizer.json" in names and "export_report.json" in names
    report = json.loads((out / "export_report.json").read_text())
    assert report["mode"] == "merged" and report["score_after"] == report["score_before"]
    assert report["probe_max_abs_logit_diff"] < 1e-4
    tokens = torch.tensor([[5, 17, 42, 99, 7, 3]])
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    with torch.no_grad():
        got = model(input_ids=tokens).logits
    assert torch.allclose(got, original_logits(runs("lora"), tokens), atol=1e-4)


# ---------------------------------------------------------------------------- refusals, failures


def test_prompt_tuning_is_refused_in_one_line_with_no_output(runs, tmp_path, monkeypatch,
                                                              capsys):
    out = tmp_path / "out"
    for mode in (["--to-lora", "--rank", "8"], ["--merge"]):
        code, _, err = cli(monkeypatch, capsys, str(runs("prompt_tuning")), *mode,
                           "--out", str(out))
        assert_one_line_error(code, err, "prompt_tuning is prompt-based")
        assert only_entry(tmp_path) == []


def test_a_technique_that_changes_no_linear_layer_is_refused(runs, tmp_path, monkeypatch,
                                                             capsys):
    code, _, err = cli(monkeypatch, capsys, str(runs("ln_tuning")), "--to-lora", "--rank", "8",
                       "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "ln_tuning adapts no Linear layers")
    assert only_entry(tmp_path) == []


def test_min_score_ratio_rejects_and_keeps_only_the_report(memorised, tmp_path, monkeypatch,
                                                           capsys):
    out = tmp_path / "out"
    # no export scores 1.5× its original: the check must fail
    code, stdout, err = cli(monkeypatch, capsys, str(memorised), "--to-lora", "--rank", "2",
                            "--out", str(out), "--min-score-ratio", "1.5")
    assert code == 1, err
    assert "rejected:" in stdout  # the report is the verb's result: stdout
    assert only_entry(out) == ["export_report.json"]
    report = json.loads((out / "export_report.json").read_text())
    assert report["status"] == "rejected" and report["min_score_ratio"] == 1.5
    assert report["score_ratio"] == pytest.approx(report["score_after"] / report["score_before"])
    assert report["score_ratio"] < 1.5 and "weights were removed" in report["reason"]
    # a second try replaces the rejected folder only when asked to
    code, _, err = cli(monkeypatch, capsys, str(memorised), "--to-lora", "--rank", "16",
                       "--out", str(out), "--min-score-ratio", "0.5", "--overwrite")
    assert code == 0, err
    assert only_entry(out) == ["adapter_config.json", "adapter_model.safetensors",
                               "export_report.json"]
    assert only_entry(tmp_path) == ["out"]  # no temp or old folder left beside it


def test_a_run_that_scores_0_has_no_ratio_and_fails_a_minimum(runs, tmp_path, monkeypatch,
                                                              capsys):
    report = ex.export_lora(runs("lora"), tmp_path / "plain", 16, progress=False)
    assert report.score_before == 0 and report.score_ratio is None and report.ok
    code, stdout, _ = cli(monkeypatch, capsys, str(runs("lora")), "--to-lora", "--rank", "16",
                          "--out", str(tmp_path / "gated"), "--min-score-ratio", "0.5")
    assert code == 1 and "not measured" in stdout
    saved = json.loads((tmp_path / "gated" / "export_report.json").read_text())
    assert saved["score_ratio"] is None and "cannot be measured" in saved["reason"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--rank", "0"], "at least 1"),
    (["--rank", "1.5"], "must be in (0, 1]"),
    (["--rank", "many"], "is not a number"),
    ([], "needs --rank"),
])
def test_bad_ranks_exit_2_with_one_line(runs, tmp_path, monkeypatch, capsys, args, needle):
    out = tmp_path / "out"
    code, _, err = cli(monkeypatch, capsys, str(runs("lora")), "--to-lora", *args,
                       "--out", str(out))
    assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_bad_inputs_exit_2_with_one_line_and_no_output(runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    good = json.loads(runs("lora").read_text())

    def variant(name: str, edit) -> str:
        data = json.loads(json.dumps(good))
        edit(data)
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)

    failed = variant("failed.json", lambda d: (d["train_info"].update(status="failed"),
                                               d["run_info"].update(error_msg="boom")))
    no_adapter = variant("gone.json", lambda d: d["run_info"]["peftbench"].update(
        adapter_path=str(tmp_path / "nowhere")))
    cases = [
        ([str(tmp_path / "missing.json"), "--to-lora", "--rank", "8"], "does not exist"),
        ([failed, "--to-lora", "--rank", "8"], "did not succeed (failed: boom)"),
        ([no_adapter, "--to-lora", "--rank", "8"], "is missing"),
        ([str(runs("lora")), "--to-lora", "--merge", "--rank", "8"], "choose one of"),
        ([str(runs("lora")), "--merge", "--rank", "8"], "--rank applies to --to-lora"),
    ]
    for args, needle in cases:
        code, _, err = cli(monkeypatch, capsys, *args, "--out", str(out))
        assert_one_line_error(code, err, needle)
        assert not out.exists()
    out.mkdir()
    code, _, err = cli(monkeypatch, capsys, str(runs("lora")), "--to-lora", "--rank", "8",
                       "--out", str(out))
    assert_one_line_error(code, err, "already exists")


def test_a_crash_while_writing_leaves_no_folder(runs, tmp_path, monkeypatch):
    def broken(folder, *args, **kwargs):
        (folder / "adapter_model.safetensors").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "write_lora", broken)
    monkeypatch.setattr(pipeline, "score_on_test", lambda *args: 0.0)  # not what is tested here
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export_lora(runs("lora"), tmp_path / "out", 8, progress=False)
    assert only_entry(tmp_path) == []


def test_parse_rank():
    assert ex.parse_rank("16") == 16 and isinstance(ex.parse_rank("16"), int)
    assert ex.parse_rank("0.9") == 0.9 and ex.parse_rank("1.0") == 1.0
    for bad in ("0", "-3", "1.5", "0.0", "nan", "abc", ""):
        with pytest.raises(UserError):
            ex.parse_rank(bad)


# ---------------------------------------------------------------------------- vLLM check


def write_adapter(folder: Path, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def test_vllm_check_reports_every_broken_rule(tmp_path):
    config = {"peft_type": "LORA", "r": 1024, "lora_alpha": 16, "use_dora": True,
              "modules_to_save": ["lm_head"], "bias": "all",
              "rank_pattern": {"layers.0.query": 8}}
    tensors = {"base_model.model.layers.0.query.lora_A.weight": torch.zeros(8, 4),
               "base_model.model.layers.0.query.lora_B.weight": torch.zeros(4, 8),
               "base_model.model.layers.0.key.lora_A.weight": torch.zeros(8, 4),  # r says 1024
               "base_model.model.layers.0.key.lora_B.weight": torch.zeros(4, 8),
               "base_model.model.lm_head.weight": torch.zeros(4, 4)}
    check = ex.vllm_compatible(write_adapter(tmp_path / "bad", config, tensors))
    text = " | ".join(check.problems)
    assert not check.compatible
    for needle in ("DoRA", "bias", "modules_to_save", "not LoRA factors", "query",
                   "exceeds vLLM's largest", "per-layer scaling", "another rank"):
        assert needle in text, (needle, text)
    assert check.max_lora_rank is None


def test_vllm_check_names_the_max_lora_rank_flag(tmp_path):
    config = {"peft_type": "LORA", "r": 24, "lora_alpha": 24,
              "target_modules": ["q_proj"]}
    tensors = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":
               torch.zeros(24, 8),
               "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":
               torch.zeros(8, 24)}
    check = ex.vllm_compatible(write_adapter(tmp_path / "ok", config, tensors))
    assert check.compatible and check.max_lora_rank == 32
    assert check.notes == ["start vLLM with --max-lora-rank 32 (its default is 16)"]


def test_classifier_head_is_shipped_whole_and_vllm_says_why_not(tmp_path, shared_data):
    task = {"data": str(shared_data / "sst2"), "n_train": 24, "n_valid": 4, "n_test": 8}
    outcome = run_experiment(tiny_spec("lora", model="tiny-bert", task="sst2",
                                       task_options=task), tmp_path / "run", progress=False)
    assert outcome.ok, outcome.result["run_info"]["error_msg"]
    report = ex.export_lora(outcome.path, tmp_path / "out", 16, progress=False)
    assert report.heads == ["classifier"] and report.conversion == "peft"
    assert report.probe_max_abs_logit_diff < 1e-4
    assert report.score_after == report.score_before
    problems = " | ".join(report.vllm["problems"])
    assert "modules_to_save" in problems and "query" in problems
