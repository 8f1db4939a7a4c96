"""GLUE and SuperGLUE tasks on small local copies in the hub's schema: loading, splits, both
model kinds' renderings, the official metrics against hand-computed values, bad rows."""

from __future__ import annotations

import json
import math

import pytest
from glue_fixtures import ALL_TASKS, TEST_FILES, write_jsonl, write_task

from peftbench.errors import UserError
from peftbench.tasks import SPLITS, Example, Prediction, get_task, task_doc
from peftbench.tasks import metrics as m
from peftbench.tasks.suite_task import MAX_VALID


def load(tmp_path, task, kind="causal-lm", **options):
    folder = write_task(tmp_path / task.replace(":", "_"), task)
    built = get_task(task, {"data": str(folder), **options})
    built.use_model_kind(kind)
    return built, {split: built.load_split(split) for split in SPLITS}


# ------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_loads_its_local_copy_for_both_model_kinds(tmp_path, task):
    causal, splits = load(tmp_path, task, n_valid=4)
    encoder, encoded = load(tmp_path / "enc", task, kind="seq-cls", n_valid=4)
    for examples in (splits, encoded):  # validation is carved out of train, test kept apart
        seen = {e.prompt + e.text + e.text_pair for e in examples["train"]}
        assert seen.isdisjoint(e.prompt + e.text + e.text_pair for e in examples["validation"])
        assert all("train" in e.text + e.prompt for e in examples["train"] + examples["validation"])
        assert all("test" in e.text + e.prompt for e in examples["test"])
    for ex in splits["train"] + splits["test"]:  # causal LM: a prompt, the answer as target
        assert ex.prompt.endswith("Answer:") and ex.target == " " + ex.answer
        assert causal.is_correct(ex.target, ex) and not causal.is_correct(" ???", ex)
    for ex in encoded["train"] + encoded["test"]:  # encoder: a text (pair) and a class
        assert ex.text and ex.label in range(len(encoder.labels))
    info = causal.describe()
    assert info["name"] == task and info["metric"] == causal.metric
    assert info["data"].endswith(task.replace(":", "_"))
    assert "seed 0" in info["validation_source"]
    assert TEST_FILES.get(task, "validation") in info["test_source"]


def test_items_count_rows_or_groups_and_sizes_are_capped(tmp_path):
    task, splits = load(tmp_path, "glue:rte", n_valid=5, n_train=7, n_test=3, seed=2)
    assert [len(splits[s]) for s in SPLITS] == [7, 5, 3]
    again = get_task("glue:rte", {"data": task.settings["data"], "n_valid": 5, "seed": 3})
    assert again.load_split("validation") != splits["validation"]
    _, multirc = load(tmp_path, "superglue:multirc", n_valid=2, n_test=2)
    assert [len(multirc[s]) for s in SPLITS] == [18 * 3, 2 * 3, 2 * 3]  # 3 options a question
    groups = [e.group for e in multirc["validation"]]
    assert len(set(groups)) == 2 and groups == sorted(groups, key=groups.index)
    assert not set(groups) & {e.group for e in multirc["train"]}


def test_default_validation_is_a_tenth_of_train_at_most(tmp_path):
    _, splits = load(tmp_path, "superglue:cb")  # 20 training rows
    assert len(splits["validation"]) == 2 and len(splits["train"]) == 18
    assert MAX_VALID == 200


def test_pairs_stay_pairs_for_an_encoder(tmp_path):
    _, splits = load(tmp_path, "glue:mrpc", kind="seq-cls", n_valid=2)
    ex = splits["test"][1]
    assert (ex.text, ex.text_pair) == ("test first text 1", "test second text 1")
    assert "Sentence 1: test first text 1\nSentence 2: test second text 1" in ex.prompt


def test_copa_renders_both_choices_into_one_text(tmp_path):
    task, splits = load(tmp_path, "superglue:copa", n_valid=2)
    ex = splits["test"][1]
    assert ex.text == "test premise 1 What was the effect? 1: first 1 2: second 1"
    assert ex.text_pair == "" and ex.target == " 2" and ex.label == 1
    assert "1: first 1\n2: second 1" in ex.prompt and task.labels == ("1", "2")


