"""archkd.workflows — one module per verb: what ``archkd <verb>`` (and ``archkd.api``) does, end to end.

Contract:
- A verb is a function ``verb(cfg: Config, log=print, ...) -> result``: it takes a resolved ``Config``, writes only
  into ``cfg.run_dir`` (``runs/<name>/``) and returns what it measured as a typed result (``results``: a dataclass
  per verb that is also the JSON-serialisable dict ``results.json`` records, ``to_dict()``; the demo's whole results
  stay a plain dict; under torchrun, ranks other than 0 return ``{"rank": ...}``). Modules:
  ``teacher`` (``train_teacher``), ``generic`` (``generic_teacher``, GTN), ``distill``, ``process``
  (``process_search``, DistPro), ``search`` (``search``, ``finalize_top_k``), ``family`` (``family_sample``),
  ``export``, ``measure`` (``measure``, ``latency_predictor``), ``demo``, ``report``.
- ``run``: the run directory of a verb — ``@verb(name)`` holds it for the call (``archkd.rundir``: one process,
  one verb's results), ``start`` opens ``log.txt``, ``record`` writes ``config.yaml`` once the inputs are accepted,
  ``write_run`` writes ``results.json`` and ``report.html`` (the same for every verb, the demo's included);
  ``RUN_LOG`` mirrors what a verb says into ``log.txt`` (``mirrored(log)``); under torchrun only rank 0 speaks.
- ``inputs``: ``prepare`` (teacher and data, checked together), ``build_student``, ``make_cache`` (the teacher-output
  cache keyed by ``archkd.distill.cache.teacher_cache``).
- ``follower``: the torchrun protocol of a search; rank 0 announces each trial and top-k finalist, every other rank
  trains the same on its shard until told to stop.
- Domain decisions live below: what defines a study and the trial fidelity (``archkd.search.definition``), which
  trials a search finalises and how (``archkd.search.finalise``), whether a teacher exposes the features a method
  needs (``archkd.teacher.features.require_features``).
"""
from archkd.workflows.demo import demo
from archkd.workflows.distill import Recipe, distill, distill_recipe
from archkd.workflows.export import export
from archkd.workflows.family import family_sample
from archkd.workflows.generic import generic_teacher
from archkd.workflows.inputs import build_student, make_cache, prepare
from archkd.workflows.measure import latency_predictor, measure
from archkd.workflows.process import process_search
from archkd.workflows.report import report
from archkd.workflows.results import (DistillRun, ExportRun, Family, GenericTeacherRun, MeasureRun, PredictorRun,
                                      ProcessSearchRun, SearchRun, TeacherRun, VerbResult)
from archkd.workflows.run import RUN_LOG, Log
from archkd.workflows.search import finalize_top_k, search
from archkd.workflows.teacher import train_teacher

__all__ = ["demo", "Recipe", "distill", "distill_recipe", "export", "family_sample", "generic_teacher",
           "build_student", "make_cache", "prepare", "latency_predictor", "measure", "process_search", "report",
           "RUN_LOG", "Log", "finalize_top_k", "search", "train_teacher", "VerbResult", "TeacherRun",
           "GenericTeacherRun", "DistillRun", "ProcessSearchRun", "SearchRun", "Family", "PredictorRun", "MeasureRun",
           "ExportRun"]
