"""A run's identity includes the content of the files it reads: an edited data file, model
folder or general text makes a resumed tournament run those results again (and say so), and a
result records its inputs' absolute paths and hashes so that it can be opened from anywhere."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from cli_helpers import peftbench

from peftbench.engine import inputs
from peftbench.engine.inputs import record_inputs, stale_reason
from peftbench.engine.record import ResultView
from peftbench.engine.results import read_result
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError
from peftbench.tournament import Tournament, TournamentConfig, make_plan
from peftbench.tournament.runner import Hooks

TINY_TRAIN = {"max_steps": 4, "batch_size": 8, "eval_every": 4, "max_new_tokens": 4,
              "forgetting_samples": 0, "eval_batch_size": 16, "max_seq_length": 48,
              "measure_inference": False}
WORDS = ("red", "blue", "green", "gold", "pink", "grey")


def write_qa(path: Path, rows: int, answer=lambda i: WORDS[i % len(WORDS)]) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"Q{i}:", "response": answer(i)}) + "\n"
                            for i in range(rows)))
    return path


class Notes(Hooks):
    """Hooks that keep what the tournament said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def tournament(data: str, out: Path, **overrides):
    from peftbench.tournament.executors import InlineExecutor

    fields = {"model": "tiny-llama", "task": f"jsonl:{data}", "methods": ["lora"],
              "lr_grid": [1e-3], "lr_extend": 0, "train": TrainParams(**TINY_TRAIN)}
    cfg = TournamentConfig(**{**fields, **overrides})
    notes = Notes()
    outcome = Tournament(make_plan(cfg, "causal-lm"), out, InlineExecutor(), notes,
                         save_adapters=False).run()
    return outcome, notes.lines


def test_editing_the_data_between_two_tournaments_reruns_and_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_qa(tmp_path / "qa.jsonl", 30)
    first, said = tournament("qa.jsonl", tmp_path / "out")
    assert said == [] and not any(r.reused for r in first.all_records())
    final = first.techniques["lora"].finals[0]
    assert ResultView(final.result).dataset_sizes["train"] == 24
    # the same command again: nothing to do
    again, said = tournament("qa.jsonl", tmp_path / "out")
    assert said == [] and all(r.reused for r in again.all_records())
    # the file cut to 20 rows with changed answers: every result is run again, said once
    write_qa(tmp_path / "qa.jsonl", 20, answer=lambda i: WORDS[-1 - i % len(WORDS)])
    edited, said = tournament("qa.jsonl", tmp_path / "out")
    assert len(said) == 1 and said[0].startswith("data qa.jsonl changed"), said
    assert said[0].endswith(f"running its results in {tmp_path / 'out'} again")
    assert edited.notes == said
    assert not any(r.reused for r in edited.all_records())
    view = ResultView(read_result(edited.techniques["lora"].finals[0].path))
    assert view.dataset_sizes == {"train": 16, "validation": 2, "test": 2}
    assert view.inputs[0].sha256 == inputs.file_sha256(tmp_path / "qa.jsonl")
    # the same bytes written again (a new modification time): still the same inputs
    os.utime(tmp_path / "qa.jsonl", ns=(1, 1))
    touched, said = tournament("qa.jsonl", tmp_path / "out")
    assert said == [] and all(r.reused for r in touched.all_records())


def test_the_tournament_cli_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    from peftbench.cli import main

    monkeypatch.chdir(tmp_path)
    write_qa(tmp_path / "qa.jsonl", 20)
    args = ["peftbench", "tournament", "--model", "tiny-llama", "--task", "jsonl",
            "--data", "qa.jsonl", "--methods", "lora", "--lr-grid", "1e-3", "--lr-extend", "0",
            "--steps", "2", "--no-calibrate", "--no-progress",  # runs in worker processes
            "--out", "out", *[f"--train-opt={k}={json.dumps(v)}" for k, v in TINY_TRAIN.items()
                              if k != "max_steps"]]

    def run() -> str:
        monkeypatch.setattr(sys, "argv", args)
        with pytest.raises(SystemExit) as exc:
            main()
            raise SystemExit(0)
        assert not exc.value.code, capsys.readouterr().err
        return capsys.readouterr().err

    run()
    assert "changed" not in run()
    results = sorted((tmp_path / "out").glob("lora-*.json"))
    before = [read_result(p)["meta_info"]["dataset_info"]["fingerprint"] for p in results]
    write_qa(tmp_path / "qa.jsonl", 20, answer=lambda i: "x")
    notes = [line for line in run().splitlines() if "changed" in line]
    assert len(notes) == 1 and notes[0].startswith("note: data qa.jsonl changed"), notes
    after = [read_result(p)["meta_info"]["dataset_info"]["fingerprint"] for p in results]
    assert len(results) == 2 and all(a != b for a, b in zip(before, after, strict=True))


