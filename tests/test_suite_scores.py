"""The GLUE and SuperGLUE scores: mean of task scores, two-metric tasks averaged, computed only
when every task of a suite is present, on the configuration chosen on validation."""

from __future__ import annotations

import pytest

from peftbench.analysis import SUITES, suite_score, suite_scores, suite_tasks, task_scores
from peftbench.engine.results import RunSummary

GLUE_METRICS = {
    "glue:cola": {"matthews_corrcoef": 0.5},
    "glue:sst2": {"accuracy": 0.9},
    "glue:mrpc": {"f1": 0.8, "accuracy": 0.6},  # task score 0.7
    "glue:stsb": {"pearson": 0.9, "spearman": 0.7},  # 0.8
    "glue:qqp": {"f1": 0.7, "accuracy": 0.9},  # 0.8
    "glue:mnli_matched": {"accuracy": 0.8},
    "glue:mnli_mismatched": {"accuracy": 0.6},  # MNLI: 0.7
    "glue:qnli": {"accuracy": 0.9},
    "glue:rte": {"accuracy": 0.6},
    "glue:wnli": {"accuracy": 0.5},
}


def test_glue_score_is_the_mean_of_task_scores_with_two_metric_tasks_averaged():
    scores = task_scores("glue", GLUE_METRICS)
    assert scores["mrpc"] == pytest.approx(0.7) and scores["mnli"] == pytest.approx(0.7)
    expected = (0.5 + 0.9 + 0.7 + 0.8 + 0.8 + 0.7 + 0.9 + 0.6 + 0.5) / 9
    assert suite_score("glue", GLUE_METRICS) == pytest.approx(expected)
    assert len(SUITES["glue"]) == 9 and len(SUITES["superglue"]) == 8
    assert "superglue:axb" not in suite_tasks("superglue")  # diagnostics are not scored


def test_a_missing_task_or_metric_gives_no_score():
    partial = {k: v for k, v in GLUE_METRICS.items() if k != "glue:wnli"}
    assert suite_score("glue", partial) is None
    no_f1 = {**GLUE_METRICS, "glue:mrpc": {"accuracy": 0.6}}
    assert suite_score("glue", no_f1) is None and "mrpc" not in task_scores("glue", no_f1)


def run(task: str, metrics: dict[str, float], method: str = "lora", lr: float = 1e-3,
        seed: int = 0, valid: float = 0.5, status: str = "success") -> RunSummary:
    spec = {"model": "m", "task": task, "method": method, "train": {"lr": lr, "seed": seed}}
    return RunSummary(path=f"{task}-{method}-{lr}-{seed}.json", source="peftbench",
                      experiment_name=f"{method}/{task}", method=method, model="m", task=task,
                      status=status, test_metrics=dict(metrics), valid_curve=[(10, valid)],
                      spec=spec)


def test_suite_scores_per_technique_choose_on_validation_and_average_seeds():
    runs = [run(task, metrics) for task, metrics in GLUE_METRICS.items()]
    # a second seed of CoLA with another figure: the two seeds are averaged (0.5, 0.7 -> 0.6)
    runs.append(run("glue:cola", {"matthews_corrcoef": 0.7}, seed=1))
    # a CoLA configuration better on test but worse on validation is not chosen
    runs.append(run("glue:cola", {"matthews_corrcoef": 1.0}, lr=1e-2, valid=0.1))
    # another technique lacks a task: no score for it; a failed run counts for nothing
    runs += [run(task, metrics, method="ia3") for task, metrics in GLUE_METRICS.items()
             if task != "glue:rte"]
    runs.append(run("glue:rte", {"accuracy": 1.0}, method="ia3", status="failed"))
    found = suite_scores(runs)
    assert [(s.suite, s.technique) for s in found] == [("glue", "lora")]
    score = found[0]
    assert score.tasks["cola"] == pytest.approx(0.6) and score.runs == 11
    expected = (0.6 + 0.9 + 0.7 + 0.8 + 0.8 + 0.7 + 0.9 + 0.6 + 0.5) / 9
    assert score.score == pytest.approx(expected) and score.model == "m"


