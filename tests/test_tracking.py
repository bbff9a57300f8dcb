"""Experiment trackers (issue #30): a 3-trial search logs each trial's epochs under hierarchical tags and its
configuration as hyper-parameters; what was written is read back with each tracker's own reader."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import small_config

from archkd import api
from archkd.distill import read_metrics


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, teacher_ckpt):
    """One 3-trial search logging to every tracker (each test reads back one of them)."""
    for module in ("tensorboard", "mlflow", "wandb"):
        pytest.importorskip(module)
    cfg = small_config(tmp_path_factory.mktemp("tracked"), **{"teacher.path": teacher_ckpt, "search.n_trials": 3,
                                                              "train.loggers": ["tensorboard", "mlflow", "wandb"]})
    return cfg, api.search(cfg, log=None)


def wandb_records(path) -> list:
    """The records of an offline W&B run file: a 7-byte header, then LevelDB-log blocks of 32 KiB whose records
    (7-byte header: CRC, length, type full/first/middle/last) carry ``Record`` protobufs."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, part, out = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        part = body if kind in (1, 2) else part + body
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(part)
            out.append(rec)
    return out


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
        config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert f"name: {cfg.name}" in config  # the resolved config as a text artifact


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
    config = Path(client.download_artifacts(parent[0].info.run_id, "config.yaml", str(cfg.run_dir))).read_text()
    assert f"name: {cfg.name}" in config and str(cfg.run_dir.resolve()) in exp.artifact_location
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


def test_wandb_writes_offline_runs_grouped_by_the_search(tracked):
    import json

    cfg, r = tracked
    runs = {}
    for f in (cfg.run_dir / "wandb").glob("offline-run-*/run-*.wandb"):
        recs = wandb_records(f)
        head = next(x.run for x in recs if x.WhichOneof("record_type") == "run")
        name = lambda i: i.key or "/".join(i.nested_key)  # noqa: E731 - W&B keeps "a/b" whole or split
        history = [{name(i): json.loads(i.value_json) for i in x.history.item} for x in recs
                   if x.WhichOneof("record_type") == "history"]
        config = {name(u): json.loads(u.value_json) for x in recs if x.WhichOneof("record_type") == "config"
                  for u in x.config.update}
        summary = {name(u): json.loads(u.value_json) for x in recs if x.WhichOneof("record_type") == "summary"
                   for u in x.summary.update}
        runs[head.display_name] = (head, history, config, summary)
    for t in (t for t in r["trials"] if t["state"] == "COMPLETE"):
        head, history, config, summary = runs[f"trial {t['number']}"]
        assert head.run_group == cfg.name
        assert [h["_step"] for h in history if "val/acc" in h] == list(range(1, cfg.search.epochs + 1))
        assert summary["final/val_acc"] == pytest.approx(t["val_acc"])
        assert {k: v for k, v in t["config"].items()}.items() <= config.items()
        assert f"name: {cfg.name}" in config["archkd_config"]