def test_a_result_from_before_input_records_is_run_again_only_with_user_files(tmp_path):
    spec = ExperimentSpec(model="tiny-llama", task="arith")
    assert record_inputs(spec) == [] and stale_reason(None, spec) is None  # built-in: kept
    data = write_qa(tmp_path / "qa.jsonl", 10)
    user = ExperimentSpec(model="tiny-llama", task=f"jsonl:{data}")
    assert "was not recorded" in stale_reason(None, user)
    assert stale_reason(record_inputs(user), user) is None


def test_built_in_specs_keep_their_hash():
    """Specs name their inputs by path as before: the hashes of existing runs stay valid."""
    assert ExperimentSpec().content_hash() == "fa311db84985b3be"
    spec = ExperimentSpec(model="tiny-llama", task="arith", task_options={"n_test": 8},
                          method="ia3", train=TrainParams(max_steps=4, lr=1e-3, seed=1))
    assert spec.content_hash() == "94a88d2ec268a9a9"


def test_every_user_file_is_an_input(tmp_path):
    data = write_qa(tmp_path / "qa.jsonl", 10)
    test = write_qa(tmp_path / "test.jsonl", 3)
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("paragraph " * 50)
    spec = ExperimentSpec(model="tiny-llama", task="jsonl", general_text=str(wiki),
                          task_options={"data": str(data), "test": str(test), "match": "exact"},
                          train=TrainParams(forgetting_samples=4))
    found = {r.role: r for r in record_inputs(spec)}
    assert set(found) == {"data", "test", "general_text"}
    assert found["test"].field == "task_options.test" and found["test"].path == str(test)
    assert found["general_text"].sha256 == inputs.file_sha256(wiki)
    # the general text is read only by the forgetting probe
    quiet = spec.model_copy(update={"train": TrainParams(forgetting_samples=0)})
    assert {r.role for r in record_inputs(quiet)} == {"data", "test"}
    wiki.write_text("another paragraph " * 50)
    assert stale_reason(record_inputs(quiet), quiet) is None
    assert stale_reason(list(found.values()), spec).startswith(f"general_text {wiki} changed")


