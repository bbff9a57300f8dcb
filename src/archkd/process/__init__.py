"""archkd.process — DistPro: search a distillation *process* and replay it.

Contract:
- A process is a set of teacher→student feature ``Pathway``s over the stem (when both networks have one,
  ``stem_name``) and the stages (default: student feature ≥ teacher feature), a transform per
  pathway (``register_transform``: ``conv1x1``, ``attention``, ``linear``; with ``process.transforms`` every stage pair
  once per candidate transform, each with its own weight, so the search picks the transform too), a distance (``hcl``
  or ``mse``) and a weight per pathway per step. ``ProcessObjective`` is a ``DistillObjective``, so the ordinary trainer replays it.
- ``search_process(student, teacher, data, train_cfg, objective)`` learns α by bi-level optimisation (one-step
  unrolled student, finite-difference Hessian-vector product, validation CE on a held-out 20 % of the training
  data) and returns the α trajectory; ``hypergradient`` is the testable core. ``search_with_config`` builds the
  process from a ``ProcessConfig`` and searches it (the CLI command and joint-search trials).
- ``save_process`` / ``load_process`` / ``replay_objective``: the trajectory stretched linearly to the full schedule
  (``interpolate``), optional τ-clipping of low-weight pathways; baselines ``equal`` and ``final`` (constant α_T).
  Files written before stems were tapped (no ``stem`` entry) replay as the stages-only processes they are;
  ``transfer_process`` retargets a file to another student's taps.
"""
from archkd.process.process import (DISTANCES, NORMALIZATIONS, Pathway, ProcessObjective, interpolate, make_pathways,
                                    normalize)
from archkd.process.search import ProcessSearchResult, hypergradient, search_process
from archkd.process.store import (load_process, replay_objective, save_process, search_objective, search_with_config,
                                  transfer_process)
from archkd.process.transforms import TRANSFORMS, create_transform, register_transform

__all__ = ["DISTANCES", "NORMALIZATIONS", "Pathway", "ProcessObjective", "interpolate", "make_pathways", "normalize",
           "ProcessSearchResult", "hypergradient", "search_process", "load_process", "replay_objective",
           "save_process", "search_objective", "search_with_config", "transfer_process", "TRANSFORMS",
           "create_transform", "register_transform"]
