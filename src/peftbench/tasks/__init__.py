"""Task registry: `get_task("arith")`, `get_task("jsonl:my.jsonl", {...})`.

Importing this package imports every task module so that each registers itself.
"""

from peftbench.tasks import arith, gsm8k, sst2, user_data  # noqa: F401  (they register)
from peftbench.tasks.base import SPLITS, Example, Task, get_task, register, task_names
from peftbench.tasks.general_text import load_general_text

__all__ = [
    "SPLITS",
    "Example",
    "Task",
    "get_task",
    "load_general_text",
    "register",
    "task_names",
]
