"""Experiment logs and progress: log.txt, metrics.csv and their agreement with results.json; progress lines."""
import json

import torch

from archkd.cli import main
from archkd.config import TrainConfig
from archkd.distill import fit, read_metrics
from archkd.models import create_model
from archkd.progress import Progress

import pytest


def test_search_writes_log_and_metrics_that_agree_with_results(tmp_path, capsys, teacher_ckpt):
    with pytest.raises(SystemExit) as e:
        main(["search", "--teacher", teacher_ckpt, "--runs-dir", str(tmp_path), "--name", "m", "--n-trials", "3",
              "--trial-epochs", "2", "--max-params", "30000", "threads=1",
              "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"])
    assert e.value.code == 0
    printed = capsys.readouterr().out
    run = tmp_path / "m"
    results = json.loads((run / "results.json").read_text())
    log = (run / "log.txt").read_text()
    assert "searching space 'stages'" in log and "best trial #" in log
    messages = [ln.split(" ", 2)[2] for ln in log.splitlines()]
    assert len(messages) == len(set(messages))  # each message once, however deeply verbs call each other
    for line in printed.splitlines():  # what the verb printed (before its summary table) is in log.txt
        if line.startswith("[") and "s] " in line:
            assert line.split("s] ", 1)[1] in log
    rows = read_metrics(run / "metrics.csv")
    for t in results["trials"]:
        mine = [r for r in rows if r["run"] == f"trial {t['number']}"]
        assert [r["epoch"] for r in mine] == [1, 2]
        assert max(r["val_acc"] for r in mine) == pytest.approx(t["val_acc"])
        assert all(r["images_per_s"] > 0 and r["seconds"] > 0 and r["lr"] >= 0 and "ce" in r["losses"] for r in mine)


def test_progress_lines_name_trial_epoch_speed_and_etas(digits):
    lines: list[str] = []
    p = Progress(lines.append, every=0.0, live=False)
    p.search(1, 4)  # one trial done, the second starts
    p.trial_done(3.0)
    torch.manual_seed(0)
    fit(create_model("resnet8", num_classes=10, in_channels=1), digits, TrainConfig(epochs=1, batch_size=128),
        seed=0, device="cpu", log=None, progress=p)
    assert lines, "no progress reported"
    assert all("trial 2/4" in ln and "epoch 1/1" in ln and "img/s" in ln and "eta" in ln and "search eta" in ln
               for ln in lines)


def test_plain_progress_is_rate_limited(digits):
    lines: list[str] = []
    fit(create_model("resnet8", num_classes=10, in_channels=1), digits, TrainConfig(epochs=1, batch_size=32),
        seed=0, device="cpu", log=lines.append, progress_every=3600)
    assert not [ln for ln in lines if "img/s" in ln]  # a short epoch prints its summary only


def test_tensorboard_gets_the_same_scalars_as_metrics_csv(tmp_path, teacher_ckpt):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from archkd import api
    from conftest import small_config

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "train.tensorboard": True})
    api.distill(cfg, log=None)
    rows = read_metrics(cfg.run_dir / "metrics.csv")
    acc = EventAccumulator(str(cfg.run_dir / "tensorboard" / "student"))
    acc.Reload()
    events = acc.Scalars("val/acc")  # hierarchical tags: TensorBoard groups them by their prefix
    assert [e.step for e in events] == [r["epoch"] for r in rows]
    assert [e.value for e in events] == pytest.approx([r["val_acc"] for r in rows])
    assert {"train/loss", "train/lr", "speed/images_per_s", "loss/kd"} <= set(acc.Tags()["scalars"])


def test_missing_tensorboard_is_a_user_error(tmp_path, monkeypatch):
    import builtins

    from archkd.distill import MetricsLog
    from archkd.errors import ArchkdError
    from archkd.tracking import Tracking

    real = builtins.__import__

    def no_tb(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tb)
    with pytest.raises(ArchkdError, match="pip install 'archkd\\[tensorboard\\]'"):
        MetricsLog(tmp_path / "m.csv", "student", Tracking(tmp_path, "t", ("tensorboard",)))
