"""The ``mlflow`` tracker: a local MLflow store in the run directory, no server — ``runs/<name>/mlflow.db`` (SQLite:
MLflow's file store is in maintenance mode and refuses new runs), experiment = the archkd run's name, one MLflow run
per training run (each search trial, the final student, the teacher) nested under one parent run per archkd run, with
per-epoch metrics under hierarchical names and a finished trial's parameters; the resolved config is an artifact of
the parent run (``runs/<name>/mlartifacts``). Open it with
``mlflow ui --backend-store-uri sqlite:///runs/<name>/mlflow.db``. Extra: ``mlflow`` (``mlflow-skinny`` suffices).

Why the parent's id is kept in a file: the workers of one search are separate processes; the first to open the store
creates the parent run and writes its id with an exclusive create, the others read it, so every trial nests under the
same parent.
"""
from __future__ import annotations

import os
import time
from typing import Any

from archkd.errors import ArchkdError
from archkd.tracking import Tracker, Tracking, flat, register_tracker, require, tag

DB = "mlflow.db"
PARENT_FILE = "mlflow_parent_run"


def _parent(client: Any, experiment: str, tracking: Tracking) -> str:
    path = tracking.root / PARENT_FILE
    for _ in range(100):
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another worker is creating it: read it once written
            time.sleep(0.05)
            continue
        run = client.create_run(experiment, run_name=tracking.group, tags={"archkd.run": tracking.group})
        if tracking.config_yaml:
            client.log_text(run.info.run_id, tracking.config_yaml, "config.yaml")
        os.write(fd, run.info.run_id.encode())
        os.close(fd)
        return run.info.run_id
    raise ArchkdError(f"{path} stays empty", "delete it and run again")


class MLflowTracker(Tracker):
    def __init__(self, tracking: Tracking, run: str) -> None:
        client_class = require("mlflow.tracking", "mlflow", "'archkd[mlflow]' (or mlflow-skinny)").MlflowClient
        tracking.root.mkdir(parents=True, exist_ok=True)
        self.client = client_class(tracking_uri=f"sqlite:///{(tracking.root / DB).resolve()}")
        exp = self.client.get_experiment_by_name(tracking.group)
        # artifacts (the config) inside the run directory, not in MLflow's default ./mlruns of the working directory
        exp_id = exp.experiment_id if exp else self.client.create_experiment(
            tracking.group, artifact_location=(tracking.root / "mlartifacts").resolve().as_uri())
        parent = _parent(self.client, exp_id, tracking)
        self.run_id = self.client.create_run(exp_id, run_name=run, tags={"mlflow.parentRunId": parent,
                                                                          "archkd.run": tracking.group}).info.run_id

    def epoch(self, row: dict) -> None:
        step = int(row["epoch"])
        for k, v in row.items():
            t = tag(k)
            if t and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.client.log_metric(self.run_id, t, float(v), step=step)

    def finish(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        for k, v in flat(params).items():
            self.client.log_param(self.run_id, k, v)
        for k, v in metrics.items():
            self.client.log_metric(self.run_id, f"final/{k}", float(v))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


register_tracker("mlflow")(MLflowTracker)
