"""The trainer's names where they always were: the loop now lives in modules of its own.

``loop`` (``fit``, ``FitResult``: the loop itself), ``prepare`` (what happens before the first step), ``callbacks``
(``TrainHook``, ``Callback``, ``StepContext``, ``Batch``; the epoch line, progress, metrics, ``on_epoch``),
``resume`` (``Checkpointing``: best.pt, last.pt, resumption), ``ddp`` (torchrun), ``precision`` (``TeacherView``
and the precision autotune of student and teacher), ``evaluation`` and ``optim``.
"""
from __future__ import annotations

from archkd.distill.callbacks import (Batch, Callback, EpochLog, FitLog, Metrics, OnEpoch, ProgressReport,
                                      StepContext, TrainHook)
from archkd.distill.ddp import Distributed, StopTraining, average_buffers, average_gradients, stop_together
from archkd.distill.evaluation import SHORT_RUN_STEPS, evaluate, recalibrate_bn, running_bns, teacher_accuracy
from archkd.distill.loop import FitResult, fit
from archkd.distill.optim import build_optimizer, epoch_steps, lr_factor
from archkd.distill.precision import TeacherView, choose_precisions, student_precision, teacher_precision
from archkd.distill.resume import OUTPUT_ONLY, Checkpointing, damaged, resumable, run_key

# the private names of the one-module trainer, for code that reached into it
_precision, _teacher_precision, _run_key = student_precision, teacher_precision, run_key
_damaged, _resumable = damaged, resumable

__all__ = ["Batch", "Callback", "Checkpointing", "Distributed", "EpochLog", "FitLog", "FitResult", "Metrics",
           "OUTPUT_ONLY", "OnEpoch", "ProgressReport", "SHORT_RUN_STEPS", "StepContext", "StopTraining",
           "TeacherView", "TrainHook", "average_buffers", "average_gradients", "build_optimizer", "choose_precisions",
           "damaged", "epoch_steps", "evaluate", "fit", "lr_factor", "recalibrate_bn", "resumable", "run_key",
           "running_bns", "stop_together", "student_precision", "teacher_accuracy", "teacher_precision"]
