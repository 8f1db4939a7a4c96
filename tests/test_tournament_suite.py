"""A suite tournament (``--task glue:all``): one tournament per task in OUT/NAME, the plan and
estimate of every task up front, a task that fails recorded while the others go on, resume per
task, ``suite.json`` with the per-task metrics, and users' mistakes as one line.

The suite is cut to three GLUE tasks here (the loop is the same for ten); a tiny encoder runs
them in-process."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import peftbench
from glue_fixtures import write_jsonl, write_task

from peftbench.tournament import FolderLock
from peftbench.tournament import suite as suite_module

TASKS = ["glue:mrpc", "glue:rte", "glue:cola"]

TOURNAMENT = ["tournament", "--model", "tiny-bert", "--task", "glue:all", "--steps", "2",
              "--lr-grid", "1e-3", "--lr-extend", "0", "--methods", "lora,ia3",
              "--task-opt", "n_valid=4", "--train-opt", "batch_size=4",
              "--train-opt", "max_seq_length=48", "--train-opt", "measure_inference=false",
              "--executor", "inline", "--no-progress", "--no-save-adapters"]


@pytest.fixture()
def three_tasks(monkeypatch):
    """GLUE cut to MRPC, RTE and CoLA."""
    monkeypatch.setattr(suite_module, "suite_task_names", lambda suite: list(TASKS))


def glue_root(tmp_path):
    """A data root: MRPC and RTE as fixtures, CoLA with a bad row (every run of it fails)."""
    root = tmp_path / "glue"
    for task in ("glue:mrpc", "glue:rte"):
        write_task(root / task.partition(":")[2], task, n_train=16, n_test=6)
    cola = write_task(root / "cola", "glue:cola", n_train=16, n_test=6)
    rows = [json.loads(line) for line in (cola / "train.jsonl").read_text().splitlines()]
    rows[3]["label"] = 7
    write_jsonl(cola / "train.jsonl", rows)
    return root


def files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}


def test_a_suite_runs_each_task_in_its_folder_and_a_failed_task_does_not_stop_the_others(
        tmp_path, capsys, three_tasks):
    root, out = glue_root(tmp_path), tmp_path / "out"
    args = [*TOURNAMENT, "--data", str(root), "--out", str(out)]
    # the plan of every task, with its estimate; CoLA's calibration fails on its bad row
    code, stdout, stderr = peftbench(capsys, *args, "--dry-run")
    assert code == 0, stderr
    assert "glue:all (3 tasks" in stdout and "3 tasks, 6 search runs, 6 final runs" in stdout
    mrpc_line = next(line for line in stdout.splitlines() if "glue:mrpc:" in line)
    assert "estimated" in mrpc_line and str(out / "mrpc") in mrpc_line
    cola_line = next(line for line in stdout.splitlines() if "glue:cola:" in line)
    assert "not calibrated" in cola_line and "line 4" in cola_line
    assert "(2 of 3 tasks calibrated)" in stdout
    assert not (out / "suite.json").exists() and not list(out.glob("*/tournament.json"))

    # another tournament holds RTE's folder: that task fails, the others run
    (out / "rte").mkdir(parents=True, exist_ok=True)
    with FolderLock(out / "rte"):
        code, stdout, stderr = peftbench(capsys, *args, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary == json.loads((out / "suite.json").read_text()) | {
        "folder": str(out), "summary": str(out / "suite.json")}
    tasks = summary["tasks"]
    assert tasks["glue:mrpc"]["status"] == "done" and tasks["glue:mrpc"]["folder"] == "mrpc"
    assert tasks["glue:rte"]["status"] == "failed"
    assert "another tournament is running" in tasks["glue:rte"]["error"]
    assert tasks["glue:cola"]["status"] == "failed" and tasks["glue:cola"]["failed_runs"] == 2
    assert "every search run failed" in tasks["glue:cola"]["error"]
    lora = summary["techniques"]["lora"]
    assert set(lora["metrics"]) == {"glue:mrpc"} and set(lora["metrics"]["glue:mrpc"]) == {
        "f1", "accuracy"}
    assert lora["score"] is None and "rte" in lora["missing"] and "cola" in lora["missing"]
    for name in ("mrpc", "cola"):  # each task is a tournament of its own
        manifest = json.loads((out / name / "tournament.json").read_text())
        assert manifest["config"]["task"] == f"glue:{name}"
        assert manifest["config"]["task_options"]["data"] == str(root / name)
        assert set(manifest["techniques"]) == {"lora", "ia3"}
        assert (out / name / "results.md").exists()
    assert (out / "results.md").read_text().startswith("# Suite results: GLUE / tiny-bert")
    assert "failed tasks: glue:rte, glue:cola" in stderr

    # the same command resumes: finished runs (and CoLA's failures) are kept, RTE now runs
    before = {name: files(out / name) for name in ("mrpc", "cola")}
    code, stdout, stderr = peftbench(capsys, *args)
    assert code == 0, stderr
    assert {name: files(out / name) for name in ("mrpc", "cola")} == {
        name: {**before[name], "tournament.json": files(out / name)["tournament.json"]}
        for name in ("mrpc", "cola")}
    summary = json.loads((out / "suite.json").read_text())
    assert summary["tasks"]["glue:rte"]["status"] == "done"
    assert set(summary["techniques"]["ia3"]["metrics"]) == {"glue:mrpc", "glue:rte"}
    assert summary["techniques"]["ia3"]["missing"] == [
        t for t in ("cola", "sst2", "stsb", "qqp", "mnli", "qnli", "wnli")]
    assert "| technique | cola | sst2 | mrpc |" in stdout and "— (missing: cola," in stdout


def test_a_suite_in_a_locked_folder_is_refused(tmp_path, capsys, three_tasks):
    root, out = glue_root(tmp_path), tmp_path / "out"
    out.mkdir()
    with FolderLock(out):
        code, _, stderr = peftbench(capsys, *TOURNAMENT, "--data", str(root), "--out", str(out),
                                    "--no-calibrate")
    assert code == 2 and "another tournament is running" in stderr
    assert sorted(os.listdir(out)) == [".tournament.lock"]


@pytest.mark.parametrize(("args", "needles"), [
    (["--task", "gsm8k:all"], ["gsm8k is not a suite", "glue:all, superglue:all"]),
    (["--task", "glue:all", "--memory-only"], ["--memory-only", "e.g. --task glue:cola"]),
    (["--task", "superglue:all", "--model", "config:llama-3.2-1b"], ["--task superglue:boolq"]),
    (["--task", "glue:all", "--data", "DATA/missing"], ["no folder for", "mrpc", "cola"]),
    (["--task", "glue:all", "--data", "DATA/file.jsonl"], ["a folder holding one folder per "
                                                            "task (mrpc, rte, cola)"]),
])
def test_a_suite_mistake_is_one_line_and_writes_nothing(args, needles, tmp_path, capsys,
                                                        monkeypatch):
    if "--data" in args:
        monkeypatch.setattr(suite_module, "suite_task_names", lambda suite: list(TASKS))
    data = tmp_path / "data"
    write_task(data / "missing" / "rte", "glue:rte")
    (data / "file.jsonl").write_text("{}\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [a.replace("DATA", str(data)) for a in args]
    code, stdout, stderr = peftbench(capsys, "tournament", "--model", "tiny-bert", *args,
                                     "--out", "out", "--no-calibrate", "--dry-run")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and not stdout.strip() and len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert os.listdir(work) == []


def test_suite_names_and_data_folders():
    assert suite_module.suite_of("glue:all") == "glue"
    assert suite_module.suite_of("superglue:all") == "superglue"
    assert suite_module.suite_of("glue:cola") is None
    assert suite_module.suite_of("jsonl:all") is None  # a data file called "all"
    # the tasks run are those the score needs: SuperGLUE's diagnostics are not among them
    names = suite_module.suite_task_names("superglue")
    assert "superglue:boolq" in names and not {"superglue:axb", "superglue:axg"} & set(names)
    assert len(suite_module.suite_task_names("glue")) == 10  # MNLI counts twice
    assert suite_module.DATA_FOLDERS["glue:mnli_mismatched"] == "mnli"
