"""`jsonl:PATH` / `csv:PATH`: the user's own data, its splits, labels and every input error."""

from __future__ import annotations

import json

import pytest

from peftbench.errors import UserError
from peftbench.tasks import SPLITS, get_task


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def qa(n, start=0):
    return [
        {"prompt": f"Capital of country {i}?", "response": f"City {i}"} for i in range(start, n)
    ]


def reviews(n):
    return [{"text": f"review number {i}", "label": ["bad", "good", "ok"][i % 3]} for i in range(n)]


def all_splits(task):
    return [task.load_split(s) for s in SPLITS]


# --- generation ---------------------------------------------------------------------------


def test_jsonl_generation_split_80_10_10(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", qa(50))
    task = get_task(f"jsonl:{path}")
    train, valid, test = all_splits(task)
    assert (len(train), len(valid), len(test)) == (40, 5, 5)
    prompts = [{e.prompt for e in split} for split in (train, valid, test)]
    assert len(prompts[0] | prompts[1] | prompts[2]) == 50
    assert task.kind == "generation" and task.name == f"jsonl:{path}"
    ex = train[0]
    assert ex.prompt == "Capital of country 0?" and ex.target == " City 0" and ex.answer == "City 0"
    assert all_splits(get_task(f"jsonl:{path}")) == [train, valid, test]
    assert get_task(f"jsonl:{path}", {"seed": 1}).load_split("test") != test
    info = task.describe()
    assert info["data"] == str((tmp_path / "data.jsonl").resolve())
    assert info["sizes"] == {"train": 40, "validation": 5, "test": 5}
    assert info["fields"] == ["prompt", "response"] and info["match"] == "exact"


def test_generation_scoring_modes(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", qa(10) + [{"prompt": "Sum?\n", "response": 12}])
    exact = get_task(f"jsonl:{path}", {"seed": 3})
    ex = next(e for s in all_splits(exact) for e in s if e.prompt == "Capital of country 1?")
    assert exact.is_correct("  City   1 \n", ex)
    assert not exact.is_correct(" City 1\nCapital of country 2?", ex)
    first_line = get_task(f"jsonl:{path}", {"seed": 3, "match": "first_line"})
    assert first_line.is_correct(" City 1\nCapital of country 2?", ex)
    number = get_task(f"jsonl:{path}", {"seed": 3, "match": "number"})
    numeric = next(e for s in all_splits(number) for e in s if e.prompt == "Sum?\n")
    assert numeric.target == "12" and numeric.answer == "12"  # no extra space after "\n"
    assert number.is_correct("It is 12.0 in total", numeric)
    assert not number.is_correct("It is 13", numeric)
    assert not number.is_correct("no digits", numeric) and not exact.is_correct("", ex)
    wordy = write_jsonl(tmp_path / "w.jsonl", [{"prompt": "p", "response": "none"}] * 9)
    with pytest.raises(UserError, match=r"w\.jsonl line \d: field 'response' has no number"):
        get_task(f"jsonl:{wordy}", {"match": "number"})
    with pytest.raises(UserError, match="'match' must be one of exact, first_line, number"):
        get_task(f"jsonl:{path}", {"match": "fuzzy"})


def test_separate_validation_and_test_files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa(20))
    valid = write_jsonl(tmp_path / "valid.jsonl", qa(23, 20))
    test = write_jsonl(tmp_path / "test.jsonl", qa(27, 23))
    task = get_task(f"jsonl:{train}", {"validation": valid, "test": test})
    assert [len(s) for s in all_splits(task)] == [20, 3, 4]
    only_test = get_task(f"jsonl:{train}", {"test": test})
    assert [len(s) for s in all_splits(only_test)] == [18, 2, 4]
    assert only_test.describe()["test_fraction"] is None


def test_custom_field_names_and_max_new_tokens(tmp_path):
    records = [{"q": f"question {i}", "a": "x" * (i + 1) * 30} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    task = get_task(f"jsonl:{path}", {"prompt_field": "q", "response_field": "a"})
    longest = max(len(e.answer) for e in task.load_split("train"))
    assert task.max_new_tokens >= longest // 4
    assert get_task(f"jsonl:{write_jsonl(tmp_path / 's.jsonl', qa(9))}").max_new_tokens >= 16


# --- classification -------------------------------------------------------------------------


def test_csv_classification_with_string_labels(tmp_path):
    lines = ["text,label"] + [f"{r['text']},{r['label']}" for r in reviews(30)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    task = get_task(f"csv:{tmp_path / 'data.csv'}")
    assert task.kind == "classification" and task.labels == ("bad", "good", "ok")
    examples = [e for split in all_splits(task) for e in split]
    assert len(examples) == 30
    for ex in examples:
        number = int(ex.text.split()[-1])
        assert ex.label == number % 3 and ex.answer == task.labels[ex.label]
        assert ex.prompt == f"{ex.text}\nLabel:" and ex.target == " " + ex.answer
    assert task.is_correct(" good", next(e for e in examples if e.answer == "good"))
    assert task.describe()["labels"] == ["bad", "good", "ok"]


def test_integer_labels_sorted_and_label_names(tmp_path):
    records = [{"text": f"t{i}", "label": [5, 1, 3][i % 3]} for i in range(12)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    task = get_task(f"jsonl:{path}")
    assert task.labels == ("1", "3", "5")
    ex = next(e for e in task.load_split("train") if e.text == "t0")
    assert ex.label == 2 and ex.target == " 5"
    binary = [{"text": f"t{i}", "label": str(i % 2)} for i in range(12)]
    path = write_jsonl(tmp_path / "b.jsonl", binary)
    named = get_task(f"jsonl:{path}", {"label_names": "no,yes", "prompt_template": "Q: {text}\nA:"})
    assert named.labels == ("no", "yes")
    ex = next(e for e in named.load_split("train") if e.text == "t1")
    assert (ex.label, ex.answer, ex.prompt) == (1, "yes", "Q: t1\nA:")


def test_tsv_with_custom_columns_and_quoted_multiline(tmp_path):
    rows = "\n".join(f"{i % 2}\tsentence {i}" for i in range(9))
    (tmp_path / "d.tsv").write_text(f'y\tsentence\n1\t"two\nlines"\n{rows}\n')
    options = {"delimiter": "\t", "text_field": "sentence", "label_field": "y"}
    task = get_task(f"csv:{tmp_path / 'd.tsv'}", options)
    texts = {e.text for s in all_splits(task) for e in s}
    assert "two\nlines" in texts and len(texts) == 10


# --- malformed input: always a UserError naming file and line, raised by get_task -------------


def jsonl_case(tmp_path, line7, name="data.jsonl"):
    lines = [json.dumps(r) for r in qa(10)]
    lines[6] = line7
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return f"jsonl:{path}"


@pytest.mark.parametrize(
    ("line7", "problem"),
    [
        ('{"prompt": "p"}', "missing field 'response'"),
        ('{"prompt": "p", "response": "  "}', "field 'response' is empty"),
        ('{"prompt": null, "response": "r"}', "field 'prompt' must be text, got null"),
        ('{"prompt": "p", "response": "r"', "invalid JSON"),
        ('["p", "r"]', "expected a JSON object, got a list"),
    ],
)
def test_bad_jsonl_line(tmp_path, line7, problem):
    with pytest.raises(UserError, match=rf"data\.jsonl line 7: {problem}"):
        get_task(jsonl_case(tmp_path, line7))


def test_bad_encoding_names_line(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps(r).encode() for r in qa(5)]
    lines[3] = b'{"prompt": "caf\xe9", "response": "r"}'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError, match=r"data\.jsonl line 4: not valid UTF-8"):
        get_task(f"jsonl:{path}")


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match=r"empty\.jsonl: file has no records"):
        get_task(f"jsonl:{tmp_path / 'empty.jsonl'}")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match=r"empty\.csv: file is empty"):
        get_task(f"csv:{tmp_path / 'empty.csv'}")
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(UserError, match=r"header\.csv: file has no records"):
        get_task(f"csv:{tmp_path / 'header.csv'}")
    with pytest.raises(UserError, match=r"nope\.jsonl: file not found"):
        get_task(f"jsonl:{tmp_path / 'nope.jsonl'}")
    with pytest.raises(UserError, match="needs a file"):
        get_task("jsonl")


def test_non_numeric_label_where_integers_expected(tmp_path):
    records = [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    records[5]["label"] = "positive"
    path = write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(UserError, match=r"data\.jsonl line 6: label 'positive' is not an integer"):
        get_task(f"jsonl:{path}")
    (tmp_path / "data.csv").write_text("text,label\na,0\nb,1\nc,1\nd,one\ne,0\n")
    with pytest.raises(UserError, match=r"data\.csv line 5: label 'one' is not an integer"):
        get_task(f"csv:{tmp_path / 'data.csv'}")


def test_label_problems(tmp_path):
    records = [{"text": f"t{i}", "label": i % 2} for i in range(10)]
    records[2]["label"] = 1.5
    with pytest.raises(UserError, match=r"d\.jsonl line 3: label must be text or an integer"):
        get_task(f"jsonl:{write_jsonl(tmp_path / 'd.jsonl', records)}")
    records[2]["label"] = 2
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(UserError, match=r"d\.jsonl line 3: label 2 is out of range for 2"):
        get_task(f"jsonl:{path}", {"label_names": ["no", "yes"]})
    same = write_jsonl(tmp_path / "same.jsonl", [{"text": f"t{i}", "label": "a"} for i in range(9)])
    with pytest.raises(UserError, match="only one distinct label"):
        get_task(f"jsonl:{same}")


def test_csv_structure_problems(tmp_path):
    (tmp_path / "data.csv").write_text("text,category\na,x\nb,y\n")
    with pytest.raises(UserError, match=r"data\.csv line 1: missing column 'label'"):
        get_task(f"csv:{tmp_path / 'data.csv'}", {"kind": "classification"})
    (tmp_path / "data.csv").write_text("text,label\na,x\nb,y\nc,d,e\nf,g\n")
    with pytest.raises(UserError, match=r"data\.csv line 4: expected 2 fields"):
        get_task(f"csv:{tmp_path / 'data.csv'}")
    (tmp_path / "data.csv").write_text("question,answer\nhi,there\n")
    with pytest.raises(UserError, match=r"data\.csv line 2: needs fields 'prompt'/'response'"):
        get_task(f"csv:{tmp_path / 'data.csv'}")


def test_problems_in_validation_file_name_that_file(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa(10))
    valid = jsonl_case(tmp_path, '{"response": "r"}', name="valid.jsonl").removeprefix("jsonl:")
    with pytest.raises(UserError, match=r"valid\.jsonl line 7: missing field 'prompt'"):
        get_task(f"jsonl:{train}", {"validation": valid})


def test_too_few_records_and_bad_options(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", qa(2))
    with pytest.raises(UserError, match="2 records are too few"):
        get_task(f"jsonl:{path}")
    with pytest.raises(UserError, match="'valid_fraction' must be a number between 0 and 1"):
        get_task(f"jsonl:{path}", {"valid_fraction": 1.5})
    with pytest.raises(UserError, match="'prompt_template' must contain"):
        get_task(f"jsonl:{path}", {"prompt_template": "no placeholder"})


# --- the file as --data, and errors that name the option to set ---------------------------


def test_the_file_can_be_given_as_the_data_option(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", qa(20))
    by_option = get_task("jsonl", {"data": path})
    by_argument = get_task(f"jsonl:{path}")
    assert [e.prompt for e in by_option.load_split("test")] == \
        [e.prompt for e in by_argument.load_split("test")]
    assert by_option.name == f"jsonl:{path}"
    assert get_task(f"jsonl:{path}", {"data": path}).name == f"jsonl:{path}"  # the same file
    with pytest.raises(UserError, match="two files given .*give one"):
        get_task(f"jsonl:{path}", {"data": str(tmp_path / "other.jsonl")})
    with pytest.raises(UserError, match="--task jsonl --data FILE"):
        get_task("jsonl")


def test_fractions_that_leave_nothing_to_train_on_are_said_as_such(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", qa(100))
    with pytest.raises(UserError, match=r"valid_fraction 0\.6 \+ test_fraction 0\.5 sum to 1\.1, "
                                        "leaving nothing to train on"):
        get_task(f"jsonl:{path}", {"valid_fraction": 0.6, "test_fraction": 0.5})


def test_missing_fields_name_the_option_that_renames_them(tmp_path):
    records = [{"question": f"q{i}", "response": f"a{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(UserError, match=r"d\.jsonl line 1: missing field 'prompt' \(it has: "
                                        r"question, response\); set the task option "
                                        "prompt_field=NAME"):
        get_task(f"jsonl:{path}", {"kind": "generation"})
    assert get_task(f"jsonl:{path}", {"prompt_field": "question"}).load_split("train")
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"q": "x", "a": "y"}] * 5)
    with pytest.raises(UserError, match="it has: q, a; name yours with the task options "
                                        "prompt_field=…, response_field=…"):
        get_task(f"jsonl:{odd}")
    (tmp_path / "d.csv").write_text("prompt,answer\nhi,there\nho,then\nha,that\n")
    with pytest.raises(UserError, match="missing column 'response' .*set the task option "
                                        "response_field=COLUMN"):
        get_task(f"csv:{tmp_path / 'd.csv'}")
    numbers = write_jsonl(tmp_path / "n.jsonl", [{"prompt": "p", "response": "none"}] * 5)
    with pytest.raises(UserError, match="which the task option match=number needs"):
        get_task(f"jsonl:{numbers}", {"match": "number"})


def test_a_misspelled_task_option_suggests_the_closest(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", qa(10))
    with pytest.raises(UserError, match="unknown option.*response_feild; did you mean "
                                        "'response_field'"):
        get_task(f"jsonl:{path}", {"response_feild": "answer"})
    with pytest.raises(UserError, match="must be one of exact, first_line, number, got "
                                        "'numbr'; did you mean 'number'"):
        get_task(f"jsonl:{path}", {"match": "numbr"})
