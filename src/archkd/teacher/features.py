"""The one check, with one wording, that a teacher exposes its internals (stage features).

Why here: feature losses (``distill``), a DistPro process search (``process search``) and a joint student + process
search (``search.process``) all need the teacher's intermediate activations, which a TorchScript teacher does not
expose; each caller names what needs them, the error says the rest the same way every time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from archkd.errors import ArchkdError

if TYPE_CHECKING:
    from archkd.teacher import Teacher


def require_features(teacher: "Teacher", what: str, otherwise: str | None = None) -> None:
    """Refuse ``teacher`` for ``what`` (a plural subject: "feature losses") unless it exposes its stage features;
    ``otherwise`` is the alternative that works without them (offered after the common fix)."""
    if teacher.supports_features:
        return
    raise ArchkdError(f"{what} need the teacher's internals (its stage features), but {teacher.source} is TorchScript",
                      "give the teacher as an archkd checkpoint or module:factory with weights"
                      + (f", or {otherwise}" if otherwise else ""))