def test_an_item_interval_is_attached_only_where_the_score_is_the_items_mean():
    from peftbench.analysis import aggregate

    def scored(task: str, score: float, seed: int) -> RunSummary:
        summary = run(task, {"x": score}, seed=seed)
        summary.test_score, summary.test_items = score, [1, 1, 0, 1]
        summary.items_fingerprint = "same"
        return summary

    accuracy, = aggregate([scored("glue:rte", 0.75, 0), scored("glue:rte", 0.75, 1)])
    assert accuracy.test_items and "test_score" in accuracy.bounds
    # a Matthews correlation of 0.3 is not the share of right items (0.75): no item interval
    mcc, = aggregate([scored("glue:cola", 0.3, 0), scored("glue:cola", 0.3, 1)])
    assert mcc.test_items is None and "test_score" not in mcc.bounds
    assert mcc.values["test_score"] == pytest.approx(0.3)


def test_standings_name_the_missing_tasks_and_score_only_complete_suites():
    from peftbench.analysis import missing_tasks, suite_standings

    runs = [run(task, metrics) for task, metrics in GLUE_METRICS.items()]
    # ia3 lacks WNLI and one of MRPC's metrics; a SuperGLUE task alone opens a SuperGLUE entry
    runs += [run(task, metrics, method="ia3") for task, metrics in GLUE_METRICS.items()
             if task not in ("glue:wnli", "glue:mrpc")]
    runs.append(run("glue:mrpc", {"accuracy": 0.6}, method="ia3"))
    runs.append(run("superglue:boolq", {"accuracy": 0.7}, method="ia3"))
    found = {(s.suite, s.technique): s for s in suite_standings(runs)}
    assert set(found) == {("glue", "lora"), ("glue", "ia3"), ("superglue", "ia3")}
    assert found["glue", "lora"].missing == () and found["glue", "lora"].score is not None
    ia3 = found["glue", "ia3"]
    assert ia3.missing == ("mrpc", "wnli") and ia3.score is None
    assert "mrpc" not in ia3.tasks and ia3.tasks["mnli"] == pytest.approx(0.7)
    assert found["superglue", "ia3"].missing == tuple(c for c in SUITES["superglue"]
                                                      if c != "boolq")
    assert missing_tasks("glue", GLUE_METRICS) == []
    # the complete technique's standing agrees with suite_scores
    assert [s.score for s in suite_scores(runs)] == [found["glue", "lora"].score]


def test_the_suite_table_marks_the_best_per_column_and_says_what_is_missing():
    from peftbench.analysis.suite_tables import suite_tables, table_html, table_markdown

    better = {**GLUE_METRICS, "glue:cola": {"matthews_corrcoef": 0.6}}
    runs = [run(task, metrics) for task, metrics in GLUE_METRICS.items()]
    runs += [run(task, metrics, method="ia3") for task, metrics in better.items()]
    runs += [run(task, metrics, method="oft") for task, metrics in GLUE_METRICS.items()
             if task in ("glue:cola", "glue:rte")]
    runs.append(run("superglue:boolq", {"accuracy": 0.7}))  # one SuperGLUE task: no table
    table, = suite_tables(runs)
    assert table.suite == "glue" and table.headers[0] == "technique"
    assert table.headers[1:] == [*SUITES["glue"], "GLUE score"]
    assert [row[0] for row in table.rows] == ["ia3", "lora", "oft"]  # best score first
    cola, mrpc, score = 1, 3, len(table.headers) - 1
    assert table.rows[0][cola] == "0.600" and table.rows[1][mrpc] == "0.800/0.600"
    assert (0, cola) in table.best and (1, cola) not in table.best
    assert {(0, mrpc), (1, mrpc), (2, mrpc)} & table.best == {(0, mrpc), (1, mrpc)}  # a tie
    assert (0, score) in table.best and (1, score) not in table.best
    assert table.rows[2][mrpc] == "—"
    assert table.rows[2][score].startswith("— (missing: sst2, mrpc, stsb")
    assert table.missing["oft"] == [c for c in SUITES["glue"] if c not in ("cola", "rte")]
    markdown = table_markdown(table)
    assert "| ia3 | **0.600** |" in markdown and "mrpc f1/accuracy" in markdown
    assert "<td><b>0.600</b></td>" in table_html(table)
    assert suite_tables([r for r in runs if r.task in ("glue:cola", "superglue:boolq")]) == []
