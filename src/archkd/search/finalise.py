"""Top-k finalisation: the k best trials of a study re-trained with the full recipe, tested and scored again.

Why apart from the study loop: a search scores students at a cheap fidelity; which of them to re-train, with which
config (the recipe values and the process the search picked with each) and how the re-trained student is scored
are the search's decisions, while the training itself is the caller's (``train``: the ``distill`` workflow, which
also tells torchrun followers to join).
"""
from __future__ import annotations

import time
import warnings
from copy import deepcopy
from typing import Callable, Protocol

from archkd.config import Config, set_key
from archkd.device import seed_everything
from archkd.errors import ArchkdWarning
from archkd.search.fidelity import FidelityCheck, check, spread_trials
from archkd.search.reward import Reward


class TrainFinalist(Protocol):
    def __call__(self, run_cfg: Config, spec: dict, subdir: str) -> dict:
        """Distil the student ``spec`` with ``run_cfg`` into ``subdir`` of the run; return distill's result."""


def trial_config(cfg: Config, trial: dict) -> Config:
    """The config to re-train a search trial's student with: the recipe values the search picked with it
    (``search.recipe``) and, after a joint search, the process searched in its trial (unless one is given)."""
    out = deepcopy(cfg)
    if trial.get("process") and not cfg.distill.process:
        out.distill.process = trial["process"]
    for key, value in (trial.get("recipe") or {}).items():
        set_key(out, key, value)
    return out


def top_trials(trials: list[dict], k: int) -> list[dict]:
    """The k best completed trials by search score; a twin of a trained trial would re-train the same student."""
    done = (t for t in trials if t["state"] == "COMPLETE" and t.get("duplicate_of") is None)
    return sorted(done, key=lambda t: -t["reward"])[:k]


def finalist_subdir(rank: int, trial: dict) -> str:
    return f"final/{rank:02d}_trial{trial['number']:04d}"


def finalize_trials(cfg: Config, trials: list[dict], k: int, reward: Reward, train: TrainFinalist,
                    log: Callable[[str], None],
                    pick: Callable[[list[dict], int], list[dict]] = top_trials) -> list[dict]:
    """Re-train the k best ``trials`` with ``train`` and the full recipe, test them, score them again.

    After a joint student + process search (``search.process=true``) each student is distilled with the process
    searched inside its own trial, replayed over the full schedule, unless ``distill.process`` names another one:
    the search picked the pair, so the pair is what is finalised. ``pick(trials, k)`` chooses them (the k best by
    default; a spread along the front after a multi-objective search)."""
    done = pick(trials, k)
    out = []
    for rank, t in enumerate(done, 1):
        run_cfg = trial_config(cfg, t)
        log(f"top-{k} [{rank}/{len(done)}]: trial #{t['number']} with the full recipe ({cfg.train.epochs} epochs"
            + (f", replaying {run_cfg.distill.process}" if run_cfg.distill.process else "")
            + "".join(f", {key}={v}" for key, v in (t.get("recipe") or {}).items()) + ")")
        seed_everything(cfg.seed)
        r = train(run_cfg, t["student_spec"], finalist_subdir(rank, t))
        lat = (r.get("latency") or {}).get(cfg.budget.latency_runtime, {}).get("median_ms")
        # measured here on the budget's runtime: after a search on predicted latency, the finalist's real number
        metrics = {"latency_ms": lat if lat is not None else t.get("latency_ms"), "params": r["params"],
                   "flops": r["flops"]}
        out.append({"trial": t["number"], "recipe": t.get("recipe") or {}, "search_reward": t["reward"],
                    "val_acc": r["val_acc"], "test_acc": r["test_acc"], "final_reward": reward(r["val_acc"], metrics),
                    **metrics, "checkpoint": r["checkpoint"], "process": r["process"]})
    return out


def check_fidelity(cfg: Config, trials: list[dict], finalists: list[dict], k: int, train: TrainFinalist,
                   log: Callable[[str], None]) -> FidelityCheck | None:
    """Re-train ``k`` more trials spanning the range of trial accuracies with the full recipe and measure how well
    the trial accuracy ranked the full-recipe accuracy over them and the ``finalists`` (``archkd.search.fidelity``).

    The finalists are trained anyway; the k extra trainings are the check's cost, stated beside its result. A check
    that cannot vouch for the ranking is a one-line warning naming what to raise."""
    by_number = {t["number"]: t for t in trials}
    extra = spread_trials(trials, {f["trial"] for f in finalists}, k, key="val_acc")
    if not extra and len(finalists) < 2:
        return None
    rows = [(f["trial"], by_number[f["trial"]]["val_acc"], f["val_acc"]) for f in finalists]
    t0 = time.perf_counter()
    for i, t in enumerate(extra, 1):
        log(f"fidelity check [{i}/{len(extra)}]: trial #{t['number']} (trial val acc {t['val_acc']:.4f}) with the "
            f"full recipe")
        seed_everything(cfg.seed)
        r = train(trial_config(cfg, t), t["student_spec"], f"fidelity/{i:02d}_trial{t['number']:04d}")
        rows.append((t["number"], t["val_acc"], r["val_acc"]))
    result = check(rows, seed=cfg.seed, seconds=time.perf_counter() - t0)
    log(f"fidelity check over {result.n} re-trained trials: Kendall τ {result.tau:.2f} between trial and full-recipe "
        f"val acc, 95 % interval [{result.ci[0]:.2f}, {result.ci[1]:.2f}] ({len(extra)} extra trainings, "
        f"{result.seconds:.0f} s)")
    note = result.warning(cfg.search.epochs, cfg.search.data_fraction)
    if note:
        warnings.warn(note, ArchkdWarning, stacklevel=2)
    return result
