"""fit's callbacks (archkd.distill.callbacks): the events in order, metrics through a callback, messages through
logging when no ``log`` callable is given, and the old import path of the trainer's names (issue #27)."""
import logging

import torch

from archkd.config import TrainConfig
from archkd.distill import Callback, Metrics, MetricsLog, TrainHook, fit, read_metrics
from archkd.models import create_model, model_spec


def _student():
    torch.manual_seed(0)
    return create_model("stagenet", num_classes=10, in_channels=1,
                        stages=[{"depth": 1, "width": 8, "kernel": 3}])


EVENTS = ("setup", "on_fit_start", "on_train_epoch_start", "on_after_backward", "on_train_batch_end",
          "on_validation_start", "on_validation_end", "on_train_epoch_end", "on_fit_end")


class Recorder(Callback):
    """Records each event's name, a step's two events as one ``step``."""

    def __init__(self):
        self.events = []
        for name in EVENTS:
            setattr(self, name, lambda ctx, *args, name=name: self.record(name))

    def record(self, name):
        name = "step" if name in ("on_after_backward", "on_train_batch_end") else name
        if not (name == "step" and self.events[-1] == "step"):
            self.events.append(name)


def test_callbacks_see_the_loop_in_order_and_metrics_go_through_one(digits, tmp_path, caplog):
    rec = Recorder()
    seen_by_hook = []

    class Hook(TrainHook):
        def after_epoch(self, ctx, row):
            seen_by_hook.append(("after_epoch", "val_acc" in row, len(ctx.history)))

    m = _student()
    cfg = TrainConfig(epochs=2, batch_size=64, data_fraction=0.5, eval_every=2, bn_recalibration=128)
    with caplog.at_level(logging.INFO, logger="archkd.distill"):
        res = fit(m, digits, cfg, seed=0, device="cpu", log=None, out_dir=tmp_path / "run", spec=model_spec(m),
                  hooks=[Hook()], callbacks=[rec, Metrics(MetricsLog(tmp_path / "metrics.csv", "student"))])
    assert rec.events == ["setup", "on_fit_start",
                          "on_train_epoch_start", "step", "on_train_epoch_end",  # epoch 1 does not validate
                          "on_train_epoch_start", "step", "on_validation_start", "on_validation_end",
                          "on_train_epoch_end", "on_fit_end"]
    assert seen_by_hook == [("after_epoch", False, 0), ("after_epoch", True, 1)]
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["val_acc"] == res.history[1]["val_acc"]
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("archkd.distill")]
    assert any(msg.startswith("epoch 2/2 loss ") and " val_acc " in msg for msg in messages), messages
    assert {r.name for r in caplog.records} <= {"archkd.distill.loop", "archkd.distill.callbacks",
                                                "archkd.distill.resume"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="archkd.distill"):
        again = fit(_student(), digits, cfg, seed=0, device="cpu", log=None, out_dir=tmp_path / "run",
                    spec=model_spec(m), resume=True)
    assert again.history == res.history and again.resumed_at_epoch == 2
    assert any("already finished" in r.getMessage() for r in caplog.records)


def test_a_log_callable_gets_every_message_and_logging_none(digits, caplog):
    lines = []
    with caplog.at_level(logging.INFO, logger="archkd.distill"):
        fit(_student(), digits, TrainConfig(epochs=1, batch_size=64, data_fraction=0.5, bn_recalibration=128), seed=0,
            device="cpu",
            log=lines.append)
    assert any(ln.startswith("epoch 1/1 loss ") for ln in lines)
    assert not [r for r in caplog.records if r.name.startswith("archkd.distill")]


def test_the_trainer_module_keeps_its_names():
    import archkd.distill.trainer as trainer

    for name in ("fit", "FitResult", "TrainHook", "StepContext", "Batch", "StopTraining", "TeacherView",
                 "build_optimizer", "lr_factor", "epoch_steps", "evaluate", "recalibrate_bn", "running_bns",
                 "teacher_accuracy", "SHORT_RUN_STEPS", "stop_together", "average_gradients", "average_buffers",
                 "OUTPUT_ONLY", "_precision", "_teacher_precision", "_run_key", "_damaged", "_resumable"):
        assert hasattr(trainer, name), name
