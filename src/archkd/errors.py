"""User-facing errors.

Why a dedicated type: the CLI prints an ``ArchkdError`` as one line (problem + fix) and exits non-zero,
while any other exception is a bug and keeps its traceback. Raise it for anything the user can fix.
"""
from __future__ import annotations


class ArchkdError(Exception):
    """A problem in the user's input (data, teacher, config, budget) with a suggested fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem} — {fix}")


class ArchkdWarning(UserWarning):
    """Something the user should know that does not stop the run (a skipped file, a cache rebuilt, a split that
    lacks a class). The CLI prints it as one ``archkd: warning:`` line and into the run's log."""
