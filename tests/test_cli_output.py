"""What the verbs print and write: results on stdout, progress on stderr, `--json`, tables that
are never cut off (Markdown when piped), the report folder, the dashboard's port, `tasks`."""

from __future__ import annotations

import io
import json
import socket
import sys
import warnings
from pathlib import Path

import pytest
from cli_helpers import peftbench
from result_fixtures import write_our_results
from rich.console import Console

from peftbench.cli.display import Grid, methods_grid, print_grid

TOURNAMENT = ["tournament", "--model", "tiny-llama", "--task", "arith", "--task-opt", "n_train=16",
              "--task-opt", "n_valid=4", "--task-opt", "n_test=4", "--steps", "2",
              "--lr-grid", "1e-3", "--lr-extend", "0", "--methods", "lora,prompt_tuning",
              "--train-opt", "batch_size=4", "--train-opt", "max_new_tokens=4",
              "--train-opt", "forgetting_samples=0", "--train-opt", "max_seq_length=48",
              "--train-opt", "measure_inference=false", "--executor", "inline",
              "--no-calibrate", "--no-progress", "--no-save-adapters"]



# ------------------------------------------------------------------------------ tables


def test_a_grid_is_markdown_when_piped_and_never_cut_off_on_a_narrow_terminal():
    long = "a_technique_name_much_wider_than_its_column"
    grid = Grid(["technique", "best lr"], [[long, "0.000316"]], title="T", caption="c",
                right={1})
    assert grid.markdown() == ("**T**\n\n| technique | best lr |\n|---|---:|\n"
                               f"| {long} | 0.000316 |\n\nc\n")
    narrow = Console(width=30, force_terminal=True, record=True)
    narrow.print(grid)
    text = narrow.export_text()
    assert "…" not in text and "0.000316" in text
    first_cells = [line.split("│")[1].strip() for line in text.splitlines() if "│" in line]
    assert "".join(first_cells) == long  # folded over lines, whole
    piped = Console(file=io.StringIO(), force_terminal=False)
    print_grid(grid, piped)
    assert piped.file.getvalue() == grid.markdown()


def test_methods_table_names_both_lora_columns_and_fits_80_columns():
    from peftbench.methods.table import catalog_rows

    rows = catalog_rows()
    grid = methods_grid(rows, None, False, description=False)
    assert "exact →LoRA" in grid.headers and "export →LoRA" in grid.headers
    exact, export = grid.headers.index("exact →LoRA"), grid.headers.index("export →LoRA")
    cells = {row[0]: row for row in grid.rows}
    assert cells["oft"][exact] == "" and cells["oft"][export] == "yes"  # SVD export only
    assert cells["lora"][exact] == "yes" and cells["prompt_tuning"][export] == ""
    for width, description in [(80, False), (80, True), (66, False)]:
        wide = methods_grid(rows, None, False, description=description)
        console = Console(width=width, force_terminal=True, record=True)
        assert console.width >= wide.min_width()
        console.print(wide)
        lines = console.export_text().splitlines()
        assert "…" not in "".join(lines) and max(map(len, lines)) <= width
        body = [line for line in lines if line.startswith("│")]
        assert all(line.endswith("│") for line in body)  # no column cut off at the edge
        for name in cells:  # every name whole in the first column, however narrow
            assert name in "".join(line.split("│")[1].strip() for line in body), name
        lrs = "".join(line.split("│")[wide.headers.index("lr") + 1].strip() for line in body)
        assert all(row[-1] in lrs for row in grid.rows)  # the right-hand columns are there
    narrow = Console(width=40, force_terminal=True, file=io.StringIO())
    print_grid(grid, narrow)  # too narrow for a whole table: Markdown, which nothing cuts
    assert narrow.file.getvalue() == grid.markdown()


def test_methods_piped_is_markdown_with_every_technique(capsys):
    from peftbench.methods import method_names

    code, out, _ = peftbench(capsys, "methods")
    assert code == 0 and out.startswith("| technique |")
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert set(rows[1:]) == set(method_names())


def test_methods_on_a_model_shows_a_bar_and_silences_the_libraries(monkeypatch, capsys):
    import logging

    from peftbench.cli.display import methods as display
    from peftbench.engine import counts

    def noisy(model, kind, targets, names):
        warnings.warn("Failed to load the CUDA extension: CUDA_HOME", UserWarning, stacklevel=1)
        print("FRoD hierarchical joint decomposition: 100%", file=sys.stderr)
        print("stray stdout", file=sys.stdout)
        logging.getLogger("peft").warning("Unsupported layer type")
        return {name: 7 for name in names}

    monkeypatch.setattr(counts, "trainable_counts", noisy)
    bars = []
    monkeypatch.setattr(display, "Progress", _recording_progress(display.Progress, bars))
    found = display.count_with_progress("tiny-llama", "causal-lm", None, ["lora", "ia3"])
    captured = capsys.readouterr()
    assert found == {"lora": 7, "ia3": 7}
    assert bars == [2], "one bar over the techniques"
    for noise in ("CUDA_HOME", "FRoD", "stray stdout", "Unsupported layer"):
        assert noise not in captured.err + captured.out


def _recording_progress(progress_cls, totals):
    class Recording(progress_cls):
        def add_task(self, description, total=None, **fields):
            totals.append(total)
            return super().add_task(description, total=total, **fields)

    return Recording


# ------------------------------------------------------------------------------ run, tournament


