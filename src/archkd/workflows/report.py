"""``archkd report``: a run's ``report.html`` regenerated from its ``results.json`` and current ``metrics.csv``."""
from __future__ import annotations

import json
from pathlib import Path

from archkd.distill import read_metrics
from archkd.errors import ArchkdError
from archkd.workflows.run import Log


def report(run_dir: str | Path, log: Log | None = print) -> Path:
    """Regenerate ``report.html`` of any run directory (search, distill, process search, teacher) from its
    ``results.json``, with the epoch metrics of its ``metrics.csv`` as they are now."""
    from archkd.report import RESULTS_FILE, write_report

    run = Path(run_dir)
    path = run / RESULTS_FILE
    if not path.is_file():
        raise ArchkdError(f"no {RESULTS_FILE} in {run}", "give a run directory written by archkd (runs/<name>)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArchkdError(f"{path} is not valid JSON", "re-run the command that wrote it") from None
    if not isinstance(results, dict) or "name" not in results:
        raise ArchkdError(f"{path} is not an archkd results file", "give a run directory written by archkd")
    if (run / "metrics.csv").is_file():
        results["metrics"] = read_metrics(run / "metrics.csv")
    out = write_report(run, results)
    if log:
        log(f"wrote {out}")
    return out
