"""Errors a user can cause.

A `UserError` is reported by the CLI as one line naming the problem, with exit code 2 and no
traceback. Raise it for bad data, unknown names, invalid configs and missing models; let genuine
bugs propagate as ordinary exceptions.
"""


class UserError(Exception):
    """A problem in what the user asked for (input files, names, configs), not a bug."""
