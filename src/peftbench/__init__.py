"""peftbench: a fair tournament of parameter-efficient fine-tuning techniques.

Every technique runs on the same base model, data, training code, hardware and tuning budget,
and is measured on many axes (test score, memory, time, checkpoint size, forgetting, ...).

The public API is `__all__` below: one experiment (`ExperimentSpec`, `TrainParams`,
`run_experiment`), a tournament (`TournamentConfig`, `make_plan`, `Tournament`), the analysis
of result files (`load_results`, `aggregate`, `recommend`, `pareto_frontier`), exporting a
trained adapter (`export_lora`, `export_merged`), and the technique and task registries
(`get_method`, `register_method`, `method_names`, `get_task`, `register_task`, `task_names`).
Each name is imported on first use, so ``import peftbench`` stays fast and imports no torch.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from peftbench.errors import UserError

__version__ = "0.1.0"

# bitsandbytes (imported by PEFT whenever it is installed) warns on every import that an optional
# CPU kernel package is absent; it changes nothing peftbench measures, and it would be the only
# line on stderr of a user's mistake, which must be one clear line.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    "ExperimentSpec": "peftbench.engine.spec",
    "TrainParams": "peftbench.engine.spec",
    "run_experiment": "peftbench.engine.experiment",
    "TournamentConfig": "peftbench.tournament",
    "make_plan": "peftbench.tournament",
    "Tournament": "peftbench.tournament",
    "load_results": "peftbench.analysis",
    "aggregate": "peftbench.analysis",
    "recommend": "peftbench.analysis",
    "pareto_frontier": "peftbench.analysis",
    "export_lora": "peftbench.export",
    "export_merged": "peftbench.export",
    "Method": "peftbench.methods",
    "get_method": "peftbench.methods",
    "register_method": "peftbench.methods",
    "method_names": "peftbench.methods",
    "Task": "peftbench.tasks",
    "get_task": "peftbench.tasks",
    "register_task": "peftbench.tasks",
    "task_names": "peftbench.tasks",
}

__all__ = [
    "ExperimentSpec",
    "Method",
    "Task",
    "Tournament",
    "TournamentConfig",
    "TrainParams",
    "UserError",
    "__version__",
    "aggregate",
    "export_lora",
    "export_merged",
    "get_method",
    "get_task",
    "load_results",
    "make_plan",
    "method_names",
    "pareto_frontier",
    "recommend",
    "register_method",
    "register_task",
    "run_experiment",
    "task_names",
]

if TYPE_CHECKING:
    from peftbench.analysis import aggregate, load_results, pareto_frontier, recommend
    from peftbench.engine.experiment import run_experiment
    from peftbench.engine.spec import ExperimentSpec, TrainParams
    from peftbench.export import export_lora, export_merged
    from peftbench.methods import Method, get_method, method_names, register_method
    from peftbench.tasks import Task, get_task, register_task, task_names
    from peftbench.tournament import Tournament, TournamentConfig, make_plan


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'peftbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
