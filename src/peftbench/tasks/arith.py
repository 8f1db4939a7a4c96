"""`arith`: synthetic multi-step arithmetic word problems with worked solutions.

A problem starts with a count of items and changes it a few times (buy, give away, multiply,
share out); the target shows each step as one equation and ends in GSM8K style, e.g.::

    Question: Ava has 12 shells. Ava finds 7 more shells. Then Ava has 3 times as many shells
    as before. How many shells does Ava have now? Think step by step.
    Answer: 12 + 7 = 19. 19 * 3 = 57. #### 57

Everything comes from the seed. Each split has its own random stream, and validation and train
skip any question already used by an earlier split, so the splits are disjoint and the test set
stays the same when ``n_train`` or ``n_valid`` change. ``difficulty`` picks a `Level`;
``steps``, ``max_number`` and ``max_factor`` override single settings of it for calibration.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from peftbench.errors import UserError
from peftbench.tasks.answers import extract_final_number
from peftbench.tasks.base import Example, TaskDoc, TaskOption, document_task, register
from peftbench.tasks.options import TaskOptions
from peftbench.tasks.prepared import PreparedTask

PROMPT = "Question: {question} Think step by step.\nAnswer:"


@dataclass(frozen=True)
class Level:
    """How hard the problems are: operations per problem and the size of the numbers."""

    steps: int
    max_number: int  # largest starting count and largest added/removed amount
    max_factor: int  # largest multiplier/divisor; below 2 means only + and -


LEVELS: dict[int, Level] = {
    1: Level(steps=1, max_number=20, max_factor=0),
    2: Level(steps=2, max_number=30, max_factor=5),
    3: Level(steps=3, max_number=50, max_factor=6),
    4: Level(steps=4, max_number=200, max_factor=12),
    5: Level(steps=5, max_number=1000, max_factor=20),
}
DEFAULT_DIFFICULTY = 3
MAX_MISSES = 2000

NAMES = (
    "Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonah",
    "Kira", "Liam", "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara",
)  # fmt: skip
ITEMS = (
    "apples", "marbles", "stickers", "pencils", "shells", "stamps", "cookies", "coins",
    "books", "cards", "beads", "eggs", "flowers", "toy cars", "buttons", "balloons",
)  # fmt: skip
TEMPLATES: dict[str, tuple[str, ...]] = {
    "+": (
        "{name} buys {n} more {item}.",
        "{name} finds {n} more {item}.",
        "A friend gives {name} {n} more {item}.",
    ),
    "-": (
        "{name} gives away {n} {item}.",
        "{name} loses {n} {item}.",
        "{name} sells {n} {item}.",
    ),
    "*": (
        "Then {name} has {n} times as many {item} as before.",
        "{name} collects more until there are {n} times as many {item}.",
    ),
    "/": (
        "{name} splits the {item} into {n} equal groups and keeps one group.",
        "{name} shares the {item} equally among {n} people, keeping one share.",
    ),
}


@dataclass(frozen=True)
class Problem:
    """One generated problem: the question, its equations and the final answer."""

    question: str
    steps: tuple[str, ...]
    answer: int

    def example(self) -> Example:
        """The problem as a prompt/target pair in the PEFT suite's format."""
        target = " " + " ".join(self.steps) + f" #### {self.answer}"
        return Example(PROMPT.format(question=self.question), target, str(self.answer))