def test_record_is_one_query_for_a_causal_lm_and_one_example_per_candidate_for_an_encoder(
        tmp_path):
    task, splits = load(tmp_path, "superglue:record", n_valid=2)
    ex = splits["test"][0]
    assert ex.target == " Alice" and ex.references == ("Alice",)
    assert "Candidates: Alice, Bob, Paris\n" in ex.prompt and "@highlight" not in ex.prompt
    assert task.extract_answer(" Alice\nQuery: more") == "Alice"
    assert task.is_correct(" alice.", ex) and not task.is_correct(" Bob", ex)
    _, encoded = load(tmp_path / "enc", "superglue:record", kind="seq-cls", n_valid=2)
    first = encoded["test"][:3]  # the repeated entity is one candidate
    assert [e.choice for e in first] == ["Alice", "Bob", "Paris"]
    assert [e.label for e in first] == [1, 0, 0] and len({e.group for e in first}) == 1
    assert first[1].text_pair == "Bob went home 0" and len(encoded["test"]) == 18


def test_axb_trains_on_rte_rows_and_tests_on_its_own_fields(tmp_path):
    task, splits = load(tmp_path, "superglue:axb", n_valid=2)
    assert splits["test"][0].text == "test first text 0"
    assert splits["train"][0].prompt.startswith("Premise: train first text")
    assert task.source()["validation_source"].startswith("carved from train (rte;")


def test_hub_rows_come_from_the_suites_repositories(monkeypatch):
    from peftbench.tasks import suite_task

    asked = []

    def fake_rows(repo, config, split, columns):
        asked.append((repo, config, split))
        names = ("premise", "hypothesis") if "premise" in columns else ("sentence1", "sentence2")
        return [{names[0]: f"{split} a {i}", names[1]: f"{split} b {i}", "label": i % 2,
                 "idx": i} for i in range(30)]

    monkeypatch.setattr(suite_task, "load_hub_rows", fake_rows)
    task = get_task("glue:rte", {"n_valid": 3})
    assert len(task.load_split("test")) == 30 and len(task.load_split("validation")) == 3
    assert asked == [("nyu-mll/glue", "rte", "train"), ("nyu-mll/glue", "rte", "validation")]
    assert task.describe()["data"] == "hub:nyu-mll/glue/rte"
    asked.clear()
    get_task("superglue:axb").load_split("test")
    assert asked == [("aps/super_glue", "rte", "train"), ("aps/super_glue", "axb", "test")]
    asked.clear()
    get_task("glue:mnli_mismatched").load_split("test")
    assert asked[1] == ("nyu-mll/glue", "mnli", "validation_mismatched")


def test_peftbench_tasks_documents_both_suites():
    for suite, some in (("glue", "mnli_mismatched"), ("superglue", "record")):
        doc = task_doc(suite)
        assert some in doc.argument and doc.metric
        assert [o.name for o in doc.options] == ["data", "seed", "n_train", "n_valid", "n_test"]


# ------------------------------------------------------------------------------ errors


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("task", "row", "problem"), [
    ("glue:mrpc", {"sentence1": "a", "label": 1}, "missing field 'sentence2'"),
    ("glue:cola", {"sentence": "a", "label": 2},
     "field 'label' must be an integer from 0 to 1, got 2"),
    ("glue:cola", {"sentence": "a"}, "missing field 'label'"),
    ("glue:cola", {"sentence": "a", "label": "yes"},
     "field 'label' must be an integer from 0 to 1, got 'yes'"),
    ("glue:stsb", {"sentence1": "a", "sentence2": "b", "label": 6.5},
     "field 'label' must be a number from 0 to 5, got 6.5"),
    ("superglue:copa", {"premise": "p", "choice1": "a", "choice2": "b", "question": "why",
                        "label": 0}, "field 'question' must be 'cause' or 'effect', got 'why'"),
    ("superglue:multirc", {"paragraph": "p", "question": "q", "answer": "a", "label": 1,
                           "idx": 3}, "field 'idx' must be an object with integer"),
    ("superglue:record", {"passage": "p", "query": "q @placeholder", "entities": "Bob",
                          "answers": ["Bob"]}, "field 'entities' must be a non-empty list"),
    ("superglue:record", {"passage": "p", "query": "no slot", "entities": ["Bob"],
                          "answers": ["Bob"]}, "field 'query' has no '@placeholder'"),
])
def test_a_bad_row_is_one_line_naming_file_line_and_problem(tmp_path, task, row, problem):
    folder = write_task(tmp_path / "data", task)
    train = folder / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[2] = json.dumps(row)
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as error:
        get_task(task, {"data": str(folder)}).load_split("train")
    assert _one_line(error).startswith(f"{train} line 3: {problem}")


