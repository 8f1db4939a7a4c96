"""What a tournament will run, before it runs: its config, the run specs, the plan.

`TournamentConfig` defines a tournament (equal configs give equal run specs); `search_spec` and
`final_spec` turn it into the specs of tuning and reported runs, and `make_plan` into the grid of
techniques, learning rates and halving rungs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.errors import UserError

#: representative techniques, one per family: the habit (LoRA, additive low-rank), a
#: multiplicative scaling (IA3), an orthogonal rotation (OFT) and a prompt-only one (prompt
#: tuning); four, so that the quick budget fits about 10 minutes on a 2-core CPU
PRESETS: dict[str, list[str] | None] = {
    "quick": ["lora", "ia3", "oft", "prompt_tuning"],
    "full": None,  # every technique that applies to the model
    # "an adapter, or full fine-tuning that fits in the same memory?": adapters that save
    # memory against full-parameter training whose optimizer does (peftbench[full-ft])
    "memory": ["lora", "qlora", "lora_fa", "galore", "apollo", "badam", "freeze", "full"],
    # the image track on tiny-flux2: additive low-rank (LoRA), its Hadamard-product cousin
    # (LoHa), a multiplicative scaling (IA3) and an orthogonal rotation (OFT)
    "quick-image": ["lora", "loha", "ia3", "oft"],
}

#: what ``--preset NAME`` sets (options given explicitly win): techniques and a budget.
#: ``quick`` is sized for about 10 minutes with SmolLM2-135M on arith on a 2-core CPU (see
#: the README for the measured figures): two-step problems, which a few dozen steps of
#: fine-tuning visibly improve, one validation per run, and 120 test problems: enough for the
#: paired tests to separate the techniques that really differ (48 left ±0.14 intervals). One
#: grid extension at most, since short budgets tend to pick the top of a 2-point grid.
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"methods": "preset:quick", "steps": 24, "lr_points": 2, "lr_extend": 1,
              "eval_base": True, "train": {"eval_every": 24, "forgetting_samples": 8},
              "task_options": {"arith": {"difficulty": 2, "n_valid": 24, "n_test": 120}}},
    "full": {"methods": "preset:full"},
    "memory": {"methods": "preset:memory"},
    # the image track's embedded default (tiny-flux2 learning the built-in "sks digit"),
    # sized for about 10 minutes on a 2-core CPU; model and task apply when not given
    "quick-image": {"methods": "preset:quick-image", "model": "tiny-flux2",
                    "task": "dreambooth", "steps": 80, "lr_points": 3, "lr_extend": 1,
                    "eval_base": True, "train": {"eval_every": 80, "batch_size": 4}},
}


class TournamentConfig(BaseModel):
    """Everything that defines a tournament; equal configs give equal run specs."""

    model_config = ConfigDict(extra="forbid")

    model: str = "smollm2-135m"
    task: str = "arith"
    task_options: dict[str, Any] = Field(default_factory=dict)
    methods: list[str] = Field(default_factory=lambda: list(PRESETS["quick"] or []))
    targets: str | None = None
    general_text: str | None = None
    train: TrainParams = Field(default_factory=TrainParams)
    lr_grid: list[float] | None = Field(None, description="None = auto: around each default")
    lr_points: int = Field(3, ge=1, description="points of the auto grid")
    lr_step: float = Field(10 ** 0.5, gt=1, description="ratio between auto grid points")
    seeds: int = Field(1, ge=1, description="final runs of the chosen rate")
    search_seed: int = 0
    lr_extend: int = Field(2, ge=0, description="extra rates a technique may get when its "
                           "best validation rate sits at an edge of the grid")
    halving: bool = False
    eta: int = Field(3, ge=2, description="successive halving keeps 1/eta per rung")
    min_rung_steps: int = Field(4, ge=1)

    def learning_rates(self, default_lr: float) -> list[float]:
        """The rates searched for a technique whose default is ``default_lr``."""
        if self.lr_grid:
            return sorted(set(self.lr_grid))
        half = (self.lr_points - 1) / 2
        return [_round_lr(default_lr * self.lr_step ** (i - half)) for i in range(self.lr_points)]

    def edge_step(self, rates: list[float]) -> float:
        """The ratio to the next rate when a grid is extended past its edge: the grid's own
        spacing where it has one, else the auto grid's."""
        rates = sorted(rates)
        if len(rates) >= 2:
            return math.exp((math.log(rates[-1]) - math.log(rates[0])) / (len(rates) - 1))
        return self.lr_step

    def rungs(self) -> list[int]:
        """Step counts at which successive halving compares rates (the last is the full run)."""
        steps = self.train.max_steps
        if not self.halving:
            return [steps]
        out = [steps]
        while len(out) < self._max_rungs() and out[0] // self.eta >= self.min_rung_steps:
            out.insert(0, out[0] // self.eta)
        return out

    def _max_rungs(self) -> int:
        points = len(self.lr_grid) if self.lr_grid else self.lr_points
        return 1 + max(0, math.ceil(math.log(max(points, 1), self.eta)))

    def survivors(self, rates: int) -> int:
        """How many of ``rates`` compared at a rung go on to the next one."""
        return max(1, math.ceil(rates / self.eta))

    def rung_sizes(self, rates: int) -> list[tuple[int, int]]:
        """(steps, rates run) per rung for a technique that starts with ``rates`` rates."""
        sizes = []
        for steps in self.rungs():
            sizes.append((steps, rates))
            rates = self.survivors(rates)
        return sizes

    def final_seeds(self) -> list[int]:
        """Seeds of the final runs: fresh ones, never the search seed."""
        return [self.search_seed + 1 + i for i in range(self.seeds)]


def _round_lr(lr: float) -> float:
    return float(f"{lr:.3g}")


# --------------------------------------------------------------------------------------------
# Specs


def search_spec(cfg: TournamentConfig, method: str, lr: float, stop_after: int | None
                ) -> ExperimentSpec:
    """A tuning run: validation only (test never scored), no probes, the search seed."""
    train = cfg.train.model_copy(update={
        "lr": lr, "seed": cfg.search_seed, "eval_test": False, "eval_base": False,
        "forgetting_samples": 0, "measure_inference": False,
        "stop_after": stop_after if stop_after and stop_after < cfg.train.max_steps else None,
    })
    rung = f"-rung{stop_after}" if train.stop_after else ""
    return _spec(cfg, method, train, f"{method}-lr{lr:g}-search{rung}")


def final_spec(cfg: TournamentConfig, method: str, lr: float, seed: int) -> ExperimentSpec:
    """A reported run: the chosen rate, a fresh seed, test scored once, every probe on
    (and the base model scored on test too when ``cfg.train.eval_base``)."""
    train = cfg.train.model_copy(update={"lr": lr, "seed": seed, "eval_test": True,
                                         "stop_after": None})
    return _spec(cfg, method, train, f"{method}-lr{lr:g}-seed{seed}")


def _spec(cfg: TournamentConfig, method: str, train: TrainParams, name: str) -> ExperimentSpec:
    return ExperimentSpec(model=cfg.model, task=cfg.task, task_options=cfg.task_options,
                          method=method, targets=cfg.targets, general_text=cfg.general_text,
                          train=train, name=name)


# --------------------------------------------------------------------------------------------
# Plan


@dataclass
class Plan:
    """The grid a tournament will run, before it runs."""

    cfg: TournamentConfig
    methods: list[str]
    excluded: dict[str, str]  # technique -> why it does not apply to the model
    grids: dict[str, list[float]]
    rungs: list[int]

    def search_runs(self) -> int:
        """Search runs, every rung counted (halving stops most rates before the last one)."""
        return sum(n for grid in self.grids.values()
                   for _, n in self.cfg.rung_sizes(len(grid)))

    def search_steps(self) -> int:
        """Optimizer steps of all search runs (each rung run starts from scratch)."""
        return sum(steps * n for grid in self.grids.values()
                   for steps, n in self.cfg.rung_sizes(len(grid)))

    def final_runs(self) -> int:
        """Final runs: one per technique and seed."""
        return len(self.methods) * self.cfg.seeds

    def rows(self) -> list[tuple[str, str, str]]:
        """(technique, rates, note) lines for printing."""
        out = [(m, ", ".join(f"{lr:g}" for lr in self.grids[m]), "") for m in self.methods]
        out += [(m, "—", f"not applicable: {why}") for m, why in self.excluded.items()]
        return out


def resolve_methods(text: str | list[str], kind: str) -> tuple[list[str], dict[str, str]]:
    """Technique names from ``lora,dora``, ``all`` or ``preset:NAME``; those that cannot run
    on a ``kind`` model are set aside with the reason. Unknown names are a `UserError`."""
    from peftbench.methods import all_methods, get_method

    names = text if isinstance(text, list) else [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError("--methods is empty; give names, 'all' or 'preset:quick'")
    wanted: list[str] = []
    for name in names:
        if name == "all" or name.startswith("preset:"):
            preset = "full" if name == "all" else name.removeprefix("preset:")
            if preset not in PRESETS:
                raise UserError(f"unknown preset '{preset}'; known: {', '.join(PRESETS)}")
            members = PRESETS[preset]
            wanted += members if members is not None else [m.name for m in all_methods()]
        else:
            wanted.append(get_method(name).name)
    chosen, excluded = [], {}
    for name in dict.fromkeys(wanted):
        reason = get_method(name).why_not(kind)
        (excluded.__setitem__(name, reason) if reason else chosen.append(name))
    if not chosen:
        raise UserError("no technique of --methods applies to this model: "
                        + "; ".join(f"{k}: {v}" for k, v in excluded.items()))
    return chosen, excluded


def make_plan(cfg: TournamentConfig, kind: str) -> Plan:
    """The tournament's grid: techniques (applicable ones), their rates, and the rungs."""
    from peftbench.methods import get_method

    methods, excluded = resolve_methods(cfg.methods, kind)
    grids = {m: cfg.learning_rates(get_method(m).default_lr) for m in methods}
    return Plan(cfg, methods, excluded, grids, cfg.rungs())

