"""Experiment trackers (issue #30): a 3-trial search logs each trial's epochs under hierarchical tags and its
configuration as hyper-parameters; what was written is read back with each tracker's own reader."""
from __future__ import annotations

import pytest
from conftest import small_config

from archkd import api
from archkd.distill import read_metrics


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, teacher_ckpt):
    """One 3-trial search logging to both trackers (each test reads back one of them)."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    cfg = small_config(tmp_path_factory.mktemp("tracked"), **{"teacher.path": teacher_ckpt, "search.n_trials": 3,
                                                              "train.loggers": ["tensorboard", "mlflow"]})
    return cfg, api.search(cfg, log=None)


def test_tensorboard_gets_every_trial_with_its_hparams(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg, r = tracked
    trained = [t for t in r["trials"] if t["state"] == "COMPLETE"]
    rows = read_metrics(cfg.run_dir / "metrics.csv")
    for t in trained:
        acc = EventAccumulator(str(cfg.run_dir / "tensorboard" / f"trial_{t['number']}"))
        acc.Reload()
        mine = [row for row in rows if row["run"] == f"trial {t['number']}"]
        assert [e.value for e in acc.Scalars("val/acc")] == pytest.approx([row["val_acc"] for row in mine])
        records = acc.PluginTagToContent("hparams")  # the HParams view's data: a session with the trial's values
        info = plugin_data_pb2.HParamsPluginData.FromString(records["_hparams_/session_start_info"]).session_start_info
        assert {k for k in t["config"]} <= set(info.hparams) and info.hparams["trial"].number_value == t["number"]
        assert acc.Scalars("hparam/val_acc")[-1].value == pytest.approx(t["val_acc"])


def test_mlflow_nests_every_trial_under_the_search(tracked):
    from mlflow.tracking import MlflowClient

    cfg, r = tracked
    client = MlflowClient(tracking_uri=f"sqlite:///{(cfg.run_dir / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id])
    parent = [x for x in runs if "mlflow.parentRunId" not in x.data.tags]
    children = {x.info.run_name: x for x in runs if "mlflow.parentRunId" in x.data.tags}
    assert len(parent) == 1 and all(x.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
                                    for x in children.values())
    for t in (t for t in r["trials"] if t["state"] == "COMPLETE"):
        run = children[f"trial {t['number']}"]
        history = client.get_metric_history(run.info.run_id, "val/acc")
        assert [m.step for m in history] == list(range(1, cfg.search.epochs + 1))
        assert run.data.metrics["final/val_acc"] == pytest.approx(t["val_acc"])
        assert {k: str(v) for k, v in t["config"].items()}.items() <= run.data.params.items()
        assert run.info.status == "FINISHED"


def test_an_unknown_tracker_is_refused_when_the_config_loads():
    from archkd.config import load_config
    from archkd.errors import ArchkdError

    with pytest.raises(ArchkdError, match="did you mean 'mlflow'"):
        load_config(overrides=["train.loggers=[mlflw]"])
