"""Task registry: `get_task("arith")`, `get_task("jsonl:my.jsonl", {...})`.

Importing this package imports every task module so that each registers itself.
"""

from peftbench.tasks.base import SPLITS, Example, Task, get_task, register, task_names

__all__ = ["SPLITS", "Example", "Task", "get_task", "register", "task_names"]
