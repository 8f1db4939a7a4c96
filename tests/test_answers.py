"""Answers you can inspect, and no confident nonsense: each test item's answer is saved beside
the result, the report and the app show a few wrong ones, and when the test split is tiny or
every technique scores the same, the tournament and `recommend` say so instead of naming a
best."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from peftbench.engine.answers import answers_path, read_answers
from peftbench.engine.experiment import run_experiment
from peftbench.engine.record import ResultView
from peftbench.engine.results import read_result
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.tournament import Tournament, TournamentConfig, make_plan

TINY_TRAIN = {"max_steps": 2, "batch_size": 8, "eval_every": 2, "max_new_tokens": 4,
              "forgetting_samples": 0, "eval_batch_size": 16, "max_seq_length": 48,
              "measure_inference": False}
#: answers a tiny random model never produces: every technique scores 0.000
ANSWERS = ("xylophone", "quartz", "zephyr", "jukebox")


def write_qa(path: Path, rows: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"Question {i}:", "response":
                                        ANSWERS[i % len(ANSWERS)]}) + "\n"
                            for i in range(rows)))
    return path


@pytest.fixture(scope="module")
def zero_tournament(tmp_path_factory):
    """A tiny tournament of two techniques on 20 rows (2 test items), all scoring 0.000."""
    from peftbench.tournament.executors import InlineExecutor

    folder = tmp_path_factory.mktemp("zero")
    data = write_qa(folder / "qa.jsonl", 20)
    cfg = TournamentConfig(model="tiny-llama", task=f"jsonl:{data}", methods=["lora", "ia3"],
                           lr_points=1, lr_extend=0, train=TrainParams(**TINY_TRAIN))
    outcome = Tournament(make_plan(cfg, "causal-lm"), folder / "out", InlineExecutor(),
                         save_adapters=False).run()
    for tech in outcome.techniques.values():
        assert tech.finals and tech.finals[0].status == "success"
        assert tech.finals[0].view.test_score == 0.0
    return outcome


def test_each_test_answer_is_saved_beside_the_result(zero_tournament):
    final = zero_tournament.techniques["lora"].finals[0]
    data = read_result(final.path)
    path = answers_path(final.path)
    assert path.name == final.path.stem + ".answers.jsonl" and path.is_file()
    assert ResultView(data).answers_file == path.name == data["train_info"]["test_answers"]
    answers = read_answers(path)
    assert [a.index for a in answers] == [0, 1]
    assert [int(a.correct) for a in answers] == data["train_info"]["test_items"]
    for answer in answers:
        assert answer.prompt.startswith("Question ") and answer.reference in ANSWERS
        assert answer.output and not answer.correct
    # tuning runs never score test: no answers
    search = zero_tournament.techniques["lora"].search[0]
    assert ResultView(read_result(search.path)).answers_file is None
    assert not answers_path(search.path).exists()


def test_a_classifier_head_saves_its_predicted_labels(tmp_path):
    rows = [{"text": f"sample {i} " + ("good" if i % 2 else "bad"), "label": ["neg", "pos"][i % 2]}
            for i in range(20)]
    data = tmp_path / "cls.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = ExperimentSpec(model="tiny-bert", task=f"jsonl:{data}", method="lora",
                          train=TrainParams(**TINY_TRAIN))
    outcome = run_experiment(spec, tmp_path / "out", progress=False, save_adapter=False)
    assert outcome.ok, outcome.error
    answers = read_answers(answers_path(outcome.path))
    assert len(answers) == 2 and {a.reference for a in answers} <= {"neg", "pos"}
    for answer in answers:
        assert answer.output in {"neg", "pos"} and answer.answer == answer.output
        assert answer.correct == (answer.output == answer.reference)
        assert answer.prompt.startswith("sample ")
    assert [int(a.correct) for a in answers] == outcome.result["train_info"]["test_items"]


def test_the_report_shows_wrong_answers_and_says_what_the_scores_cannot_tell(
        zero_tournament, tmp_path):
    from peftbench.analysis.report import write_report

    write_report([zero_tournament.out_dir], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "**Note:** only 2 test items" in md
    assert "**Note:** every technique scored 0.000 on test" in md
    assert "no test item was answered right" in md
    part = md.split("### Wrong answers (a few per technique)", 1)[1]
    for technique in ("lora", "ia3"):
        assert f"| {technique} lr=" in part
    assert "| xylophone |" in part or "| quartz |" in part or "| zephyr |" in part
    assert ".answers.jsonl" in part
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Wrong answers (a few per technique)" in page and "class='caveat'" in page


def test_the_app_shows_wrong_answers_in_one_tab(zero_tournament):
    from peftbench import analysis as an
    from peftbench.analysis.app import Dashboard

    board = Dashboard(an.load_results([zero_tournament.out_dir]))
    group = board.default_group()
    table = board.wrong_answers(group)
    assert table.startswith("| technique | item | prompt | reference | output |")
    assert "Question " in table and "| lora lr=" in table and "| ia3 lr=" in table
    _, _, status = board.view(group, "peak_memory", "test_score")
    assert "every technique scored 0.000" in status


def test_the_tournament_table_stars_no_best_when_all_tie(zero_tournament):
    from peftbench.cli.display import results_table, tournament_verdict

    verdict = tournament_verdict(zero_tournament)
    assert verdict["status"] == {} and len(verdict["caveats"]) == 2
    grid = results_table(zero_tournament)
    assert all(row[0] == "" for row in grid.rows), grid.rows  # no ★ / ☆
    assert grid.caption.startswith("Note: only 2 test items")
    assert "Note: every technique scored 0.000 on test" in grid.caption


def recommend_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from peftbench.cli import main

    monkeypatch.setattr(sys, "argv", ["peftbench", "recommend", *args])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.out, captured.err


def test_recommend_names_no_best_when_all_tie(zero_tournament, monkeypatch, capsys):
    code, out, err = recommend_cli(monkeypatch, capsys, str(zero_tournament.out_dir))
    assert code == 0, err
    assert "Best:" not in out and "No best: every technique has the same test_score." in out
    assert "tied: lora" in out and "tied: ia3" in out
    assert "note: only 2 test items" in out and "note: every technique scored 0.000" in out
    code, out, err = recommend_cli(monkeypatch, capsys, str(zero_tournament.out_dir), "--json")
    (answer,) = json.loads(out)
    assert answer["best"] is None and answer["tied"] and len(answer["caveats"]) == 2


def test_recommend_exits_1_when_nothing_satisfies_the_constraints(zero_tournament,
                                                                 monkeypatch, capsys):
    code, out, _ = recommend_cli(monkeypatch, capsys, str(zero_tournament.out_dir),
                                 "--max-memory", "1KB")
    assert code == 1 and "No technique satisfies the constraints." in out


def test_answers_come_back_from_a_ray_node_beside_the_result(zero_tournament, tmp_path):
    from peftbench.tournament.executors.ray import write_payload

    final = zero_tournament.techniques["ia3"].finals[0]
    text = answers_path(final.path).read_text()
    payload = {"result": json.loads(final.path.read_text()), "seconds": 1.0,
               "adapter_files": {}, "answers": text, "node": "node-1"}
    record = write_payload(final.spec, payload, tmp_path)
    assert record.path.parent == tmp_path and record.view.answers_file
    assert answers_path(record.path).read_text() == text
