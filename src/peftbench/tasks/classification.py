"""`ClassificationTask`: shared behaviour of text classification tasks (SST-2, user labels).

For a causal LM an example reads ``prompt`` and is trained to answer with the label's
verbalizer ``" " + labels[i]``; for an encoder it carries ``text`` and the integer ``label``.
"""

from __future__ import annotations

from peftbench.tasks.answers import match_label
from peftbench.tasks.base import Example
from peftbench.tasks.prepared import PreparedTask


class ClassificationTask(PreparedTask):
    """A classification task: accuracy of the label named at the start of the generation."""

    kind = "classification"
    metric = "accuracy"
    prompt_template = "{text}\nLabel:"

    def make_example(self, text: str, label: int) -> Example:
        """An example usable by both model kinds."""
        name = self.labels[label]
        prompt = self.prompt_template.format(text=text.strip())
        return Example(prompt=prompt, target=" " + name, answer=name, text=text, label=label)

    def extract_answer(self, generated: str) -> str:
        """The label name the generation starts with (case-insensitive), or ``""``."""
        return match_label(generated, self.labels)

    def set_labels(self, labels: tuple[str, ...]) -> None:
        """Record the class names and size the generation budget for the longest one."""
        self.labels = labels
        self.max_new_tokens = max(4, max(len(name) for name in labels) // 2 + 2)
