"""archkd.search — studies, samplers, budgets and the KD-guided search objective.

Contract:
- ``run_search(space, evaluate, storage=..., study_name=..., sampler=..., n_trials=..., budget=...)``: ask/tell
  loop on an Optuna study; over-budget candidates are recorded as INFEASIBLE without training; re-running resumes.
- ``register_sampler(name)`` / ``create_sampler(name, seed, space)``: samplers are Optuna samplers whose state is
  rebuilt from the study (``random``; ``akd``: the LSTM controller trained with PPO/REINFORCE); they never train.
- ``Reward``: ``ACC × (LAT/T)^w`` (AKD/MnasNet), the trial value when a target is set.
- ``Budget``: parameter / FLOP / latency / memory limits checked before training.
- ``KDTrialObjective``: the only place where search meets training.
"""
from archkd.search.budget import Budget
from archkd.search.objective import KDTrialObjective
from archkd.search.samplers import SAMPLERS, HashRandomSampler, create_sampler, register_sampler
from archkd.search.reward import Reward
from archkd.search.study import SearchResult, check_feasible, open_study, pareto_front, run_search

__all__ = ["Budget", "KDTrialObjective", "SAMPLERS", "HashRandomSampler", "create_sampler", "register_sampler",
           "SearchResult", "check_feasible", "open_study", "pareto_front", "run_search", "Reward"]
