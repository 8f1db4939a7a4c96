"""SST-2 (local TSV and mocked hub) and the general-text sample for the forgetting probe."""

from __future__ import annotations

import pytest

from peftbench.errors import UserError
from peftbench.tasks import SPLITS, get_task, load_general_text
from peftbench.tasks.general_text import paragraph_blocks


def write_tsv(path, rows, header="label\tcontent"):
    path.write_text(header + "\n" + "".join(f"{label}\t{text}\n" for label, text in rows))


def fake_sst2(folder, n_train=40, n_dev=10):
    folder.mkdir()
    words = ("awful", "great")
    write_tsv(folder / "train.tsv", [(i % 2, f"train {words[i % 2]} {i}") for i in range(n_train)])
    write_tsv(folder / "dev.tsv", [(i % 2, f"dev {words[i % 2]} {i}") for i in range(n_dev)])
    return folder


def test_sst2_real_data(shared_data):
    # its speed (< 3 s for 67k sentences on an idle machine) is measured by bench_cli.py
    task = get_task("sst2", {"data": str(shared_data / "sst2")})
    train, valid, test = (task.load_split(s) for s in SPLITS)
    assert (len(train), len(valid), len(test)) == (67349 - 200, 200, 872)
    assert task.kind == "classification" and task.labels == ("negative", "positive")
    ex = train[0]
    assert ex.text == "hide new secretions from the parental units" and ex.label == 0
    assert ex.prompt == f"Review: {ex.text}\nSentiment:" and ex.target == " negative"
    assert test[0].text == "one long string of cliches ." and test[0].answer == "negative"
    assert {e.label for e in test} == {0, 1}
    assert all(e.target == " " + task.labels[e.label] == " " + e.answer for e in train[:500])
    info = task.describe()
    assert info["labels"] == ["negative", "positive"] and info["sizes"]["test"] == 872


def test_sst2_validation_is_carved_from_train(tmp_path):
    folder = str(fake_sst2(tmp_path / "s"))
    task = get_task("sst2", {"data": folder, "n_valid": 6, "n_train": 20, "n_test": 5})
    train, valid, test = (task.load_split(s) for s in SPLITS)
    assert (len(train), len(valid), len(test)) == (20, 6, 5)
    assert not {e.text for e in train} & {e.text for e in valid}
    assert all(e.text.startswith("train") for e in train + valid)
    assert all(e.text.startswith("dev") for e in test)
    assert all(e.answer == ("positive" if "great" in e.text else "negative") for e in train)
    other = get_task("sst2", {"data": folder, "n_valid": 6, "seed": 3})
    assert other.load_split("validation") != valid


def test_sst2_scoring():
    task = get_task("sst2")  # no data is read until a split is asked for
    ex = type("E", (), {"answer": "positive"})()
    assert task.is_correct(" positive\nReview: bad", ex)
    assert task.is_correct(" Positive.", ex)
    assert not task.is_correct(" negative", ex)
    assert not task.is_correct(" positively", ex)
    assert task.extract_answer(" meh") == ""


def test_sst2_bad_label_names_line(tmp_path):
    folder = fake_sst2(tmp_path / "s")
    lines = (folder / "train.tsv").read_text().splitlines()
    lines[4] = "2\tmaybe"
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"train\.tsv line 5: label must be 0 or 1, got '2'"):
        get_task("sst2", {"data": str(folder), "n_valid": 5}).load_split("train")
    fake_sst2(tmp_path / "t")
    write_tsv(tmp_path / "t" / "dev.tsv", [(0, "x")], header="label\ttext")
    with pytest.raises(UserError, match=r"dev\.tsv line 1: missing column 'content'"):
        get_task("sst2", {"data": str(tmp_path / "t"), "n_valid": 5}).load_split("train")


def test_sst2_from_hub_uses_validation_as_test(monkeypatch, tmp_path):
    import datasets

    folder = fake_sst2(tmp_path / "s")

    def hub_split(name):
        lines = (folder / name).read_text().splitlines()[1:]
        rows = [line.split("\t") for line in lines]
        return {
            "sentence": [text for _, text in rows],
            "label": [int(label) for label, _ in rows],
            "idx": list(range(len(rows))),
        }

    def load_dataset(path, name=None, split=None, **kwargs):
        assert (path, name) == ("nyu-mll/glue", "sst2")
        if split == "test":
            raise AssertionError("the hub's test split has no labels")
        return datasets.Dataset.from_dict(hub_split({"train": "train.tsv"}.get(split, "dev.tsv")))

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    hub = get_task("sst2", {"n_valid": 6})
    local = get_task("sst2", {"data": str(folder), "n_valid": 6})
    for split in SPLITS:
        assert hub.load_split(split) == local.load_split(split)
    assert hub.describe()["data"] == "hub:nyu-mll/glue/sst2"


# --- general text -----------------------------------------------------------------------------


def test_general_text_real_wikitext(shared_data):
    folder = str(shared_data / "wikitext-2")
    blocks = load_general_text(folder, 32)
    assert len(blocks) == 32 and len(set(blocks)) == 32
    assert all(200 <= len(b) <= 500 for b in blocks)
    assert not any(b.startswith("=") or "@-@" in b or "@.@" in b for b in blocks)
    assert load_general_text(folder, 32) == blocks
    assert load_general_text(folder, 32, seed=1) != blocks
    assert set(load_general_text(folder, 8)) <= set(blocks)
    assert load_general_text(folder, 4, split="test") != load_general_text(folder, 4)
    assert load_general_text(folder, 0) == []


def test_paragraph_blocks_skip_headings_and_cut_at_words():
    lines = [" = Title = ", " ", " short line . ", " " + "word " * 200, " 1 @,@ 000 @-@ fold " * 20]
    blocks = paragraph_blocks(lines, min_chars=50, max_chars=100)
    assert len(blocks) == 2
    assert blocks[0].startswith("word") and len(blocks[0]) <= 100 and blocks[0].endswith("word")
    assert blocks[1].startswith("1,000-fold")


def test_general_text_from_hub_and_errors(monkeypatch, tmp_path):
    import datasets

    lines = [" = Heading = \n", ""] + [f" Paragraph {i} " + "text " * 60 + "\n" for i in range(9)]

    def load_dataset(path, name=None, split=None, **kwargs):
        assert (path, name, split) == ("Salesforce/wikitext", "wikitext-2-raw-v1", "validation")
        return datasets.Dataset.from_dict({"text": lines})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    blocks = load_general_text(None, 5)
    assert len(blocks) == 5 and all(b.startswith("Paragraph") for b in blocks)
    assert len(load_general_text(None, 50)) == 9
    (tmp_path / "valid.txt").write_text(" = Only headings = \n\n")
    with pytest.raises(UserError, match="no paragraphs"):
        load_general_text(str(tmp_path), 4)
    with pytest.raises(UserError, match="file not found"):
        load_general_text(str(tmp_path / "nope.txt"), 4)
