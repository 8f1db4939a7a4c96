"""`PreparedTask`: a task that builds all three splits at once, caches them and describes them.

Building the splits together is what lets a task keep them disjoint (validation carved out of
train, test questions excluded from train). The description adds the split sizes and a
fingerprint of the examples, so two result files can tell whether they saw the same data.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from typing import Any

from peftbench.tasks.base import SPLITS, Example, Task


class PreparedTask(Task):
    """Base for the built-in tasks: subclasses implement `build_splits` and `source`."""

    _splits: dict[str, list[Example]] | None = None

    @abstractmethod
    def build_splits(self) -> dict[str, list[Example]]:
        """Read/generate the data and return ``{split: examples}`` for every split."""

    @abstractmethod
    def source(self) -> dict[str, Any]:
        """What identifies the data (path or hub id, seed, options), for `describe`."""

    def splits(self) -> dict[str, list[Example]]:
        """All splits, built once and cached."""
        if self._splits is None:
            self._splits = self.build_splits()
        return self._splits

    def load_split(self, split: str) -> list[Example]:
        """The examples of ``split`` (a fresh list; the examples themselves are immutable)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return list(self.splits()[split])

    def describe(self) -> dict[str, Any]:
        """Name, kind, metric, data source, split sizes and a fingerprint of the examples."""
        splits = self.splits()
        info = super().describe()
        info.update(self.source())
        info["sizes"] = {split: len(splits[split]) for split in SPLITS}
        info["fingerprint"] = fingerprint(splits)
        info["max_new_tokens"] = self.max_new_tokens
        if self.labels:
            info["labels"] = list(self.labels)
        return info


def fingerprint(splits: dict[str, list[Example]]) -> str:
    """A short hash over every example of every split, in order."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(f"<{split}>".encode())
        for ex in splits[split]:
            for part in (ex.prompt, ex.target, ex.answer, ex.text, str(ex.label),
                         *extra_parts(ex)):
                digest.update(part.encode("utf-8", "surrogatepass"))
                digest.update(b"\x1f")
    return digest.hexdigest()[:16]


def extra_parts(ex: Example) -> tuple[str, ...]:
    """The parts of an example beyond prompt, target, answer, text and label that identify it
    (a text pair, the accepted answers), only where it has them: the fingerprints of examples
    without them stay what they were before these fields existed."""
    parts = (ex.text_pair, "\x1e".join(ex.references))
    return parts if any(parts) else ()
