"""Task registry: `get_task("arith")`, `get_task("jsonl:my.jsonl", {...})`, `register_task`.

Importing this package imports every task module so that each registers itself; installed
packages add tasks through the entry point group ``peftbench.tasks``.
"""

from peftbench.tasks import (  # noqa: F401  (they register)
    arith,
    dreambooth,
    glue,
    gsm8k,
    sst2,
    superglue,
    user_data,
)
from peftbench.tasks.base import (
    ENTRY_POINT_GROUP,
    SPLITS,
    Example,
    Prediction,
    Task,
    TaskDoc,
    TaskOption,
    document_task,
    get_task,
    register,
    register_task,
    task_doc,
    task_names,
)
from peftbench.tasks.general_text import load_general_text

__all__ = [
    "ENTRY_POINT_GROUP",
    "SPLITS",
    "Example",
    "Prediction",
    "Task",
    "TaskDoc",
    "TaskOption",
    "document_task",
    "get_task",
    "load_general_text",
    "register",
    "register_task",
    "task_doc",
    "task_names",
]
