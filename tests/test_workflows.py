"""The pieces the verbs are made of, without training: top-k finalisation's choices, the study definition, the
teacher-features check, the DistPro replay wiring, and the facade ``archkd.api`` keeping its names."""
from __future__ import annotations

import pytest
import torch.nn as nn

from archkd.config import Config
from archkd.errors import ArchkdError
from archkd.search import Reward
from archkd.search.definition import FIDELITY_KEYS, search_fidelity
from archkd.search.finalise import finalize_trials, top_trials, trial_config
from archkd.teacher import Teacher
from archkd.teacher.features import require_features


def _trial(n: int, reward: float, state: str = "COMPLETE", **extra) -> dict:
    return {"number": n, "reward": reward, "state": state, "student_spec": {"name": f"s{n}"}, **extra}


def test_top_trials_skip_failed_and_twins_and_sort_by_reward():
    trials = [_trial(0, 0.5), _trial(1, 0.9, "PRUNED"), _trial(2, 0.7), _trial(3, 0.8, duplicate_of=2), _trial(4, 0.6)]
    assert [t["number"] for t in top_trials(trials, 2)] == [2, 4]


def test_finalize_trials_trains_each_with_its_config_and_scores_it_again():
    cfg = Config(name="f")
    trials = [_trial(0, 0.5, recipe={"train.lr": 0.2}), _trial(1, 0.7, process="p.pt")]
    seen = []

    def train(run_cfg: Config, spec: dict, subdir: str) -> dict:
        seen.append((spec["name"], subdir, run_cfg.train.lr, run_cfg.distill.process))
        return {"val_acc": 0.8, "test_acc": 0.75, "params": 10, "flops": 20, "checkpoint": f"{subdir}/best.pt",
                "process": run_cfg.distill.process, "latency": None}

    out = finalize_trials(cfg, trials, 5, Reward.make(None), train, lambda _m: None)
    assert seen == [("s1", "final/01_trial0001", cfg.train.lr, "p.pt"), ("s0", "final/02_trial0000", 0.2, None)]
    assert [r["trial"] for r in out] == [1, 0] and out[0]["final_reward"] == pytest.approx(0.8)
    assert out[1]["recipe"] == {"train.lr": 0.2} and cfg.train.lr != 0.2  # the caller's config is left alone
    assert trial_config(cfg, trials[1]).distill.process == "p.pt"


def test_search_fidelity_takes_the_search_keys():
    cfg = Config()
    cfg.search.epochs, cfg.search.data_fraction = 3, 0.25
    f = search_fidelity(cfg)
    assert (f.epochs, f.data_fraction, f.lr) == (3, 0.25, cfg.train.lr)
    assert set(FIDELITY_KEYS) == {"epochs", "data_fraction", "bn_recalibration"}


def test_one_wording_for_a_teacher_without_features():
    ts = Teacher(nn.Linear(2, 2), "t", "t.torchscript.pt", "fp", supports_features=False)
    with pytest.raises(ArchkdError, match="feature losses need the teacher's internals .* t.torchscript.pt is "
                                          "TorchScript — give the teacher as an archkd checkpoint"):
        require_features(ts, "feature losses")
    with pytest.raises(ArchkdError, match=r"process searches need .*, or search alone$"):
        require_features(ts, "process searches", otherwise="search alone")
    require_features(Teacher(nn.Linear(2, 2), "t", "t.pt", "fp"), "feature losses")  # exposes them: no error


def test_plain_kd_replays_no_process_and_saves_nothing():  # a replayed one: test_distpro's pathway_loss_saved
    from archkd.workflows.distill import distill_recipe

    recipe = distill_recipe(Config(), 10)
    assert recipe.replay is None and recipe.pathway_loss_saved() is None


def test_the_facade_keeps_every_verb():
    from archkd import api

    for name in ("prepare", "make_cache", "train_teacher", "generic_teacher", "report", "distill", "process_search",
                 "search", "family_sample", "finalize_top_k", "trial_config", "measure", "latency_predictor",
                 "export", "demo", "RUN_LOG", "Log", "_fidelity", "_size_target"):
        assert hasattr(api, name), name


def test_a_typed_result_is_the_dict_it_writes():
    import copy
    import json
    import pickle

    from archkd.workflows.results import SearchRun

    r = SearchRun(space="s", scaled_to_params=None, sampler="random", sampler_info={}, guide="kd", n_trials=2,
                  fidelity={}, storage="x", study_name="n", reward="acc", best_trial=0, best={"number": 0},
                  pareto={}, trials=[])
    assert "top_k" not in r and r.get("top_k") is None and r.top_k is None  # optional: absent until set
    r.seconds = 1.5
    r.top_k = [{"trial": 0}]
    r["extra"] = 1  # a key that is no field stays a plain item
    assert r["seconds"] == 1.5 and r["top_k"] == [{"trial": 0}] and list(r)[-2:] == ["top_k", "extra"]
    r["best_trial"] = 3
    assert r.best_trial == 3
    assert r == r.to_dict() and type(r.to_dict()) is dict and {**r}["space"] == "s"
    assert json.loads(json.dumps(r))["top_k"] == [{"trial": 0}]
    for twin in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r)):
        assert twin == r and twin.top_k == r.top_k and twin.best_trial == 3


def test_recipe_keys_added_later_define_a_study_only_when_set(digits):
    """A study recorded before mixup/CutMix/EMA existed has no such keys; at their defaults they stay out of the
    definition, so it continues; set, they define a new study."""
    from archkd.config import load_config
    from archkd.search.definition import study_definition
    from archkd.spaces import create_space

    space = create_space("stages")
    plain = study_definition(load_config(), space, "t", digits)["train"]
    assert not {"mixup", "cutmix", "ema"} & set(plain)
    mixed = study_definition(load_config(overrides=["train.mixup=0.2", "train.ema=0.999"]), space, "t", digits)
    assert mixed["train"]["mixup"] == 0.2 and mixed["train"]["ema"] == 0.999 and "cutmix" not in mixed["train"]
    assert "-ra" not in digits.augment.key()  # the augmentation key grows only when the policy is on
