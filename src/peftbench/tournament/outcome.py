"""What a tournament found: each technique's search runs, chosen rate and final runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.engine.results import STATUS_SUCCESS
from peftbench.tournament.executors.base import RunRecord
from peftbench.tournament.plan import Plan


@dataclass
class TechniqueOutcome:
    """One technique's path through the tournament."""

    method: str
    search: list[RunRecord] = field(default_factory=list)
    chosen_lr: float | None = None
    finals: list[RunRecord] = field(default_factory=list)
    note: str = ""
    #: rates added beyond the planned grid because the best one sat at its edge, in order
    extended: list[float] = field(default_factory=list)


@dataclass
class TournamentOutcome:
    """All records of a tournament, by technique."""

    plan: Plan
    techniques: dict[str, TechniqueOutcome]
    out_dir: Path
    seconds: float = 0.0
    #: lines the tournament said while running (e.g. results run again after an input changed)
    notes: list[str] = field(default_factory=list)
    #: the plan's time estimate before it ran (`estimate.estimate_record`; None: not calibrated)
    estimate: dict[str, Any] | None = None

    def all_records(self) -> list[RunRecord]:
        """Every search and final record."""
        return [r for t in self.techniques.values() for r in (*t.search, *t.finals)]

    def failed(self) -> list[RunRecord]:
        """Runs that failed or timed out."""
        return [r for r in self.all_records() if r.status != STATUS_SUCCESS]

