"""archkd.distill — the KD trainer, its losses, checkpoints and the teacher-output cache.

Contract:
- ``fit(model, data, train_cfg, objective=..., teacher=..., cache=..., hooks=..., teacher_train=...) -> FitResult``:
  the one training loop (teachers, search trials, final distillation, DistPro's search). Seams: ``TrainHook``
  (``before_step`` / ``loss_terms`` / ``after_step`` / ``after_epoch``, parameters it steps itself, state saved in
  ``last.pt``) seeing a ``Batch`` and the ``StepContext``; ``Callback`` (Lightning-style events ``on_fit_start`` ...
  ``on_train_epoch_end``: checkpoints and resumption ``Checkpointing``, ``Metrics``, progress, torchrun) for what
  watches the loop rather than changes it, passed as ``callbacks=``; ``teacher_train`` makes the teacher trainable
  (its own optimiser; no teacher-output cache). Messages go to ``log`` or, with ``log=None``, to the
  ``archkd.distill.*`` loggers. Modules: ``loop`` (the loop), ``prepare``, ``callbacks``, ``resume``, ``ddp``,
  ``precision``, ``evaluation``, ``optim``; ``trainer`` keeps the old import path.
  ``build_optimizer(params, cfg, total, steps_per_epoch)`` is the one optimiser and LR-schedule builder.
  ``evaluate(model, split, normalize, device) -> accuracy``;
  ``teacher_accuracy`` (validation logits served from the cache); ``recalibrate_bn`` (BatchNorm statistics
  re-estimated for the current weights; ``train.bn_recalibration`` runs it before each validation, search trials
  do by default; ``fit`` warns a BatchNorm model trained fewer than ``SHORT_RUN_STEPS`` steps without it);
  ``epoch_steps`` (the batch size and steps per epoch every loop uses).
- ``DistillObjective``: CE + Hinton KD + feature losses on tap points (``Taps``: forward hooks by module path).
- ``register_loss(name)`` / ``create_loss(name, **kw)``: the loss registry: logit losses ``kd``, ``dkd`` (decoupled
  KD); feature losses ``fitnet``, ``at``, ``hcl``, ``rkd`` (distance + angle), ``pkt``, ``reviewkd`` (several stages
  at once: its ``student``/``teacher`` taps are equally long lists) — one file per family.
- ``TeacherCache``: exact per-(sample, epoch, seed, precision) teacher logits shared across trials and runs;
  ``cache_precision(amp)`` names the precision ``fit`` will check it against.
- ``save_checkpoint`` / ``load_checkpoint`` / ``model_from_checkpoint``: self-describing, resumable checkpoints.
- ``BlockwiseScorer(teacher, fingerprint, data, root, BlockRecipe(...)).score(model) -> BlockwiseScore``: blockwise
  distillation (DNA/DONNA): each stage of a stage-wise student (``model.blocks()``) trained alone to reproduce the
  teacher's stage from the teacher's input of it, memoised on disk; the score ``exp(−mean NSR)`` rates the student
  without training it whole (``search.fidelity=blockwise``).
- ``MetricsLog(path, run).write(row)`` / ``read_metrics(path)``: the run directory's ``metrics.csv``, one row per
  epoch per training run (losses, accuracy, lr, images/s, seconds).
"""
from archkd.distill.blockwise import BlockRecipe, BlockwiseScore, BlockwiseScorer
from archkd.distill.cache import TeacherCache, cache_precision
from archkd.distill.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from archkd.distill.metrics import MetricsLog, read_metrics
from archkd.distill.losses import LOSSES, FeatureLoss, LogitLoss, create_loss, register_loss
from archkd.distill import dkd as _dkd, relational as _relational, reviewkd as _reviewkd  # noqa: E402,F401  (register dkd, rkd, pkt, reviewkd)
from archkd.distill.objective import DistillObjective, Taps, objective_from_config
from archkd.distill.callbacks import Batch, Callback, Metrics, StepContext, TrainHook
from archkd.distill.ddp import StopTraining
from archkd.distill.evaluation import SHORT_RUN_STEPS, evaluate, recalibrate_bn, teacher_accuracy
from archkd.distill.loop import FitResult, fit
from archkd.distill.optim import build_optimizer, epoch_steps, lr_factor
from archkd.distill.resume import Checkpointing

__all__ = ["BlockRecipe", "BlockwiseScore", "BlockwiseScorer", "MetricsLog", "read_metrics", "TeacherCache", "cache_precision", "load_checkpoint", "model_from_checkpoint", "save_checkpoint", "LOSSES",
           "FeatureLoss", "LogitLoss", "create_loss", "register_loss", "DistillObjective", "Taps",
           "objective_from_config", "Batch", "Callback", "Checkpointing", "FitResult", "Metrics", "StepContext", "StopTraining", "TrainHook", "build_optimizer", "epoch_steps",
           "evaluate", "fit", "lr_factor", "recalibrate_bn", "teacher_accuracy", "SHORT_RUN_STEPS"]
