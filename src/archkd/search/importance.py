"""Which configuration choices mattered: Optuna's parameter importances over a search's trained students.

Why: after a search a user asks what to fix next time (depth? width? the KD temperature?) — the question Optuna's
``get_param_importances`` answers with fANOVA: the share of the variance of the score, over the trials, that each
parameter explains on its own (a random forest fitted to (configuration, score); importances sum to 1).

What is scored: the validation accuracy of the feasible students the search trained (over-budget proposals and repeats
are left out: they were not trained); after a multi-objective search, also accuracy. Parameters present in every such
trial are the ones rated (Optuna's intersection search space): in a multi-family space that is the family and the
recipe, not one family's own dimensions. Deterministic for a seed. Fewer than 3 trained trials, or none varying, rate
nothing.
"""
from __future__ import annotations

import optuna

from archkd.search.storage import open_storage
from archkd.search.study import is_infeasible

MIN_TRIALS = 3


def param_importances(storage: str, study_name: str, seed: int = 0) -> dict[str, float] | None:
    """``{parameter: importance}`` (largest first, summing to 1) over the study's trained students, or None."""
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    rows = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if not is_infeasible(t) and t.user_attrs.get("archkd_state") != "DUPLICATE"
            and t.user_attrs.get("val_acc") is not None]
    if len(rows) < MIN_TRIALS:
        return None
    scored = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    scored.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                 value=float(t.user_attrs["val_acc"])) for t in rows])
    try:
        found = optuna.importance.get_param_importances(
            scored, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError):  # no parameter common to every trial, or none that varies
        return None
    return {k: float(v) for k, v in found.items()} or None