def test_model_folder_weights_by_size_and_mtime_with_a_content_check(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\0" * inputs.SHORTCUT_BYTES)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("not part of the model")
    spec = ExperimentSpec(model=str(folder), task="arith")
    recorded = record_inputs(spec)
    assert [r.role for r in recorded] == ["model"]
    assert [f.name for f in recorded[0].files] == ["config.json", "model.safetensors"]
    hashed: list[str] = []
    real = inputs.file_sha256

    def counting(path, stat=None):
        hashed.append(Path(path).name)
        return real(path, stat)

    monkeypatch.setattr(inputs, "_MEMO", {})
    monkeypatch.setattr(inputs, "file_sha256", counting)
    assert stale_reason(recorded, spec) is None
    assert hashed == ["config.json"]  # the weights: same size and mtime, hash kept
    os.utime(weights, ns=(5, 5))  # touched: hashed again, same content
    assert stale_reason(recorded, spec) is None and hashed.count("model.safetensors") == 1
    weights.write_bytes(b"\1" * inputs.SHORTCUT_BYTES)
    assert stale_reason(recorded, spec).startswith(f"model {folder} changed")


def test_an_adapter_config_file_is_part_of_the_spec(tmp_path):
    from peftbench.cli.run import build_spec

    config = tmp_path / "adapter_config.json"

    def spec_with(rank: int) -> ExperimentSpec:
        config.write_text(json.dumps({"peft_type": "LORA", "r": rank}))
        return build_spec(None, None, model="tiny-llama", task="arith", method="lora",
                          adapter_config=config, set_=None, targets=None, data=None,
                          task_opt=None, eval_base=False, general_text=None, train={})

    assert spec_with(4).content_hash() != spec_with(8).content_hash()


# ---------------------------------------------------------------------------- travel


def test_locate_inputs_finds_moved_files_by_content(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_qa(tmp_path / "qa.jsonl", 10)
    spec = ExperimentSpec(model="tiny-llama", task="jsonl:qa.jsonl")
    recorded = record_inputs(spec)
    assert recorded[0].path == str(tmp_path / "qa.jsonl") and recorded[0].given == "qa.jsonl"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recorded absolute path is found from anywhere
    found = inputs.locate_inputs(spec, recorded, "r.json")
    assert found.task == f"jsonl:{tmp_path / 'qa.jsonl'}"
    (tmp_path / "qa.jsonl").rename(elsewhere / "moved.jsonl")
    with pytest.raises(UserError) as err:
        inputs.locate_inputs(spec, recorded, "r.json")
    assert str(err.value) == (f"r.json: the run's data qa.jsonl is missing (it was at "
                              f"{tmp_path / 'qa.jsonl'}); point at it with --data PATH")
    moved = inputs.locate_inputs(spec, recorded, "r.json", {"data": "moved.jsonl"})
    assert moved.task == f"jsonl:{elsewhere / 'moved.jsonl'}"
    write_qa(tmp_path / "qa.jsonl", 9)  # another file where the original was
    with pytest.raises(UserError, match="has changed since the run; point at the original "
                                        "with --data PATH"):
        inputs.locate_inputs(spec, recorded, "r.json")
    with pytest.raises(UserError, match="is not the data the run read"):
        inputs.locate_inputs(spec, recorded, "r.json", {"data": str(tmp_path / "qa.jsonl")})
    with pytest.raises(UserError, match=r"--input model: the run read no such input "
                                        r"\(its inputs: data\)"):
        inputs.locate_inputs(spec, recorded, "r.json", {"model": "x"})


def export_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`peftbench export ARGS` in this process: exit code, stdout, stderr."""
    return peftbench(capsys, "export", *args, "--no-progress")


def test_a_result_exports_from_another_folder_and_names_a_moved_input(tmp_path, monkeypatch,
                                                                      capsys):
    from peftbench.engine.experiment import run_experiment

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    write_qa(project / "qa.jsonl", 12)
    spec = ExperimentSpec(model="tiny-llama", task="jsonl:qa.jsonl", method="lora",
                          train=TrainParams(**{**TINY_TRAIN, "max_steps": 2}))
    result = run_experiment(spec, "runs", progress=False).path.resolve()
    assert ResultView(read_result(result)).inputs[0].path == str(project / "qa.jsonl")
    monkeypatch.chdir(elsewhere)  # the spec says qa.jsonl: not here, but recorded absolutely
    code, out, err = export_cli(capsys, str(result), "--to-lora", "--rank", "4",
                                "--out", "lora")
    assert code == 0, err
    assert (elsewhere / "lora" / "adapter_model.safetensors").is_file()
    # the data moved: one line naming it and the option that points at it, nothing written
    (project / "qa.jsonl").rename(elsewhere / "qa-moved.jsonl")
    code, out, err = export_cli(capsys, str(result), "--to-lora", "--rank", "4",
                                "--out", "again")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "the run's data qa.jsonl is missing" in lines[0] and "--data PATH" in lines[0]
    assert not (elsewhere / "again").exists()
    code, out, err = export_cli(capsys, str(result), "--to-lora", "--rank", "4",
                                "--out", "again", "--data", "qa-moved.jsonl")
    assert code == 0, err
    report = json.loads((elsewhere / "again" / "export_report.json").read_text())
    assert report["score_before"] == report["score_recorded"]  # the same test items
