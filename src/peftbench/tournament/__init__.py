"""A fair tournament: many techniques, one model and task, the same budget for each.

    plan ─ (optional) calibration ─ learning-rate search ─ choose on validation ─ final seeds
         ─ table with the Pareto-optimal techniques marked

Fairness is what paper comparisons lack, so it is built into the specs themselves:

- every run of a tournament shares the model, task, data order (a function of the seed),
  steps, batch, sequence length, evaluation and hardware; only technique and rate differ;
- every technique gets the same tuning budget: a log-spaced learning-rate grid around its own
  default (``auto``) or a grid the user gives, run with the search seed;
- search runs never score the test split (``eval_test=False`` is part of their spec), so test
  cannot influence which rate is chosen; the rate with the best **validation** score wins;
- the winning rate is re-run with ``seeds`` fresh seeds (never the search seed, so the
  reported runs played no part in the choice); their test scores give mean and 95% CI.

Successive halving (``halving=True``) runs each technique's rates to rungs of growing length and
keeps the best ``1/eta`` of them (by validation) at every rung. It halves within a technique,
not across techniques: a technique that starts slowly still gets its best rate tuned.

Resume comes from content hashes: every run's result file is named by the hash of its spec, so
a repeated command skips finished runs (success, or a deterministic failure such as a NaN) and
redoes the rest (timed out, or killed with the tournament).

Its modules, each importing only those listed above it:

- `executors`: where the runs execute (worker processes, a Ray cluster, or in-process);
- `plan`: the config, the specs of search and final runs, the plan (techniques, rates, rungs);
- `outcome`: what a tournament found, per technique;
- `storage`: the folder: finished results (resume), the lock, leftovers, ``tournament.json``;
- `runner`: choosing on validation, and `Tournament`, which runs a plan with an executor;
- `estimate`: a calibration run and the plan's time estimate;
- `suite`: a whole suite (``--task glue:all``): one tournament per task, and ``suite.json``.
"""

from __future__ import annotations

from peftbench.tournament.estimate import (
    Calibration,
    calibrate,
    estimate_record,
    estimate_seconds,
    extension_seconds,
)
from peftbench.tournament.executors import RunRecord
from peftbench.tournament.outcome import TechniqueOutcome, TournamentOutcome
from peftbench.tournament.plan import (
    BUDGETS,
    PRESETS,
    Plan,
    TournamentConfig,
    final_spec,
    make_plan,
    resolve_methods,
    search_spec,
)
from peftbench.tournament.runner import Hooks, Tournament, keep_best, validation_key
from peftbench.tournament.storage import (
    FINISHED,
    FolderLock,
    existing_results,
    remove_leftovers,
    write_manifest,
)

__all__ = [
    "BUDGETS",
    "FINISHED",
    "PRESETS",
    "Calibration",
    "FolderLock",
    "Hooks",
    "Plan",
    "RunRecord",
    "TechniqueOutcome",
    "Tournament",
    "TournamentConfig",
    "TournamentOutcome",
    "calibrate",
    "estimate_record",
    "estimate_seconds",
    "extension_seconds",
    "existing_results",
    "final_spec",
    "keep_best",
    "make_plan",
    "remove_leftovers",
    "resolve_methods",
    "search_spec",
    "validation_key",
    "write_manifest",
]