def test_missing_folder_file_unknown_name_and_options_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="folder not found .expected train.jsonl and "
                                        "validation_matched.jsonl"):
        get_task("glue:mnli_matched", {"data": str(tmp_path / "none")}).load_split("test")
    folder = write_task(tmp_path / "cb", "superglue:cb")
    (folder / "validation.jsonl").unlink()
    with pytest.raises(UserError, match="validation.jsonl: file not found"):
        get_task("superglue:cb", {"data": str(folder)}).load_split("test")
    with pytest.raises(UserError, match="unknown glue task 'mnli'; did you mean"):
        get_task("glue:mnli")
    with pytest.raises(UserError, match="superglue:all is the whole suite: .peftbench "
                                        "tournament --task superglue:all"):
        get_task("superglue:all")  # `run` takes one task
    with pytest.raises(UserError, match="unknown option"):
        get_task("superglue:boolq", {"n_vaild": 3})
    with pytest.raises(UserError, match="n_valid=20 leaves no training items"):
        get_task("superglue:cb", {"data": str(write_task(tmp_path / "c2", "superglue:cb")),
                                  "n_valid": 20}).load_split("train")


# ------------------------------------------------------------------------------ metrics


def ex(label: int, answer: str = "", group: str = "", **extra) -> Example:
    return Example(prompt="", target="", answer=answer, label=label, group=group, **extra)


def said(*answers: str) -> list[Prediction]:
    return [Prediction(a, False) for a in answers]


def test_cola_scores_matthews_correlation():
    task = get_task("glue:cola")
    # predicted yes yes no no, gold yes no no no: TP 1, FP 1, TN 2, FN 0
    scores = task.score(said("yes", "yes", "no", "no"), [ex(1), ex(0), ex(0), ex(0)])
    assert scores == {"matthews_corrcoef": pytest.approx(2 / math.sqrt(2 * 1 * 3 * 2))}
    assert task.metric == "matthews_corrcoef"


def test_mrpc_and_qqp_score_f1_of_yes_and_accuracy():
    for name in ("glue:mrpc", "glue:qqp"):
        task = get_task(name)
        # an answer naming no class ("") is wrong; TP 1, FP 1, FN 1 -> F1 0.5; 2 of 5 right
        scores = task.score(said("yes", "yes", "no", "no", ""),
                            [ex(1), ex(0), ex(1), ex(0), ex(0)])
        assert scores == {"f1": pytest.approx(0.5), "accuracy": pytest.approx(0.4)}
        assert task.metric == "f1"


def test_stsb_scores_correlations_of_the_answered_numbers():
    task = get_task("glue:stsb")
    gold = [ex(1, "1.0"), ex(2, "2.0"), ex(3, "3.0")]
    # the missing number counts as 2.5: (1, 2.5, 4) is a line through (1, 2, 3)
    assert task.score(said("1.0", "", "4.0"), gold) == {"pearson": pytest.approx(1.0),
                                                        "spearman": pytest.approx(1.0)}
    # ranks 1 3 2 against 1 2 3: Spearman 1 - 6 * 2 / (3 * 8) = 0.5
    assert task.score(said("0.0", "5.0", "3.0"), gold)["spearman"] == pytest.approx(0.5)
    assert task.extract_answer(" 3.75 or so") == "3.8" and task.extract_answer(" 7") == "5.0"
    assert task.extract_answer(" very similar") == ""
    assert task.is_correct(" 3.6", ex(4, "4.4")) and not task.is_correct(" 3.4", ex(4, "4.4"))
    assert task.metric == "pearson"


def test_cb_scores_macro_f1_and_accuracy():
    task = get_task("superglue:cb")
    # classes yes, no, maybe: F1 1, 2/3 and 0 -> macro 5/9; 2 of 4 right
    scores = task.score(said("yes", "no", "maybe", "???"), [ex(0), ex(1), ex(1), ex(2)])
    assert scores == {"macro_f1": pytest.approx(5 / 9), "accuracy": pytest.approx(0.5)}


