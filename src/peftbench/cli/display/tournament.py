"""What `run` and `tournament` print: the plan, the bars while runs go, the results table and
the verdict behind it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from peftbench.cli.display.tables import Grid
from peftbench.engine.progress import make_progress


def run_summary_line(info: dict[str, Any]) -> str:
    """One finished run's figures as one Rich-markup line."""

    def fmt(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, int | float) else "n/a"

    return (f"[bold green]done:[/] test {info.get('test_metric')} "
            f"{fmt(info.get('test_score'), '.3f')}"
            f" (base {fmt(info.get('base_test_score'), '.3f')}), "
            f"train {fmt(info.get('train_time'), '.0f')} s, "
            f"{fmt(info.get('tokens_per_sec'), '.0f')} tok/s, "
            f"peak memory {fmt((info.get('peak_memory') or 0) / 2**20, '.0f')} MiB, "
            + (f"drift {fmt(info.get('drift'), '.3f')}, " if "drift" in info else
               f"forgetting {fmt(info.get('forgetting'), '+.3f')}, ") +
            f"trainable {fmt(info.get('num_trainable_params'), ',')}")



def plan_table(plan: Any) -> Grid:
    """The grid before it runs: techniques and the rates each will try."""
    cfg = plan.cfg
    return Grid(["technique", "learning rates searched", "note"],
                [list(row) for row in plan.rows()],
                title=f"Tournament plan: {cfg.model} on {cfg.task}")


