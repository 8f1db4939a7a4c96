"""`peftbench run` from the command line: user mistakes are one line and exit code 2, the
result path is all that goes to stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAST = ["--steps", "2", "--batch-size", "2", "--eval-batch-size", "4", "--max-new-tokens", "4",
        "--task-opt", "n_train=16", "--task-opt", "n_valid=4", "--task-opt", "n_test=4",
        "--no-progress", "--no-eval-base"]


def peftbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "peftbench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def in_process(*args: str, capsys) -> tuple[int, str, str]:
    """`peftbench ARGS` in this process (the same `main` as the command): code, out, err."""
    from peftbench.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(code: int, err: str, needle: str) -> None:
    """Exit 2 and one `error:` line on stderr holding ``needle``, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "tiny-llama", "--task", "nope"], "unknown task 'nope'"),
        (["--model", "tiny-llama", "--method", "nope"], "unknown method 'nope'"),
        (["--model", "tiny-llama", "--set", "r"], "not of the form key=value"),
        (["--model", "tiny-llama", "--set", "no_such_field=1"], "lora config field"),
        (["--model", "tiny-llama", "--steps", "0"], "'--steps'"),
        (["--model", "tiny-llama", "--set", "r=-4"], "`r` should be a positive integer"),
        (["--model", "tiny-bert", "--task", "arith"], "encoder"),
    ],
)
def test_user_mistakes_exit_2_with_one_line_and_no_file(tmp_path, monkeypatch, capsys, args,
                                                        needle):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code, _, err = in_process("run", *FAST, *args, "--out", str(out), capsys=capsys)
    assert_one_line(code, err, needle)
    assert not out.exists() or not any(out.rglob("*.json"))


def test_a_folder_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = in_process("run", "--model", str(tmp_path / "empty"), *FAST, capsys=capsys)
    assert_one_line(code, err, "not a model folder")


def test_malformed_user_data_names_file_and_line(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    good = json.dumps({"prompt": "2+2=", "response": "4"}) + "\n"
    data.write_text(good * 6 + "{not json\n" + good * 6)
    code, _, err = in_process("run", "--model", "tiny-llama", "--task", f"jsonl:{data}",
                              *FAST[:8], "--no-progress", capsys=capsys)
    assert_one_line(code, err, "line 7")


def test_successful_run_exits_0_and_prints_only_the_result_path_on_stdout(tmp_path):
    out = tmp_path / "out"
    proc = peftbench("run", "--model", "tiny-llama", "--task", "arith", *FAST,
                     "--task-opt", "difficulty=1", "--method", "LoRA", "--out", str(out),
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = list(out.glob("*.json"))
    assert len(files) == 1 and proc.stdout == f"{files[0]}\n"  # $(peftbench run …) is the path
    assert files[0].name.startswith("lora--tiny-llama--arith--")  # --method LoRA normalised
    assert "done:" in proc.stderr
    data = json.loads(files[0].read_text())
    assert data["run_info"]["peftbench"]["spec"]["task_options"]["difficulty"] == 1
    assert data["run_info"]["peftbench"]["spec"]["method"] == "lora"


def test_failed_run_exits_1_and_keeps_the_failed_result(tmp_path):
    out = tmp_path / "out"
    # a learning rate this large overflows the loss to NaN/inf within a few steps
    proc = peftbench("run", "--model", "tiny-llama", *FAST, "--steps", "4",
                     "--lr", "1e30", "--dtype", "float32", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    (file,) = out.glob("*.json")
    data = json.loads(file.read_text())
    assert data["train_info"]["status"] == "failed"
    assert "run failed" in proc.stderr and proc.stdout == f"{file}\n"


def test_peft_suite_experiment_folder_is_a_valid_input(tmp_path, peft_reference):
    folder = peft_reference / "MetaMathQA" / "experiments" / "lora" / "llama-3.2-3B-rank32"
    out = tmp_path / "out"
    proc = peftbench("run", str(folder), "--model", "tiny-llama", *FAST, "--out", str(out),
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (file,) = out.glob("*.json")
    data = json.loads(file.read_text())
    config = json.loads((folder / "adapter_config.json").read_text())
    assert data["run_info"]["peft_config"]["r"] == config["r"]
    # the suite leaves target_modules to PEFT's per-architecture default (q_proj, v_proj for Llama)
    expected = set(config["target_modules"] or ["q_proj", "v_proj"])
    assert set(data["run_info"]["peft_config"]["target_modules"]) == expected


def test_inputs_are_checked_before_any_download_or_model(tmp_path, monkeypatch, capsys):
    """A bad adapter config stops before the hub is tried (offline that took ~25 s of retries)
    or a model is loaded; a value only a model can refuse stops before the hub is tried."""
    import datasets

    from peftbench.engine import models
    from peftbench.tasks import general_text, hub

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was tried before the inputs were checked")

    loads = []
    real_load = models.load_model
    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.setattr(general_text, "load_hub_rows", no_hub)
    monkeypatch.setattr(hub, "hub_problem", no_hub)
    monkeypatch.setattr(models, "load_model", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    bad = tmp_path / "bad.json"
    for config, needle in [({"r": "eight"}, "invalid lora config: r='eight' is not int"),
                           ({"rank": 8}, "unknown lora config field 'rank'"),
                           ({"peft_type": "LORA", "lora_dropout": "x"}, "lora_dropout='x'")]:
        bad.write_text(json.dumps(config))
        code, _, err = in_process("run", "--model", "tiny-llama", "--task", "arith",
                                  "--adapter-config", str(bad), "--out", str(tmp_path / "o"),
                                  capsys=capsys)
        assert_one_line(code, err, needle)
        assert loads == []  # refused from the config alone
    code, _, err = in_process("run", "--model", "tiny-llama", "--set", "r=-4", "--out",
                              str(tmp_path / "o"), capsys=capsys)
    assert_one_line(code, err, "`r` should be a positive integer")
    assert not (tmp_path / "o").exists()


def test_an_unreachable_hub_is_one_line_and_the_run_completes(tmp_path, monkeypatch, capsys):
    import socket

    from peftbench.tasks import hub

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)

    def unreachable(address, timeout):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    hub.hub_problem.cache_clear()
    try:
        code, out, err = in_process("run", "--model", "tiny-llama", *FAST, "--out",
                                    str(tmp_path), capsys=capsys)
    finally:
        hub.hub_problem.cache_clear()
    assert code == 0, err
    (result,) = tmp_path.glob("*.json")
    assert out == f"{result}\n"
    said = [line for line in err.splitlines() if "unreachable" in line]
    assert len(said) == 1 and "Retrying" not in err and "forgetting not measured" in said[0]
