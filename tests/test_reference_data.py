"""The committed CIFAR-10 reference set (issue #29, ``bench/reference.py``): its schema, and that every student in it
is what its spec builds."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from archkd.models import build_from_spec

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "data" / "cifar10_reference.json"


def test_the_cifar10_reference_set_is_complete_and_consistent():
    doc = json.loads(REFERENCE.read_text())
    assert doc["benchmark"] == "reference" and doc["dataset"] == "cifar10" and doc["complete"]
    args = doc["args"]
    assert args["epochs"] >= 8 and 0 < args["data_fraction"] <= 1 and args["max_params"] == 80_000
    assert 0.5 < doc["teacher"]["test_acc"] <= 1
    archs = doc["summary"]["architectures"]
    stages = [a for a in archs if a.startswith("stages")]
    assert len(stages) >= 24 and {"resnet8", "wrn_16_1"} <= set(archs)
    seeds = sorted({int(r["seed"]) for r in doc["rows"]})
    assert len(seeds) >= 2
    for name, a in archs.items():
        accs = list(a["test_acc_by_seed"].values())
        assert sorted(int(s) for s in a["test_acc_by_seed"]) == seeds, name
        assert all(0 <= v <= 1 for v in accs) and math.isclose(a["test_acc"], statistics.fmean(accs)), name
        assert a["flops"] > 0 and a["latency_ms"] > 0, name
        assert name not in stages or a["params"] <= args["max_params"], name
    for row in doc["rows"]:  # each row's student is its spec
        assert sum(p.numel() for p in build_from_spec(row["spec"]).parameters()) == row["params"], row["method"]
    agreement = doc["summary"]["seed_agreement"]
    assert agreement and all(-1 <= p["kendall_tau"] <= 1 and p["n"] == len(archs) for p in agreement)
