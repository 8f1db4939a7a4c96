"""A few wrong answers per technique, read from the ``.answers.jsonl`` files saved beside the
results: what a report and the app show so that a score can be understood, not only read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from peftbench.analysis.aggregation import Aggregate
from peftbench.engine.answers import Answer, read_answers

#: wrong answers shown per technique
SHOWN = 3
#: characters of a prompt or an output shown (a prompt keeps its end: the question)
CLIP = 160


def wrong_answers(agg: Aggregate, limit: int = SHOWN) -> tuple[str, list[Answer]]:
    """The first ``limit`` wrong answers of the first run of ``agg`` that saved its answers,
    and that file's path ("" and [] when no run saved any)."""
    for run in agg.runs:
        if run.answers_path and Path(run.answers_path).is_file():
            wrong = [a for a in read_answers(run.answers_path) if not a.correct]
            return run.answers_path, wrong[:limit]
    return "", []


def failure_rows(aggs: Sequence[Aggregate], limit: int = SHOWN) -> list[dict[str, str]]:
    """Rows (technique, prompt, reference, output, extracted, file) of a few wrong answers of
    each technique in ``aggs``, for the report's and the app's tables."""
    rows = []
    for agg in aggs:
        path, wrong = wrong_answers(agg, limit)
        for answer in wrong:
            rows.append({"technique": agg.label, "item": str(answer.index),
                         "prompt": clip(answer.prompt, keep_end=True),
                         "reference": clip(answer.reference), "output": clip(answer.output),
                         "extracted": answer.answer or "(nothing)", "file": Path(path).name})
    return rows


def clip(text: str, keep_end: bool = False, limit: int = CLIP) -> str:
    """``text`` on one line, cut to ``limit`` characters (from its end when ``keep_end``)."""
    flat = " ⏎ ".join(line for line in text.strip().splitlines() if line.strip())
    if len(flat) <= limit:
        return flat
    return "…" + flat[-limit:] if keep_end else flat[:limit] + "…"


def failures_markdown(aggs: Sequence[Aggregate], limit: int = SHOWN) -> str:
    """A few wrong answers per technique as a Markdown table ("" when none was saved)."""
    rows = failure_rows(aggs, limit)
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(text: str) -> str:
        return text.replace("|", "\\|") or " "

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"
