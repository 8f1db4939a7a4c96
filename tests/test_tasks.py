"""Tasks: registry, options, answer extraction, sampling and the synthetic `arith` task."""

from __future__ import annotations

import operator
import re

import pytest

from peftbench.errors import UserError
from peftbench.tasks import SPLITS, get_task, task_names
from peftbench.tasks.answers import extract_final_number, match_label, normalize_number
from peftbench.tasks.arith import LEVELS, PROMPT
from peftbench.tasks.sampling import carve, sample_indices, seeded_order

SMALL = {"n_train": 300, "n_valid": 40, "n_test": 60}


def test_registry_lists_every_family():
    assert set(task_names()) >= {"arith", "gsm8k", "metamathqa", "sst2", "jsonl", "csv"}


def test_unknown_task_and_option_are_user_errors():
    with pytest.raises(UserError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(UserError, match="unknown option.*n_trian"):
        get_task("arith", {"n_trian": 10})
    with pytest.raises(UserError, match="'n_train' must be an integer"):
        get_task("arith", {"n_train": "many"})
    with pytest.raises(UserError, match="difficulty must be one of"):
        get_task("arith", {"difficulty": 9})


def test_options_accept_strings_from_the_command_line():
    task = get_task("arith", {"n_train": "12", "n_valid": "3", "n_test": "4", "seed": "5"})
    assert [len(task.load_split(s)) for s in SPLITS] == [12, 3, 4]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("72", "72"), ("72.0", "72"), ("$1,000", "1000"), ("1,234.50", "1234.5"), ("-3", "-3"),
     ("5.", "5"), ("0.25", "0.25"), (" 18 ", "18"), ("\\frac{1}{2}", "\\frac{1}{2}")],
)  # fmt: skip
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        (" 3 + 4 = 7. #### 7\nQuestion: 9 apples #### 9", "7"),
        ("She pays $1,200.00 in total.\n#### $1,200.00", "1200"),
        ("So 5 * 2 = 10.\nThe answer is: 10", "10"),
        ("first 3 then 4 then 12", "12"),
        ("no number at all", ""),
        ("#### nothing", ""),
        ("#### -4", "-4"),
    ],
)
def test_extract_final_number(generated, expected):
    assert extract_final_number(generated) == expected


def test_match_label_prefers_whole_words_and_longest():
    labels = ("neg", "negative", "positive")
    assert match_label(" Negative.", labels) == "negative"
    assert match_label(" neg", labels) == "neg"
    assert match_label(" positively", labels) == ""
    assert match_label("", labels) == ""


def test_sampling_is_seeded_nested_and_ordered():
    assert seeded_order(10, 3) == seeded_order(10, 3)
    assert seeded_order(10, 3) != seeded_order(10, 4)
    small, large = sample_indices(100, 10, 1), sample_indices(100, 30, 1)
    assert set(small) <= set(large) and small == sorted(small)
    assert sample_indices(5, None, 0) == list(range(5))
    a, b, rest = carve(20, [3, 5], seed=2)
    assert len(a) == 3 and len(b) == 5 and sorted(a + b + rest) == list(range(20))
    assert carve(20, [3, 9], seed=2)[0] == a  # the first part ignores later sizes


# --- arith ----------------------------------------------------------------------------------

_WORDS = [  # phrase in the question -> operation; recomputed independently of the generator
    (re.compile(r"(?:buys|finds|gives \w+) (\d+) more"), operator.add),
    (re.compile(r"(?:gives away|loses|sells) (\d+) "), operator.sub),
    (re.compile(r"(\d+) times as many"), operator.mul),
    (re.compile(r"(?:into|among) (\d+) "), operator.floordiv),
]
_STEP = re.compile(r"(\d+) ([-+*/]) (\d+) = (\d+)\.")


