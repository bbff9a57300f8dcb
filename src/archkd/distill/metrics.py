"""``metrics.csv``: one row per epoch per training run (teacher, search trial, final student, process search).

Why append-only with fixed columns: several workers of one search may write the same run directory's file, and a
killed run must never leave a half-rewritten table; each row is one ``write`` of one line to a file opened for
appending. Loss terms differ between objectives, so they travel as one JSON column.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from archkd.tracking import Tracking, open_trackers

COLUMNS = ("run", "epoch", "train_loss", "val_acc", "lr", "images_per_s", "seconds", "losses")


class MetricsLog:
    """Appends fit's epoch rows, labelled with the run they belong to (``trial 3``, ``student``, ...), and forwards
    them to the experiment trackers ``tracking`` names (``archkd.tracking``: TensorBoard, MLflow), one tracker run per
    training run; ``finish(params, metrics)`` records a trial's parameters with its result there."""

    def __init__(self, path: str | Path, run: str, tracking: Tracking | None = None) -> None:
        self.path, self.run = Path(path), run
        self.trackers = open_trackers(tracking, run)

    def finish(self, params: dict, metrics: dict[str, float]) -> None:
        for t in self.trackers:
            t.finish(params, metrics)
            t.close()
        self.trackers = []

    def write(self, row: dict) -> None:
        for t in self.trackers:
            t.epoch(row)
        losses = {k[len("loss_"):]: v for k, v in row.items() if k.startswith("loss_")}
        values = [self.run, row.get("epoch"), row.get("train_loss"), row.get("val_acc"), row.get("lr"),
                  row.get("images_per_s"), row.get("seconds"), json.dumps(losses, sort_keys=True)]
        buf = io.StringIO()
        csv.writer(buf).writerow(values)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size == 0:
                os.write(fd, (",".join(COLUMNS) + "\n").encode())
            os.write(fd, buf.getvalue().encode())
        finally:
            os.close(fd)


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.csv`` with numbers parsed (empty cells are None, ``losses`` a dict)."""
    p = Path(path)
    if not p.is_file():
        return []
    out = []
    with p.open(newline="") as f:
        for r in csv.DictReader(f):
            row: dict = {"run": r["run"], "losses": json.loads(r["losses"] or "{}")}
            for k in COLUMNS[1:-1]:
                row[k] = None if r[k] in ("", None) else float(r[k])
            row["epoch"] = int(row["epoch"]) if row["epoch"] is not None else None
            out.append(row)
    return out