def test_multirc_scores_f1_over_options_and_exact_match_per_question():
    task = get_task("superglue:multirc")
    examples = [ex(1, group="q1"), ex(0, group="q1"), ex(1, group="q1"), ex(0, group="q2"),
                ex(1, group="q2")]
    # TP 2, FP 0, FN 1 -> F1a 0.8; q1 has a wrong option, q2 is all right -> EM 0.5
    scores = task.score(said("yes", "no", "no", "no", "yes"), examples)
    assert scores == {"f1a": pytest.approx(0.8), "em": pytest.approx(0.5)}


def test_record_scores_token_f1_and_exact_match_over_mentions():
    task = get_task("superglue:record")
    generated = [ex(0, references=("Alice",)), ex(0, references=("Bob Smith", "Smith"))]
    # "the Bob": tokens {bob} against {bob, smith}: precision 1, recall 1/2 -> F1 2/3
    assert task.score(said("Alice", "the Bob"), generated) == {
        "f1": pytest.approx((1 + 2 / 3) / 2), "em": pytest.approx(0.5)}
    candidates = [ex(1, group="a", choice="Alice", references=("Alice",)),
                  ex(0, group="a", choice="Bob", references=("Alice",)),
                  ex(1, group="b", choice="Paris", references=("Paris",))]
    # per query, the candidate most probably "yes" is the answer: Bob (wrong), Paris (right)
    probable = [Prediction("no", False, (0.7, 0.3)), Prediction("yes", False, (0.4, 0.6)),
                Prediction("yes", True, (0.1, 0.9))]
    assert task.score(probable, candidates) == {"f1": 0.5, "em": 0.5}
    # without probabilities the first candidate answered "yes" wins
    assert task.score(said("yes", "yes", "yes"), candidates) == {"f1": 1.0, "em": 1.0}


def test_accuracy_tasks_and_the_default_hook():
    assert get_task("superglue:boolq").score(said("yes", "no", "yes"),
                                             [ex(1), ex(1), ex(1)]) == {
        "accuracy": pytest.approx(2 / 3)}
    assert get_task("superglue:axb").metric == "matthews_corrcoef"
    arith = get_task("arith")  # a task without its own scoring: the share of correct answers
    assert arith.score([Prediction("1", True), Prediction("2", False)], []) == {"accuracy": 0.5}


def test_metric_functions_on_hand_computed_values():
    assert m.f1_of_class([1, 1, 0, -1], [1, 0, 0, 1]) == pytest.approx(0.5)
    assert m.matthews([1, 1, 1], [1, 1, 1]) == 0.0  # undefined: one class
    assert m.pearson([1.0, 2.0], [3.0, 3.0]) == 0.0 and m.pearson([1.0], [1.0]) == 0.0
    assert m.pearson([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    assert m.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert m.exact_match("an Obama", ["Obama"]) == 1.0 and m.token_f1("x", ["y"]) == 0.0
    assert m.accuracy([], []) == 0.0


def test_local_files_need_the_hub_field_names(tmp_path):
    folder = tmp_path / "sst2"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"content": "x", "label": 0}] * 12)
    write_jsonl(folder / "validation.jsonl", [{"sentence": "x", "label": 0}])
    with pytest.raises(UserError, match=r"train.jsonl line 1: missing field 'sentence'"):
        get_task("glue:sst2", {"data": str(folder)}).load_split("train")


def test_peftbench_run_stops_on_a_bad_row_with_one_line_and_writes_nothing(
        tmp_path, capsys, monkeypatch):
    from cli_helpers import peftbench

    folder = write_task(tmp_path / "rte", "glue:rte")
    train = folder / "train.jsonl"
    lines = train.read_text().splitlines()
    lines[1] = json.dumps({"sentence1": "a", "sentence2": "b", "label": 7})
    train.write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = peftbench(capsys, "run", "--model", "tiny-bert", "--task", "glue:rte",
                               "--data", str(folder), "--steps", "1", "--out", "results")
    assert code == 2
    assert err.strip() == (f"error: {train} line 2: field 'label' must be an integer from 0 "
                           "to 1, got 7")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
