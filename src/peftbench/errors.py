"""Errors a user can cause.

A `UserError` is reported by the CLI as one line naming the problem, with exit code 2 and no
traceback. Raise it for bad data, unknown names, invalid configs and missing models; let genuine
bugs propagate as ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """A problem in what the user asked for (input files, names, configs), not a bug."""


def first_line(exc_or_text: BaseException | str) -> str:
    """The first line of an error message, for one-line reports.

    Leading and trailing blank space is ignored. An exception without a message gives its class
    name; empty text gives ``""``.
    """
    lines = str(exc_or_text).strip().splitlines()
    if lines:
        return lines[0]
    return type(exc_or_text).__name__ if isinstance(exc_or_text, BaseException) else ""


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """``"; did you mean 'lora'?"`` when ``known`` holds a name close to ``name``, else ``""``.

    Case, hyphens and underscores are ignored when comparing.
    """
    import difflib

    def key(text: str) -> str:
        return text.strip().lower().replace("-", "_")

    keys = {key(k): k for k in known}
    close = difflib.get_close_matches(key(name), list(keys), n=1, cutoff=0.6)
    return f"; did you mean '{keys[close[0]]}'?" if close else ""


def unknown_name(what: str, name: str, known: Sequence[str]) -> UserError:
    """The `UserError` for an unknown ``what`` (metric, capability, …): the name, the closest
    known one and all the known ones, in one line."""
    listed = ", ".join(known) or "none"
    return UserError(f"unknown {what} '{name}'{did_you_mean(name, known)} (known: {listed})")
