"""GSM8K and MetaMathQA tasks: local files, the hub path (mocked) and scoring."""

from __future__ import annotations

import json

import pytest

from peftbench.errors import UserError
from peftbench.tasks import SPLITS, get_task
from peftbench.tasks.gsm8k import METAMATH_CHAR_LIMIT, gsm8k_example

QUESTION = "Natalia sold 48 clips in April and half as many in May. How many in total?"
ANSWER = "She sold 48/2 = <<48/2=24>>24 in May.\nShe sold 48+24 = <<48+24=72>>72.\n#### 72"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def fake_gsm8k(folder, n_train=30, n_test=12):
    """A small GSM8K folder whose answers are the record index."""
    folder.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        records = [
            {"question": f"{split} q{i}?", "answer": f"{i} + 0 = {i}.\n#### {i:,}"}
            for i in range(1000, 1000 + n)
        ]
        write_jsonl(folder / f"{split}.jsonl", records)
    return folder


def test_gsm8k_example_format():
    ex = gsm8k_example(QUESTION, ANSWER, "x")
    assert ex.prompt == f"Question: {QUESTION} Think step by step.\nAnswer:"
    assert ex.target == " She sold 48/2 = 24 in May. She sold 48+24 = 72. #### 72"
    assert ex.answer == "72"
    assert gsm8k_example("q", "Total: $1,200.\n#### 1,200", "x").answer == "1200"
    with pytest.raises(UserError, match="where: answer does not end in '#### <number>'"):
        gsm8k_example("q", "no marker", "where")


def test_gsm8k_real_data_splits(shared_data):
    task = get_task("gsm8k", {"data": str(shared_data / "gsm8k")})
    train, valid, test = (task.load_split(s) for s in SPLITS)
    assert (len(train), len(valid), len(test)) == (7473 - 50, 50, 1319)
    assert not {ex.prompt for ex in valid} & {ex.prompt for ex in train}
    assert all(ex.target.rstrip().endswith(f"#### {ex.answer}") for ex in train + test)
    assert all("<<" not in ex.target and ex.answer for ex in train)
    assert test[0].answer == "18"  # Janet's ducks
    assert all(task.is_correct(ex.target, ex) for ex in valid + test)
    info = task.describe()
    assert info["data"].endswith("gsm8k") and info["sizes"]["test"] == 1319
    assert info["max_new_tokens"] == task.max_new_tokens == 256


def test_gsm8k_caps_are_seeded_samples(tmp_path):
    folder = str(fake_gsm8k(tmp_path / "g"))
    options = {"data": folder, "n_train": 10, "n_valid": 5, "n_test": 4}
    task = get_task("gsm8k", options)
    train, valid, test = (task.load_split(s) for s in SPLITS)
    assert (len(train), len(valid), len(test)) == (10, 5, 4)
    assert not {e.prompt for e in train} & {e.prompt for e in valid}
    assert [e.prompt for e in train] == sorted(e.prompt for e in train)  # file order kept
    assert get_task("gsm8k", options).load_split("train") == train
    reseeded = get_task("gsm8k", {**options, "seed": 7})
    assert reseeded.load_split("validation") != valid
    # validation does not depend on the train cap
    assert get_task("gsm8k", {"data": folder, "n_valid": 5}).load_split("validation") == valid
    assert valid[0].answer == str(int(valid[0].prompt.split("q")[1].split("?")[0]))


def test_gsm8k_scoring_normalizes_numbers(tmp_path):
    task = get_task("gsm8k", {"data": str(fake_gsm8k(tmp_path / "g")), "n_valid": 5})
    ex = task.load_split("test")[0]
    assert ex.answer == "1000"
    assert task.is_correct(" So the total is 1000. #### $1,000.00\n\nQuestion: 3", ex)
    assert task.is_correct(" The answer is: 1,000", ex)
    assert not task.is_correct(" #### 100", ex)
    assert not task.is_correct(" I do not know", ex)


def test_gsm8k_bad_local_data_names_file_and_line(tmp_path):
    folder = fake_gsm8k(tmp_path / "g")
    lines = (folder / "train.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"question": "q"})
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"train\.jsonl line 3: missing field 'answer'"):
        get_task("gsm8k", {"data": str(folder), "n_valid": 5}).load_split("train")
    with pytest.raises(UserError, match="GSM8K folder not found"):
        get_task("gsm8k", {"data": str(tmp_path / "missing")}).load_split("train")


def hub_rows(records):
    import datasets

    return datasets.Dataset.from_list(records)


