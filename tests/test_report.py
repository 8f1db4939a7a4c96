"""`peftbench report` and the analysis verbs of the CLI."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from result_fixtures import (
    fake_capabilities,
    our_result,
    suite_memory_accuracy_frontier,
    write_glue_results,
    write_our_results,
)
from typer.testing import CliRunner

from peftbench import methods
from peftbench.analysis.pareto import TIE_TOLERANCE
from peftbench.analysis.report import write_report
from peftbench.cli import app, main
from peftbench.engine.results import atomic_write_json
from peftbench.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def suite_report(tmp_path_factory: pytest.TempPathFactory, peft_reference: Path) -> Path:
    out = tmp_path_factory.mktemp("suite-report")
    write_report([peft_reference / "MetaMathQA" / "results"], out)
    return out


def _frontier_line(markdown: str, section: str) -> set[str]:
    part = markdown.split(f"## {section}", 1)[1]
    line = re.search(r"Pareto frontier of .*?: (.*)\n", part).group(1)
    return {name.strip() for name in line.split(", ")}


def test_metamathqa_report_shows_the_independent_frontier(suite_report: Path,
                                                          peft_reference: Path) -> None:
    expected = suite_memory_accuracy_frontier(peft_reference / "MetaMathQA" / "results",
                                              memory_tie=TIE_TOLERANCE["peak_memory"])
    md = (suite_report / "report.md").read_text()
    assert _frontier_line(md, "MetaMathQA / meta-llama/Llama-3.2-3B") == expected
    page = (suite_report / "report.html").read_text()
    for name in expected:
        assert name in page
    assert "test score ↑ vs peak memory ↓" in page


def test_html_is_self_contained(suite_report: Path) -> None:
    page = (suite_report / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", page), "external script"
    assert not re.search(r"<link[^>]+href=\"?https?:", page), "external stylesheet"
    assert page.count("Plotly.newPlot") == 3  # Pareto, bars, curves
    assert len(page) > 3_000_000  # plotly.js itself is inlined


def test_png_charts_are_written(suite_report: Path) -> None:
    pngs = sorted(p.name for p in suite_report.glob("*.png"))
    assert pngs == ["bars-metamathqa-meta-llama-llama-3-2-3b.png",
                    "pareto-metamathqa-meta-llama-llama-3-2-3b.png"]
    for name in pngs:
        data = (suite_report / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert not list(suite_report.glob(".*.tmp"))


def test_report_on_a_mix_of_ours_and_the_suite(tmp_path: Path, peft_reference: Path) -> None:
    ours = write_our_results(tmp_path / "ours")
    out = tmp_path / "out"
    write_report([ours, peft_reference / "MetaMathQA" / "results"], out)
    md = (out / "report.md").read_text()
    assert "## arith / smollm2-135m" in md and "## MetaMathQA / meta-llama/Llama-3.2-3B" in md
    assert _frontier_line(md, "arith / smollm2-135m") >= {"lora lr=0.001", "ia3 lr=0.005"}
    assert "within noise" in md  # loha
    assert "### Failed runs" in md and "CUDA out of memory" in md
    assert "truncated--0000.json" in md  # unreadable file listed, not dropped
    assert "0.600 ± 0.025" in md  # mean ± 95% CI over three seeds
    assert len(list(out.glob("*.png"))) == 4


def test_report_technique_level_and_filter(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(methods, "capabilities", fake_capabilities, raising=False)
    ours = write_our_results(tmp_path / "ours")
    out = tmp_path / "out"
    write_report([ours], out, x="train_time", y="test_score", level="technique",
                 where="merge")
    md = (out / "report.md").read_text()
    assert "lora lr=0.0001" not in md  # technique level keeps the best configuration
    assert "prefix_tuning" not in md and "| full " not in md  # no merge / unknown
    assert "test score ↑ vs train time ↓" in md


@pytest.mark.parametrize("kwargs, message", [
    ({"x": "speed"}, "unknown metric"),
    ({"x": "test_score", "y": "accuracy"}, "two different metrics"),
    ({"where": "__import__('os')"}, "cannot parse filter"),
    ({"level": "everything"}, "aggregation level"),
    ({"task": "nope"}, "no runs for task=nope"),
])
def test_report_user_errors_leave_no_files(tmp_path: Path, kwargs: dict, message: str) -> None:
    ours = write_our_results(tmp_path / "ours")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message):
        write_report([ours], out, **kwargs)
    assert not out.exists() or not any(out.iterdir())


def test_labels_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    data = our_result("lora", 1e-3, 0, 0.5, 2.0)
    evil = "</script><script>alert(1)</script>"
    data["run_info"]["peftbench"]["method"] = f"lora{evil}"
    atomic_write_json(tmp_path / "r" / "evil.json", data)
    out = tmp_path / "out"
    write_report([tmp_path / "r"], out)
    page = (out / "report.html").read_text()
    assert "<script>alert(1)" not in page


def test_cli_recommend_and_report(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(methods, "capabilities", fake_capabilities, raising=False)
    ours = write_our_results(tmp_path / "ours")
    runner = CliRunner()
    result = runner.invoke(app, ["recommend", str(ours), "--max-memory", "4GB",
                                 "--must", "merge,quantized"])
    assert result.exit_code == 0, result.output
    assert "Best: lora (lora lr=0.001)" in result.output
    assert "runner-up: ia3" in result.output
    assert "ruled out prefix_tuning: lacks merge" in result.output
    assert "failed runs, not considered: vera" in result.output
    assert "unreadable:" in result.output
    result = runner.invoke(app, ["report", str(ours), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rep" / "report.html").exists()


def test_cli_user_error_is_one_line_exit_2(tmp_path: Path, monkeypatch, capsys) -> None:
    ours = write_our_results(tmp_path / "ours", unreadable=False)
    monkeypatch.setattr(sys, "argv", ["peftbench", "recommend", str(ours),
                                      "--max-memory", "plenty"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: Invalid value for '--max-memory': bad value 'plenty' for peak_memory: expected "
        "a number and a unit (see `peftbench recommend -h`)"]
    assert "Traceback" not in err


def test_report_json_is_never_modified(tmp_path: Path) -> None:
    ours = write_our_results(tmp_path / "ours", unreadable=False)
    before = {p: p.read_bytes() for p in ours.iterdir()}
    write_report([ours], tmp_path / "out")
    assert {p: p.read_bytes() for p in ours.iterdir()} == before
    assert json.loads(next(iter(before.values())))["run_info"]


def test_report_on_a_suite_shows_the_per_task_table_and_the_suite_score(tmp_path):
    out = tmp_path / "report"
    write_report([write_glue_results(tmp_path / "glue")], out)
    markdown = (out / "report.md").read_text()
    table = markdown.split("## GLUE / smollm2-135m: per task", 1)[1].split("\n## ", 1)[0]
    assert "| technique | cola | sst2 | mrpc | stsb | qqp | mnli | qnli | rte | wnli | GLUE " \
           "score |" in table
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    assert lines["| lora"].endswith("| **0.700** |")  # the only complete technique
    assert "| **0.800/0.800** |" in lines["| ia3"] and "| 0.700/0.700 |" in lines["| lora"]
    assert "— (missing: cola, sst2, stsb, qqp, mnli, qnli, wnli)" in lines["| ia3"]
    assert "No GLUE score for ia3: it lacks cola, sst2, stsb" in table
    assert "## glue:mrpc / smollm2-135m" in markdown  # the per-task sections stay
    html = (out / "report.html").read_text()
    assert "GLUE / smollm2-135m: per task" in html and "<td><b>0.800/0.800</b></td>" in html
    # one task of a suite alone: no suite table
    write_report([tmp_path / "glue" / "mrpc"], tmp_path / "one")
    assert "per task" not in (tmp_path / "one" / "report.md").read_text()