def solve_question(question: str) -> int:
    """Recompute a question's answer from its words alone."""
    sentences = question.split(". ")
    value = int(re.match(r"\w+ has (\d+) ", sentences[0]).group(1))
    for sentence in sentences[1:-1]:
        for pattern, op in _WORDS:
            found = pattern.search(sentence + " ")
            if found:
                operand = int(found.group(1))
                if op is operator.floordiv:
                    assert value % operand == 0, question
                value = op(value, operand)
                break
        else:
            raise AssertionError(f"unrecognized sentence: {sentence!r}")
    return value


def check_steps(target: str) -> int:
    """Check every equation of a target and that each starts from the previous result."""
    assert target.startswith(" ")
    steps, _, final = target.rpartition(" #### ")
    equations = _STEP.findall(steps)
    assert len(equations) == steps.count("=") >= 1
    ops = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
    previous = None
    for a, op, b, result in equations:
        assert ops[op](int(a), int(b)) == int(result), target
        assert previous is None or int(a) == previous, target
        previous = int(result)
    assert int(final) == previous
    return previous


@pytest.mark.parametrize("difficulty", sorted(LEVELS))
def test_arith_answers_are_right(difficulty):
    task = get_task("arith", {"difficulty": difficulty, **SMALL})
    for split in SPLITS:
        for ex in task.load_split(split):
            question = ex.prompt.removeprefix("Question: ").split(" Think step by step.")[0]
            assert ex.prompt == PROMPT.format(question=question)
            answer = solve_question(question)
            assert check_steps(ex.target) == answer == int(ex.answer)
            assert len(re.findall(r"=", ex.target)) == LEVELS[difficulty].steps
            assert answer > 0
            assert task.is_correct(ex.target, ex)
            assert not task.is_correct(f" #### {answer + 1}", ex)


def test_arith_splits_sizes_disjoint_and_deterministic():
    task = get_task("arith", SMALL)
    splits = {s: task.load_split(s) for s in SPLITS}
    assert [len(splits[s]) for s in SPLITS] == [300, 40, 60]
    prompts = [set(ex.prompt for ex in splits[s]) for s in SPLITS]
    assert sum(map(len, prompts)) == 400  # unique within and across splits
    again = get_task("arith", SMALL)
    assert all(again.load_split(s) == splits[s] for s in SPLITS)
    other = get_task("arith", {**SMALL, "seed": 1})
    assert other.load_split("test") != splits["test"]
    assert other.describe()["fingerprint"] != task.describe()["fingerprint"]


def test_arith_test_set_does_not_depend_on_train_size():
    small = get_task("arith", SMALL)
    big = get_task("arith", {**SMALL, "n_train": 900, "n_valid": 80})
    assert small.load_split("test") == big.load_split("test")


def test_arith_default_targets_are_short():
    task = get_task("arith", {"n_train": 200, "n_valid": 1, "n_test": 1})
    lengths = [len(ex.target.split()) for ex in task.load_split("train")]
    # whitespace words, about 1.5-2 tokens each for a small LM: ~30-60 tokens
    assert 10 <= sum(lengths) / len(lengths) <= 30
    assert task.max_new_tokens >= 2 * max(lengths)


def test_arith_difficulty_overrides_and_describe():
    task = get_task("arith", {"difficulty": 1, "steps": 2, "max_number": 9, **SMALL})
    info = task.describe()
    assert info["level"] == {"steps": 2, "max_number": 9, "max_factor": 0}
    assert info["difficulty"] == 1 and info["seed"] == 0
    assert info["sizes"] == {"train": 300, "validation": 40, "test": 60}
    assert info["kind"] == "generation" and info["max_new_tokens"] == task.max_new_tokens
    for ex in task.load_split("train"):
        assert all(op in "+-" for _, op, _, _ in _STEP.findall(ex.target))


def test_arith_too_many_questions_for_tiny_level_is_user_error():
    with pytest.raises(UserError, match="cannot produce"):
        get_task("arith", {"difficulty": 1, "max_number": 3, "n_train": 5000}).load_split("train")