def plan_summary(plan: Any, calibration: Any, out: Path) -> str:
    """Run counts, the time estimate and where results go, as one paragraph."""
    from peftbench.tournament import estimate_seconds, extension_seconds

    rungs = " → ".join(str(s) for s in plan.rungs)
    text = (f"{plan.search_runs()} search runs (steps per rung: {rungs}), "
            f"{plan.final_runs()} final runs ({plan.cfg.seeds} seed(s) each) → {out}/")
    if calibration is not None:
        planned = estimate_seconds(plan, calibration)
        extra = extension_seconds(plan, calibration)
        upper = f", up to {_duration(planned + extra)} if grids extend" if extra else ""
        text += (f"; estimated {_duration(planned)}{upper} "
                 f"(calibration: {calibration.step:.2f} s/step, "
                 f"{calibration.validation:.1f} s/validation, "
                 f"{calibration.startup:.1f} s start-up per run)")
    return text


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class TournamentDisplay:
    """Rich bars: one overall (runs done / failed / remaining, ETA), one per running run."""

    def __init__(self, enabled: bool) -> None:
        self.progress = make_progress(enabled)
        self.overall: Any = None
        self.current: dict[str, Any] = {}
        self.done = self.failed = 0
        self.total = 0

    def __enter__(self) -> TournamentDisplay:
        self.progress.__enter__()
        self.overall = self.progress.add_task("tournament", total=0, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def stage(self, name: str, total: int) -> None:
        """A stage adds its runs to the overall bar."""
        self.total += total
        self.progress.update(self.overall, total=self.total, description=f"tournament: {name}")
        self._info()

    def started(self, spec: Any) -> None:
        """A bar for the new run."""
        self.current[spec.content_hash()] = self.progress.add_task(
            f"  {spec.display_name()}", total=spec.train.steps_to_run(), info="starting")

    def event(self, spec: Any, event: dict[str, Any]) -> None:
        """Show the run's current phase (train, validation, test) and its progress."""
        task = self.current.get(spec.content_hash())
        if task is None or "description" not in event:
            return
        self.progress.update(task, total=event.get("total") or 1,
                             completed=event.get("completed", 0),
                             info=f"{event['description']} {event.get('info') or ''}".strip())

    def finished(self, record: Any) -> None:
        """Count the run; drop its bar."""
        self.done += 1
        self.failed += record.status != "success"
        task = self.current.pop(record.spec.content_hash(), None)
        if task is not None:
            self.progress.remove_task(task)
        self.progress.update(self.overall, completed=self.done)
        self._info()

    def note(self, message: str) -> None:
        """One line above the bars (on stderr), e.g. results run again after an edit."""
        self.progress.console.print(f"note: {message}", markup=False, highlight=False,
                                    soft_wrap=True)

    def _info(self) -> None:
        remaining = self.total - self.done
        self.progress.update(self.overall, info=f"{self.done - self.failed} ok, {self.failed} "
                             f"failed, {remaining} to go")


def results_table(outcome: Any) -> Grid:
    """Per technique: chosen rate, test score with its 95% interval, memory, time, size,
    parameters, forgetting, and the techniques it beats significantly (paired on the test
    items); ★ when nothing beats it beyond the noise (test score ↑ vs peak memory ↓), ☆ when
    its edge is within the noise. Failed techniques keep their whole reason."""
    from peftbench.analysis import get_metric
    from peftbench.analysis.pareto import TIE_TOLERANCE

    verdict = tournament_verdict(outcome)
    aggs, base = verdict["aggregates"], verdict["base_test_score"]
    base_note = f"; base model test score {base:.3f}" if base is not None else ""
    headers = ["", "technique", "best lr", *[get_metric(m).label for m in METRICS_SHOWN],
               "significantly better than", "seeds"]
    grid = Grid(headers, title="Tournament results (final runs; rates chosen on validation)",
                caption=f"test score [95% interval from {verdict['items']} test items and the "
                "seeds]; ★ nothing beats it beyond the noise on test score ↑ and peak memory ↓ "
                f"(scores paired item by item, Holm-corrected; memory within "
                f"{TIE_TOLERANCE['peak_memory']:.1%} ties); ☆ its edge is within the noise; "
                f"peak memory = the training phase's (weights + trainable state + "
                f"activations){base_note}",
                right=set(range(2, len(headers))))
    grid.caption = "".join(f"Note: {line}. " for line in verdict["caveats"]) + grid.caption
    for method, tech in sorted(outcome.techniques.items(),
                               key=lambda kv: _sort_key(aggs.get(kv[0]))):
        agg = aggs.get(method)
        if agg is None or not agg.n:
            grid.rows.append(["✗", method, _lr(tech.chosen_lr), f"failed: {_failure(tech)}",
                              *[""] * len(METRICS_SHOWN), "0"])
            continue
        mark = {"frontier": "★", "within noise": "☆"}.get(verdict["status"].get(method, ""), "")
        grid.rows.append([mark, method, _lr(tech.chosen_lr) + _extension(tech), *_cells(agg),
                          ", ".join(verdict["beats"].get(method, [])) or "—", str(agg.n)])
    return grid


def tournament_verdict(outcome: Any) -> dict[str, Any]:
    """What the results table shows, as data: each technique's aggregate over its final runs,
    its frontier status ("frontier", "within noise", "dominated"; none when every technique
    scored the same), whom it beats significantly, the number of test items, the base model's
    test score (None when not measured) and what the scores cannot tell (caveats)."""
    from peftbench.analysis import aggregate, frontier_status, parse_metric_spec
    from peftbench.analysis.caveats import all_tied, score_caveats
    from peftbench.analysis.pareto import score_comparisons
    from peftbench.engine.results import summarize

    runs = [summarize(r.result, str(r.path)) for t in outcome.techniques.values()
            for r in t.finals]
    aggs = {a.technique: a for a in aggregate(runs, level="technique")}
    specs = [parse_metric_spec("peak_memory"), parse_metric_spec("test_score")]
    ordered = [aggs[m] for m in outcome.techniques if m in aggs and aggs[m].n]
    status = {} if all_tied(ordered) else dict(zip(
        [a.technique for a in ordered], frontier_status(ordered, specs), strict=True))
    comparisons = score_comparisons(ordered)
    beats = {a.technique: [ordered[j].technique for j in range(len(ordered))
                           if (i, j) in comparisons and comparisons[(i, j)].significant
                           and comparisons[(i, j)].difference > 0]
             for i, a in enumerate(ordered)}
    base = [r.train_info.get("base_test_score") for t in outcome.techniques.values()
            for r in t.finals if r.train_info.get("base_test_score") is not None]
    items = next((len(a.test_items[0]) for a in ordered if a.test_items), 0)
    return {"aggregates": aggs, "status": status, "beats": beats, "items": items,
            "base_test_score": base[0] if base else None, "caveats": score_caveats(ordered)}


def _failure(tech: Any) -> str:
    return tech.note or "; ".join(sorted({r.error for r in tech.finals if r.error})) or "no run"


METRICS_SHOWN = ["test_score", "peak_memory", "train_time", "file_size", "trainable_params",
                 "forgetting"]


def _cells(agg: Any) -> list[str]:
    """The shown metrics of one technique: intervals from the items, else ± over seeds."""
    from peftbench.analysis.pareto import cell_text

    return [cell_text(agg, name) for name in METRICS_SHOWN]


def _sort_key(agg: Any) -> float:
    value = agg.value("test_score") if agg is not None and agg.n else None
    return -value if value is not None else math.inf


def _lr(lr: float | None) -> str:
    return f"{lr:g}" if lr is not None else "—"


def _extension(tech: Any) -> str:
    """' (grid +1)' when the search went past the planned grid's edge."""
    return f" (grid +{len(tech.extended)})" if getattr(tech, "extended", None) else ""

