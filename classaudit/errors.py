"""Exceptions the CLI shows as one line: UsageError (exit status 2) and EnvironmentProblem (exit status 1); and
RunFailed, a run's failure that its message explains in full."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """A problem in what the user gave us (a study file, an option, a folder).

    The message is complete on its own: it names the file, the field, the value and what is allowed.
    Several problems found in one file are joined, one per line, so the user fixes them all at once.
    """


class EnvironmentProblem(Exception):
    """Something outside the user's input failed (a full disk, a lost file system); exit status 1, one line."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class RunFailed(Exception):
    """A run that gave no result for a reason its message says in full (the user's command exited with an error,
    its predictions file is malformed): the sweep records the message as the run's error, without the exception's
    name, and `detail` (the tail of the command's stderr) beside it in failed/<run_id>.json."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail
