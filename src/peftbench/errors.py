"""Errors a user can cause.

A `UserError` is reported by the CLI as one line naming the problem, with exit code 2 and no
traceback. Raise it for bad data, unknown names, invalid configs and missing models; let genuine
bugs propagate as ordinary exceptions.
"""


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
