"""archkd.search — studies, samplers, budgets and the KD-guided search objective.

Contract:
- ``run_search(space, evaluate, storage=..., study_name=..., sampler=..., n_trials=..., budget=...)``: the loop of one
  worker on an Optuna study (SQLite, journal file or PostgreSQL): ask, build and measure, evaluate, tell. Any number
  of workers share a study; ``n_trials`` is its total; a trial whose worker died is re-queued and resumes from its
  last epoch; over-budget candidates are recorded with Optuna constraint values (infeasible) without training; a
  study refuses to continue under a changed definition (``check_definition``).
- ``evaluate(Candidate, report) -> TrialOutcome``: typed hand-over between the loop and training.
- ``register_sampler(name)`` / ``create_sampler(name, seed, space, feasible, **options)``: Optuna samplers whose state
  is rebuilt from the study (``random`` and ``akd`` sample within the budget; ``tpe``, ``gp`` read the constraints);
  they never train.
- ``Reward``: ``ACC × (LAT/T)^w`` (AKD/MnasNet), the trial value when a target is set.
- ``Budget``: parameter / FLOP / latency / memory limits checked before training, as constraint values.
- ``KDTrialObjective``: the only place where search meets training; ``BlockwiseTrialObjective``
  (``search.fidelity=blockwise``) scores a candidate by blockwise distillation instead (``archkd.distill.blockwise``).
- ``TuRBOSampler`` (``--method trade``): TuRBO-1 trust-region BO on BoTorch, state replayed from the study.
- ``fit_latency_predictor(space, ...)`` / ``search_predictor(budget, space, ...)``: a per-block latency predictor
  fitted on a space's networks, or the one a ``budget.latency_source=predicted`` search uses (cached per machine).
- ``prescreen(space, score, n, keep, seed, feasible) -> list[Screened]``: the best of ``n`` sampled candidates by a
  cheap score (a zero-cost proxy), which ``run_search(enqueue=...)`` asks first.
"""
from archkd.search.budget import Budget
from archkd.search.latency import (Sample, fit_latency_predictor, latency_quantile, predictor_file, sample_latencies,
                                  search_predictor)
from archkd.search.objective import BlockwiseTrialObjective, KDTrialObjective, apply_recipe
from archkd.search.prescreen import Screened, prescreen
from archkd.search.reward import Reward
from archkd.search.samplers import SAMPLERS, HashRandomSampler, create_sampler, register_sampler, sample_index
from archkd.search.storage import check_definition, open_storage, open_study, recorded_definition
from archkd.search.study import (Candidate, SearchResult, TrialOutcome, check_feasible, pareto_front,
                                 record_constraints, run_search)
from archkd.search.trust_region import TuRBOSampler  # registers the "trade" sampler

__all__ = ["Budget", "BlockwiseTrialObjective", "KDTrialObjective", "apply_recipe", "SAMPLERS", "HashRandomSampler", "create_sampler",
           "register_sampler", "sample_index", "Candidate", "SearchResult", "TrialOutcome", "check_definition",
           "check_feasible", "open_storage", "open_study", "pareto_front", "record_constraints", "run_search", "Reward",
           "TuRBOSampler", "Screened", "prescreen", "fit_latency_predictor", "predictor_file",
           "search_predictor", "Sample", "sample_latencies", "latency_quantile", "recorded_definition"]
