"""What defines a search study, by config key, and the search fidelity those keys leave out.

Why: a study continued with any of these keys changed would mix results measured under two definitions, so
``run_search(definition=...)`` records this dict when the study starts and refuses a different one later
(``check_definition``). Keys that only change how long or how much a trial trains at its fidelity are the
fidelity's (``search.epochs``, ``search.data_fraction``, ``search.bn_recalibration``), not ``train``'s.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from archkd.config import Config, TrainConfig, recipe_identity, to_dict
from archkd.search.storage import recorded_definition

if TYPE_CHECKING:
    from archkd.data import DataBundle

# train keys a search trial takes from ``search.*`` instead (its fidelity), plus what only logs
FIDELITY_KEYS = ("epochs", "data_fraction", "bn_recalibration")

SEARCH_KEYS = ("space", "space_kwargs", "guide", "epochs", "data_fraction", "bn_recalibration", "reward_target",
               "reward_metric", "reward_mode", "reward_alpha", "reward_beta", "process", "pruner", "pruner_options")


def search_fidelity(cfg: Config) -> TrainConfig:
    """The training recipe of a search trial: ``cfg.train`` at the search's epochs, data share and BN setting."""
    sc = cfg.search
    return replace(cfg.train, **{k: getattr(sc, k) for k in FIDELITY_KEYS})


def study_definition(cfg: Config, space, teacher_fingerprint: str, data: "DataBundle") -> dict:
    """What defines a search study: a study continued with any of these changed would mix results.

    The space by its dimensions (recipe ones included), not by how its options were spelled; the data by what it is
    (classes, sizes, shape, augmentation, normalisation), not by where it lies on this machine."""
    sc = cfg.search
    # the recipe without what only logs (or fields added later at their defaults) and without the trial fidelity
    defining = recipe_identity(cfg.train)
    train = {k: v for k, v in to_dict(cfg.train).items() if k in defining and k not in FIDELITY_KEYS}
    d: dict = {"search": {k: getattr(sc, k) for k in SEARCH_KEYS},
               "budget": to_dict(cfg.budget), "train": train, "seed": cfg.seed,
               "teacher": teacher_fingerprint, "data": {**data.describe(), "classes": list(data.classes)},
               "space_dims": space.describe()["dims"]}
    if sc.size_target is not None:  # only then: a study made before size targets existed keeps its definition
        d["search"]["size_target"] = sc.size_target
    if sc.guide == "kd":
        d["distill"] = {k: v for k, v in to_dict(cfg.distill).items() if k != "cache"}
    if sc.process:
        d["process"] = to_dict(cfg.process)
    if sc.objectives:  # only then: a scalar study made before multi-objective searches keeps its definition
        d["search"]["objectives"] = list(sc.objectives)
    if sc.fidelity != "trained":  # only then: a study made before blockwise scoring existed keeps its definition
        d["search"].update(fidelity=sc.fidelity, blockwise_lr=sc.blockwise_lr)
    if sc.prescreen.proxy:  # only then: a study made before pre-screening existed keeps its definition
        d["prescreen"] = to_dict(sc.prescreen)
    return d


def recorded_reward_target(storage: str, study_name: str) -> float | None:
    """The reward target a study recorded in its definition when it started (none: not started, or no target)."""
    old = recorded_definition(storage, study_name).get("search.reward_target")
    return None if old in (None, "null") else float(json.loads(old))