@pytest.fixture()
def fake_hub(monkeypatch, shared_data):
    """`datasets.load_dataset` answering from local copies in the hub's schema."""
    import datasets

    calls = []
    gsm = {s: shared_data / "gsm8k" / f"{s}.jsonl" for s in ("train", "test")}
    metamath = [
        {"type": "GSM_Rephrased", "query": "What is 2 + 3?", "original_question": "",
         "response": "2 + 3 = 5.\nThe answer is: 5"},
        {"type": "MATH_AnsAug", "query": "Half of 1?", "original_question": "",
         "response": "It is $\\frac{1}{2}$.\nThe answer is: \\frac{1}{2}"},
        {"type": "GSM_SV", "query": "Too long?", "original_question": "",
         "response": "x" * METAMATH_CHAR_LIMIT},
    ]  # fmt: skip

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if path == "openai/gsm8k" and name == "main":
            records = [json.loads(line) for line in gsm[split].read_text().splitlines()]
            return hub_rows(records)
        if path == "meta-math/MetaMathQA" and split == "train":
            return hub_rows(metamath)
        raise FileNotFoundError(f"Couldn't find '{path}' on the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_gsm8k_from_hub_matches_local(fake_hub, shared_data):
    hub = get_task("gsm8k", {"n_test": 30})
    local = get_task("gsm8k", {"data": str(shared_data / "gsm8k"), "n_test": 30})
    for split in SPLITS:
        assert hub.load_split(split) == local.load_split(split)
    assert ("openai/gsm8k", "main", "test") in fake_hub
    assert hub.describe()["data"] == "hub:openai/gsm8k/main"


def test_metamathqa_from_hub_trains_on_metamath_tests_on_gsm8k(fake_hub, shared_data):
    task = get_task("metamathqa", {"gsm8k_data": str(shared_data / "gsm8k")})
    train = task.load_split("train")
    assert [ex.answer for ex in train] == ["5", "\\frac{1}{2}"]  # the long one is filtered
    assert train[0].prompt == "Question: What is 2 + 3? Think step by step.\nAnswer:"
    assert train[0].target == " 2 + 3 = 5.\nThe answer is: 5"
    gsm8k = get_task("gsm8k", {"data": str(shared_data / "gsm8k")})
    assert task.load_split("validation") == gsm8k.load_split("validation")
    assert task.load_split("test") == gsm8k.load_split("test")
    info = task.describe()
    assert info["data"] == "hub:meta-math/MetaMathQA" and info["char_limit"] == 1300
    assert ("meta-math/MetaMathQA", None, "train") in fake_hub


def test_metamathqa_local_json_and_jsonl(tmp_path, shared_data):
    records = [
        {"type": "GSM_AnsAug", "query": f"What is {i} + 1?", "original_question": "",
         "response": f"{i} + 1 = {i + 1}.\nThe answer is: {i + 1}"}
        for i in range(40)
    ]  # fmt: skip
    (tmp_path / "mm.json").write_text(json.dumps(records, indent=1))
    write_jsonl(tmp_path / "mm.jsonl", records)
    gsm = str(shared_data / "gsm8k")
    tasks = [
        get_task("metamathqa", {"data": str(tmp_path / name), "gsm8k_data": gsm, "n_train": 8})
        for name in ("mm.json", "mm.jsonl")
    ]
    assert tasks[0].load_split("train") == tasks[1].load_split("train")
    train = tasks[0].load_split("train")
    assert len(train) == 8 and all(int(ex.answer) == int(ex.prompt.split()[3]) + 1 for ex in train)
    assert all(tasks[0].is_correct(ex.target, ex) for ex in train)


def test_metamathqa_bad_local_file(tmp_path, shared_data):
    (tmp_path / "mm.json").write_text(json.dumps([{"query": "q", "response": "r"}, {"query": "q"}]))
    task = get_task("metamathqa", {"data": str(tmp_path / "mm.json"),
                                   "gsm8k_data": str(shared_data / "gsm8k")})  # fmt: skip
    with pytest.raises(UserError, match=r"mm\.json line 2: missing field 'response'"):
        task.load_split("train")


def test_hub_failure_is_user_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="could not load openai/gsm8k.*ConnectionError: no "
                                        "network; pass a local copy with --data"):
        get_task("gsm8k").load_split("test")


def test_unreachable_hub_is_said_once_in_one_line_without_trying_the_client(monkeypatch):
    import socket

    import datasets

    from peftbench.tasks import hub

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    tries = []

    def unreachable(address, timeout):
        tries.append(address)
        raise OSError(101, "Network is unreachable")

    def never(*args, **kwargs):
        raise AssertionError("the hub client must not be tried (its retries take a minute)")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", never)
    hub.hub_problem.cache_clear()
    try:
        for _ in range(2):
            with pytest.raises(UserError) as caught:
                get_task("gsm8k").load_split("test")
            assert str(caught.value) == (
                "could not load openai/gsm8k (main, train): the Hugging Face hub (huggingface.co) "
                "is unreachable (Network is unreachable); pass a local copy with --data or the "
                "task option data=PATH")
        assert tries == [("huggingface.co", 443)]  # probed once per process
    finally:
        hub.hub_problem.cache_clear()
