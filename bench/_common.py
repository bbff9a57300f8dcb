"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import os


def load_avg() -> list[float] | None:
    """1/5/15-minute load averages, recorded with every benchmark: numbers taken on a busy machine are not comparable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