def _choose_step(rng: random.Random, value: int, level: Level) -> tuple[str, int] | None:
    """A random operation and operand that keep the running count a positive whole number."""
    cap = level.max_number * max(level.max_factor, 2) * 2
    options: list[tuple[str, int]] = []
    if value + 2 <= cap:
        options.append(("+", rng.randint(2, min(level.max_number, cap - value))))
    if value >= 3:
        options.append(("-", rng.randint(2, min(level.max_number, value - 1))))
    if level.max_factor >= 2 and value * 2 <= cap:
        options.append(("*", rng.randint(2, min(level.max_factor, cap // value))))
    divisors = [k for k in range(2, level.max_factor + 1) if value % k == 0 and value > k]
    if divisors:
        options.append(("/", rng.choice(divisors)))
    return rng.choice(options) if options else None


def _apply(op: str, a: int, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]


def generate_problem(rng: random.Random, level: Level) -> Problem:
    """One random problem at ``level`` (``level.steps`` operations)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(3, max(3, level.max_number))
    sentences = [f"{name} has {value} {item}."]
    steps = []
    for _ in range(level.steps):
        choice = _choose_step(rng, value, level)
        if choice is None:  # cannot happen while value >= 3, kept as a guard
            break
        op, operand = choice
        result = _apply(op, value, operand)
        sentences.append(rng.choice(TEMPLATES[op]).format(name=name, n=operand, item=item))
        steps.append(f"{value} {op} {operand} = {result}.")
        value = result
    sentences.append(f"How many {item} does {name} have now?")
    return Problem(" ".join(sentences), tuple(steps), value)


def generate_split(seed: int, split: str, n: int, level: Level, taken: set[str]) -> list[Problem]:
    """``n`` problems with distinct questions not in ``taken`` (which is updated)."""
    rng = random.Random(f"arith:{seed}:{split}")
    problems: list[Problem] = []
    misses = 0  # duplicates in a row: many mean the level's question space is used up
    while len(problems) < n:
        problem = generate_problem(rng, level)
        if problem.question in taken:
            misses += 1
            if misses > MAX_MISSES:
                raise UserError(
                    f"task arith: {level} cannot produce {n} distinct {split} questions; "
                    "raise the difficulty or lower the split sizes"
                )
            continue
        misses = 0
        taken.add(problem.question)
        problems.append(problem)
    return problems


class ArithTask(PreparedTask):
    """Synthetic arithmetic word problems; exact match of the final number."""

    name = "arith"
    kind = "generation"
    stop_strings = ("\n",)  # solutions are one line
    metric = "accuracy"

    def __init__(self, level: Level, difficulty: int, seed: int, sizes: dict[str, int]) -> None:
        self.level, self.difficulty, self.seed, self.sizes = level, difficulty, seed, sizes
        self.max_new_tokens = 16 * level.steps + 16

    def build_splits(self) -> dict[str, list[Example]]:
        """Test first, then validation, then train, each avoiding the earlier questions."""
        taken: set[str] = set()
        out = {}
        for split in ("test", "validation", "train"):
            problems = generate_split(self.seed, split, self.sizes[split], self.level, taken)
            out[split] = [p.example() for p in problems]
        return out

    def source(self) -> dict[str, Any]:
        """Generator settings: difficulty, the resolved level, seed and requested sizes."""
        return {
            "source": "synthetic",
            "difficulty": self.difficulty,
            "level": vars(self.level),
            "seed": self.seed,
        }

    def extract_answer(self, generated: str) -> str:
        """The number after ``####`` (else the last number), normalized."""
        return extract_final_number(generated)


document_task("arith", TaskDoc(
    summary="synthetic multi-step arithmetic word problems with worked steps and GSM8K-style "
            "'#### 42' answers, generated from the seed (no download)",
    metric="exact match of the final number",
    options=(
        TaskOption("difficulty", DEFAULT_DIFFICULTY, "1-5: operations per problem and the size "
                   "of the numbers (1: one + or -, 5: five steps with numbers up to 1000)"),
        TaskOption("steps", None, "operations per problem (default: the difficulty's)"),
        TaskOption("max_number", None, "largest starting and added number (default: the "
                   "difficulty's)"),
        TaskOption("max_factor", None, "largest multiplier/divisor, below 2 for + and - only "
                   "(default: the difficulty's)"),
        TaskOption("seed", 0, "seed of the generated problems"),
        TaskOption("n_train", 2000, "training problems"),
        TaskOption("n_valid", 100, "validation problems"),
        TaskOption("n_test", 200, "test problems"),
    ),
    example="--task arith --task-opt difficulty=2 --task-opt n_test=100",
))


@register("arith")
def make_arith(argument: str, options: dict[str, Any]) -> ArithTask:
    """Build `ArithTask` from options: difficulty, steps, max_number, max_factor, seed, n_*."""
    if argument:
        raise UserError(f"task arith takes no argument, got 'arith:{argument}'")
    opts = TaskOptions("arith", options)
    difficulty = opts.integer("difficulty", DEFAULT_DIFFICULTY, minimum=1)
    if difficulty not in LEVELS:
        raise UserError(f"task arith: difficulty must be one of {sorted(LEVELS)}, got {difficulty}")
    level = LEVELS[difficulty]
    overrides = {
        "steps": opts.integer("steps", None, minimum=1),
        "max_number": opts.integer("max_number", None, minimum=3),
        "max_factor": opts.integer("max_factor", None, minimum=0),
    }
    level = replace(level, **{k: v for k, v in overrides.items() if v is not None})
    seed = opts.integer("seed", 0)
    sizes = {
        "train": opts.integer("n_train", 2000, minimum=1),
        "validation": opts.integer("n_valid", 100, minimum=1),
        "test": opts.integer("n_test", 200, minimum=1),
    }
    opts.finish()
    if None in sizes.values():
        raise UserError("task arith: n_train, n_valid and n_test need a number (not 'all')")
    return ArithTask(level, difficulty, seed or 0, sizes)  # type: ignore[arg-type]
