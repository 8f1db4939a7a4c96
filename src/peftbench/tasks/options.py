"""Task options (``--task-option n_train=100``) read with type checks and a typo guard.

Options may arrive as strings from the command line or as typed values from a spec file, so
each reader accepts both. Every option a task does not read is reported, which turns a
misspelled option into an error instead of a silently ignored setting.
"""

from __future__ import annotations

from typing import Any, ClassVar

from peftbench.errors import UserError, did_you_mean


class TaskOptions:
    """Typed, checked access to a task's options; call `finish` once all are read."""

    #: when a list, every option read is appended as (task, name, default): how the tests
    #: check that `peftbench tasks` documents each option with its real default
    observed: ClassVar[list[tuple[str, str, Any]] | None] = None

    def __init__(self, task: str, given: dict[str, Any]) -> None:
        self.task = task
        self._given = dict(given)
        self._read: set[str] = set()

    def _raw(self, name: str, default: Any = None) -> Any:
        self._read.add(name)
        if TaskOptions.observed is not None:
            TaskOptions.observed.append((self.task, name, default))
        return self._given.get(name)

    def _fail(self, name: str, expected: str, value: Any) -> UserError:
        return UserError(f"task {self.task}: option '{name}' must be {expected}, got {value!r}")

    def integer(self, name: str, default: int | None, minimum: int = 0) -> int | None:
        """An integer option of at least ``minimum``; ``None``/"all" means no value."""
        value = self._raw(name, default)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "all")):
            return default if value is None else None
        if isinstance(value, bool):
            raise self._fail(name, "an integer", value)
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise self._fail(name, "an integer", value) from None
        if number < minimum:
            raise self._fail(name, f"an integer >= {minimum}", value)
        return number

    def fraction(self, name: str, default: float) -> float:
        """A number in [0, 1)."""
        value = self._raw(name, default)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._fail(name, "a number between 0 and 1", value) from None
        if not 0.0 <= number < 1.0:
            raise self._fail(name, "a number between 0 and 1", value)
        return number

    def text(self, name: str, default: str | None, choices: tuple[str, ...] = ()) -> str | None:
        """A string option, optionally restricted to ``choices``."""
        value = self._raw(name, default)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self._fail(name, "a non-empty string", value)
        if choices and value not in choices:
            raise UserError(f"task {self.task}: option '{name}' must be one of "
                            f"{', '.join(choices)}, got {value!r}{did_you_mean(value, choices)}")
        return value

    def names(self, name: str) -> tuple[str, ...] | None:
        """A list of names, given as a list or a comma-separated string."""
        value = self._raw(name)
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise self._fail(name, "a list of names", value)
        cleaned = tuple(i.strip() for i in items)
        if not all(cleaned) or len(set(cleaned)) != len(cleaned):
            raise self._fail(name, "distinct, non-empty names", value)
        return cleaned

    def finish(self) -> None:
        """Reject options that no reader asked for (most often a typo)."""
        unknown = sorted(set(self._given) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            hint = did_you_mean(unknown[0], sorted(self._read))
            if "data" in unknown:
                hint += " (--data sets the option data, which this task does not take)"
            raise UserError(f"task {self.task}: unknown option(s) {', '.join(unknown)}{hint} "
                            f"(known: {known}; `peftbench tasks` describes them)")
