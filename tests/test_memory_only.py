"""The memory-only tournament: one cost-only run per technique, a table of memory and speed,
and analysis that reads its missing scores as missing (never as zero)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peftbench.analysis import load_results
from peftbench.analysis.recommendation import recommend
from peftbench.cli import app
from peftbench.tournament import TournamentConfig, make_plan
from peftbench.tournament.executors import InlineExecutor
from peftbench.tournament.memory import MemoryTournament, memory_rows, memory_spec

TINY_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 512, "max_position_embeddings": 256}
SMALL = {"n_train": 16, "n_valid": 4, "n_test": 4}


@pytest.fixture
def tiny_config(tmp_path: Path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY_CONFIG))
    return f"config:{path}"


def small_cfg(model: str, methods: list[str]) -> TournamentConfig:
    return TournamentConfig(model=model, task="arith", task_options=SMALL, methods=methods,
                            train={"max_steps": 3, "batch_size": 4, "max_seq_length": 64})


def test_memory_spec_is_cost_only_at_the_default_rate():
    spec = memory_spec(small_cfg("tiny-llama", ["lora"]), "lora")
    train = spec.train
    assert train.lr is None and not train.measure_scores and not train.eval_test
    assert train.forgetting_samples == 0 and not train.measure_inference
    assert train.eval_every == 1 and train.max_steps == 3  # one entry per step: its speed


def test_memory_tournament_measures_costs_and_resumes(tmp_path):
    cfg = small_cfg("tiny-llama", ["lora", "ia3"])
    outcome = MemoryTournament(make_plan(cfg, "causal-lm"), tmp_path, InlineExecutor()).run()
    rows = memory_rows(outcome)
    assert [r["status"] for r in rows] == ["success", "success"]
    by_method = {r["method"]: r for r in rows}
    assert by_method["ia3"]["trainable_params"] < by_method["lora"]["trainable_params"]
    for row in rows:
        assert row["peak_memory"] > 0 and row["file_size"] > 0 and row["steps"] == 3
        assert row["step_seconds"] > 0 and row["tokens_per_sec"] > 0
    assert rows[0]["peak_memory"] <= rows[1]["peak_memory"]  # lowest memory first
    saved = json.loads((tmp_path / "memory.json").read_text())
    assert saved["mode"] == "memory-only" and len(saved["techniques"]) == 2
    again = MemoryTournament(make_plan(cfg, "causal-lm"), tmp_path, InlineExecutor()).run()
    assert all(r.reused for t in again.techniques.values() for r in t.finals)


def test_cli_config_model_runs_memory_only_and_analysis_keeps_scores_missing(tmp_path,
                                                                             tiny_config):
    out = tmp_path / "mem"
    result = CliRunner().invoke(app, [
        "tournament", "--model", tiny_config, "--methods", "lora,ia3", "--steps", "2",
        "--executor", "inline", "--out", str(out), "--no-progress", "--json",
        "--task-opt", "n_train=16", "--train-opt", "batch_size=4"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {t["method"] for t in summary["techniques"]} == {"lora", "ia3"}
    assert all(t["peak_memory"] and t["trainable_params"] for t in summary["techniques"])
    assert "Memory and speed" in (out / "results.md").read_text()
    runs = load_results([out]).runs
    assert all(r.test_score is None and "random weights" in r.scores_note for r in runs)
    advice = recommend(runs)
    assert advice.best is None and "No run measured test_score" in advice.explain()[1]
    assert "test scores not measured" in advice.caveats[0]
    assert recommend(runs, optimize="peak_memory").best is not None
    report = CliRunner().invoke(app, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "(cost only)" in text and "0.000" not in text and "test scores not measured" in text


def test_memory_only_flag_dry_run_lists_the_techniques(tmp_path):
    result = CliRunner().invoke(app, [
        "tournament", "--model", "tiny-llama", "--memory-only", "--methods", "lora,ia3",
        "--dry-run", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "memory-only: 2 techniques × 4 steps" in result.stdout
    assert "  lora" in result.stdout and not (tmp_path / "t").exists()
