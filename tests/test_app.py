"""The dashboard's logic (no browser): views, filters, recommendation, run comparison."""

from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
import pytest
from result_fixtures import fake_capabilities, suite_memory_accuracy_frontier, write_our_results

from peftbench import analysis as an
from peftbench import methods
from peftbench.analysis import app as app_module
from peftbench.analysis.app import Dashboard, _safe, build_app
from peftbench.analysis.pareto import TIE_TOLERANCE
from peftbench.errors import UserError

SUITE_GROUP = "MetaMathQA / meta-llama/Llama-3.2-3B"
OUR_GROUP = "arith / smollm2-135m"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, peft_reference: Path) -> Dashboard:
    ours = write_our_results(tmp_path_factory.mktemp("ours"))
    return Dashboard(an.load_results([ours, peft_reference / "MetaMathQA" / "results"]))


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(methods, "capabilities", fake_capabilities, raising=False)


def _frontier_labels(status: str) -> set[str]:
    line = next(x for x in status.split("\n\n") if x.startswith("**Frontier**"))
    return {name.strip() for name in line.split(": ", 1)[1].split(", ")}


def test_groups_cover_both_sources(board: Dashboard) -> None:
    assert board.groups == [SUITE_GROUP, OUR_GROUP]
    assert board.default_group() == SUITE_GROUP


def test_suite_view_shows_the_independent_frontier(board: Dashboard,
                                                   peft_reference: Path) -> None:
    fig, table, status = board.view(SUITE_GROUP, "peak_memory", "test_score")
    expected = suite_memory_accuracy_frontier(peft_reference / "MetaMathQA" / "results",
                                              memory_tie=TIE_TOLERANCE["peak_memory"])
    assert _frontier_labels(status) == expected
    assert set(table.loc[table["frontier"] == "frontier", "configuration"]) == expected
    frontier_trace = next(t for t in fig.data if t.name == "Pareto frontier")
    assert len(frontier_trace.x) == len(expected)
    assert fig.layout.xaxis.title.text == "peak memory ↓"
    assert fig.layout.yaxis.title.text == "test score ↑"


def test_our_view_marks_noise_and_lists_failures(board: Dashboard) -> None:
    _, table, status = board.view(OUR_GROUP, "peak_memory", "test_score")
    assert "**Within noise of the frontier**: full lr=1e-05" in status
    assert "vera" in status and "CUDA out of memory" in status
    assert "truncated--0000.json" in status
    assert table.loc[table["configuration"] == "lora lr=0.001", "seeds"].item() == 3


def test_changing_the_metric_pair_changes_plot_and_table(board: Dashboard) -> None:
    fig, table, _ = board.view(SUITE_GROUP, "file_size", "train_time")
    assert fig.layout.yaxis.title.text == "train time ↓"
    assert list(table.columns)[4:6] == ["checkpoint size", "train time"]
    fig, _, _ = board.view(SUITE_GROUP, "train_time", "test_score:min")
    assert fig.layout.yaxis.title.text == "test score ↓"


def test_capability_filters(board: Dashboard, catalog: None) -> None:
    _, table, status = board.view(OUR_GROUP, "peak_memory", "test_score", "config",
                                  ["mergeable", "quantized base"])
    assert set(table["technique"]) == {"lora", "ia3"}
    assert "Filtered out" in status
    _, table, _ = board.view(OUR_GROUP, "peak_memory", "test_score", "technique",
                             ["Conv layers"], "train_time < 100s")
    assert set(table["technique"]) == {"ia3"}


@pytest.mark.parametrize("attempt", [
    "__import__('os').system('touch /tmp/peftbench-pwned')",
    "test_score > 0 or open('/tmp/peftbench-pwned', 'w')",
    "${7*7}", "{{7*7}}", "<script>alert(1)</script>", "'; DROP TABLE runs; --",
])
def test_free_text_filter_never_runs_code(board: Dashboard, attempt: str) -> None:
    marker = Path("/tmp/peftbench-pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(UserError, match="cannot parse filter"):
        board.view(OUR_GROUP, "peak_memory", "test_score", "config", [], attempt)
    safe_view = _safe(board.view, "empty-plot", "empty-table")
    out = safe_view(OUR_GROUP, "peak_memory", "test_score", "config", [], attempt)
    assert out[:2] == ("empty-plot", "empty-table") and out[2].startswith("⚠ cannot parse")
    assert not marker.exists()


def test_view_user_errors(board: Dashboard) -> None:
    with pytest.raises(UserError, match="two different metrics"):
        board.view(OUR_GROUP, "test_score", "accuracy")
    with pytest.raises(UserError, match="unknown metric"):
        board.view(OUR_GROUP, "vibes", "test_score")
    with pytest.raises(UserError, match="unknown task/model"):
        board.view("nope / nope", "peak_memory", "test_score")


def test_recommendation_markdown(board: Dashboard, catalog: None) -> None:
    text = board.recommendation(OUR_GROUP, "test_score", "4GB", ["mergeable", "quantized base"])
    assert "Best: lora (lora lr=0.001)" in text
    assert "runner-up: ia3" in text
    assert "ruled out prefix_tuning: lacks merge" in text
    with pytest.raises(UserError, match="bad value"):
        board.recommendation(OUR_GROUP, "test_score", "a lot", [])


def test_compare_two_runs_side_by_side(board: Dashboard) -> None:
    choices = board.run_choices(OUR_GROUP)
    first = next(c for c in choices if c.startswith("lora--") and "seed=0" in c
                 and "lr0.001" in c)
    second = next(c for c in choices if c.startswith("ia3--") and "seed=0" in c)
    diff = board.compare(OUR_GROUP, first, second)
    assert isinstance(diff, pd.DataFrame)
    differing = set(diff.loc[diff["differs"], "field"])
    assert {"method", "spec.method", "spec.train.lr"} <= differing
    assert "spec.train.seed" not in differing
    assert diff["differs"].iloc[0]  # differing fields first
    with pytest.raises(UserError):
        board.compare(OUR_GROUP, first, "not a run")


def test_build_app_and_local_binding_by_default(board: Dashboard) -> None:
    demo = build_app(board.results)
    assert demo.title == "peftbench"
    assert inspect.signature(app_module.serve).parameters["host"].default == "127.0.0.1"
    from peftbench.cli import dashboard

    assert inspect.signature(dashboard.app_).parameters["host"].default == "127.0.0.1"


def test_a_suite_tab_shows_the_per_task_table(tmp_path: Path) -> None:
    from result_fixtures import write_glue_results

    glue = Dashboard(an.load_results([write_glue_results(tmp_path / "glue")]))
    shown = glue.suites_markdown()
    assert shown.startswith("### GLUE / smollm2-135m") and "| lora |" in shown
    assert "**0.800/0.800**" in shown and "— (missing: cola" in shown
    assert "Suites" in {t.label for t in build_app(glue.results).blocks.values()
                        if type(t).__name__ == "Tab"}


def test_no_suite_tab_without_suite_results(board: Dashboard) -> None:
    assert board.suites_markdown() == ""