def test_tournament_prints_the_table_on_stdout_writes_results_md_and_json(tmp_path, capsys):
    out = tmp_path / "t"
    code, stdout, stderr = peftbench(capsys, *TOURNAMENT, "--out", str(out), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert set(summary["techniques"]) == {"lora", "prompt_tuning"}
    lora = summary["techniques"]["lora"]
    assert lora["chosen_lr"] == pytest.approx(1e-3) and lora["seeds"] == 1
    assert lora["metrics"]["test_score"]["value"] is not None
    assert summary["test_items"] == 4 and summary["results_md"] == str(out / "results.md")
    assert "results:" in stderr and "Tournament plan" in stderr  # notes on stderr
    table = (out / "results.md").read_text()
    assert table.startswith("# Tournament results") and "| lora |" in table
    # the same command again resumes (nothing to run) and prints the table, as Markdown
    code, stdout, _ = peftbench(capsys, *TOURNAMENT, "--out", str(out))
    assert code == 0 and stdout == table.replace("# Tournament", "**Tournament", 1).replace(
        "(final runs; rates chosen on validation)\n", "(final runs; rates chosen on "
        "validation)**\n", 1)


def test_run_json_is_a_machine_readable_summary(tmp_path, capsys):
    code, stdout, stderr = peftbench(
        capsys, "run", "--model", "tiny-llama", "--task", "arith", "--task-opt", "n_train=8",
        "--task-opt", "n_valid=2", "--task-opt", "n_test=2", "--steps", "1", "--batch-size",
        "4", "--max-new-tokens", "2", "--no-progress", "--out", str(tmp_path), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    (path,) = tmp_path.glob("*.json")
    assert summary["result"] == str(path) and summary["status"] == "success"
    assert summary["test_metric"] == "accuracy" and summary["error"] is None


# ------------------------------------------------------------------------------ recommend, report


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Path:
    return write_our_results(tmp_path_factory.mktemp("r") / "ours")


def test_recommend_text_on_stdout_unreadable_on_stderr_and_json(ours, capsys):
    code, out, err = peftbench(capsys, "recommend", str(ours), "--max-memory", "4GB")
    assert code == 0 and out.startswith("Recommendation on arith / smollm2-135m")
    assert "unreadable:" in err and "unreadable:" not in out
    code, out, _ = peftbench(capsys, "recommend", str(ours), "--max-memory", "4GB", "--json",
                             "--runners-up", "1")
    (answer,) = json.loads(out)
    assert answer["best"]["technique"] == "lora" and len(answer["runners_up"]) == 1
    assert answer["constraints"] == ["peak_memory <= 4GB"] and answer["optimize"] == "test_score"
    assert {r["technique"] for r in answer["ruled_out"]} >= {"full"}


def test_report_goes_beside_its_input_and_never_mixes_two_inputs(ours, tmp_path, capsys,
                                                                 monkeypatch):
    other = write_our_results(tmp_path / "other", unreadable=False)
    code, out, err = peftbench(capsys, "report", str(other))
    folder = tmp_path / "other-report"
    assert code == 0, err
    written = {str(p) for p in folder.iterdir() if not p.name.startswith(".")}
    assert set(out.splitlines()) == written and str(folder / "report.html") in written
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, out, err = peftbench(capsys, "report", str(ours), "--out", str(folder))
    assert code == 2 and "would mix their charts" in err and str(other) in err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    code, _, _ = peftbench(capsys, "report", str(other))  # the same inputs again: replaced
    assert code == 0
    code, _, err = peftbench(capsys, "report", str(ours), "--out", str(folder), "--overwrite")
    assert code == 0, err


def test_app_on_a_busy_port_names_the_option(ours, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = peftbench(capsys, "app", str(ours), "--port", str(port))
    assert code == 2
    assert err.strip() == (f"error: --port {port}: already in use on 127.0.0.1; pick another "
                           "with --port N, or --port 0 for any free one")


# ------------------------------------------------------------------------------ tasks


def test_tasks_lists_every_task_with_its_options_and_real_defaults(capsys):
    from peftbench.tasks import get_task, task_names
    from peftbench.tasks.options import TaskOptions

    code, out, _ = peftbench(capsys, "tasks", "--json")
    described = json.loads(out)
    assert code == 0 and set(described) == set(task_names())
    for name, doc in described.items():
        assert doc["summary"] and doc["metric"], name
        TaskOptions.observed = seen = []
        try:
            get_task(f"{name}:data.{name}" if doc["argument"] else name)
        except Exception:  # a task may stop at its data; its options were all read first
            pass
        finally:
            TaskOptions.observed = None
        read = {option: default for _, option, default in seen}
        documented = {o["name"]: o["default"] for o in doc["options"]}
        assert documented == read, name
    code, out, _ = peftbench(capsys, "tasks", "jsonl")
    assert "| response_field | response |" in out and "--task jsonl:FILE" in out


def test_census_says_once_that_the_hub_is_unreachable(monkeypatch, capsys, tmp_path):
    from peftbench.tasks import hub

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "hub_problem", lambda: "the Hugging Face hub (h) is unreachable")
    code, out, err = peftbench(capsys, "census", "--limit", "5")
    assert code == 2 and not out and not list(tmp_path.iterdir())
    assert err.splitlines() == ["error: --cards librarian-bots/model_cards_with_metadata: the "
                                "Hugging Face hub (h) is unreachable; pass a local Parquet or "
                                "JSONL copy"]
