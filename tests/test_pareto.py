"""Native multi-objective search (issue #28): objectives, the Pareto front, its hypervolume, NSGA-II."""
from __future__ import annotations

import json
from typing import get_args

import pytest

from archkd.config import ObjectiveName
from archkd.errors import ArchkdError
from archkd.search.pareto import OBJECTIVES, Objectives


def _row(n, acc, lat, state="COMPLETE"):
    return {"number": n, "state": state, "val_acc": acc, "latency_ms": lat}


def test_the_config_choice_and_the_objective_table_agree():
    assert set(get_args(ObjectiveName)) == set(OBJECTIVES)


def test_front_hypervolume_and_spread():
    o = Objectives.parse(["accuracy", "latency"])
    assert o.directions == ["maximize", "minimize"]
    rows = [_row(0, 0.5, 1.0), _row(1, 0.8, 2.0), _row(2, 0.4, 1.5), _row(3, 0.9, 3.0, "INFEASIBLE"),
            _row(4, 0.6, 1.2), {**_row(5, 0.5, 1.0), "duplicate_of": 0}]
    front = o.front(rows)
    assert [r["number"] for r in front] == [0, 4, 1]  # 2 is dominated by 0; infeasible and twins are left out
    assert not any(o.dominates(a, b) for a in front for b in front)
    ref = o.reference(rows, {"max_latency_ms": 2.5})
    assert ref == {"accuracy": 0.0, "latency": 2.5}
    # the union of [0, acc] × [lat, 2.5]: 0.5·1.5 + 0.1·1.3 + 0.2·0.5
    assert o.hypervolume(front, ref) == pytest.approx(0.75 + 0.13 + 0.10)
    assert o.reference(rows, {})["latency"] == pytest.approx(1.1 * 2.0)  # no limit: the largest feasible value
    assert [r["number"] for r in o.spread(front, 2)] == [0, 1] and o.spread(front, 1)[0]["number"] == 1


@pytest.mark.parametrize("names, problem", [(["latency", "params"], "not a trade-off"),
                                            (["accuracy"], "not a trade-off"),
                                            (["accuracy", "latency", "latency"], "not a trade-off"),
                                            (["accuracy", "speed"], "unknown search objective 'speed'")])
def test_objectives_that_are_not_a_trade_off_are_refused(names, problem):
    with pytest.raises(ArchkdError, match=problem):
        Objectives.parse(names)


def test_a_multi_objective_search_returns_a_front_and_its_hypervolume(tmp_path, teacher_ckpt):
    from conftest import small_config

    from archkd import api

    cfg = small_config(tmp_path, **{"teacher.path": teacher_ckpt, "search.method": "nsga2", "search.n_trials": 6,
                                    "search.objectives": ["accuracy", "latency"], "search.top_k": 2,
                                    "search.check_fidelity": 0, "train.epochs": 1,
                                    "search.sampler_options": {"population_size": 3}})
    r = api.search(cfg, log=None)
    o = Objectives.parse(["accuracy", "latency"])
    done = [t for t in r["trials"] if t["state"] == "COMPLETE"]
    front = [t for t in done if t["number"] in r["pareto"]["trials"]]
    assert front and not any(o.dominates(a, b) for a in done for b in front)  # nothing dominates a front member
    assert all(any(o.dominates(f, t) for f in front) for t in done if t not in front)
    assert r["pareto"]["objectives"] == ["accuracy", "latency"] and r["pareto"]["hypervolume"] > 0
    assert r["pareto"]["reference"]["accuracy"] == 0.0
    assert r["pareto"]["keys"] == ["val_acc", "latency_ms"] and r["pareto"]["cost"] == "latency_ms"
    assert {f["trial"] for f in r["top_k"]} <= set(r["pareto"]["trials"])  # a spread of the front is re-trained
    assert any(t["proposer"] == "model" for t in done)  # NSGA-II evolved past its first generation
    saved = json.loads((cfg.run_dir / "results.json").read_text())
    assert saved["search"]["pareto"]["hypervolume"] == r["pareto"]["hypervolume"]
    report = (cfg.run_dir / "report.html").read_text()
    assert "Pareto front (multi-objective search)" in report  # its own section, and the plot on latency's axis
    assert 'alt="validation accuracy vs latency (ms) of the search trials"' in report


def test_a_single_objective_method_refuses_objectives(tmp_path, teacher_ckpt, capsys):
    from conftest import cli_error

    line = cli_error(["search", "--teacher", teacher_ckpt, "--method", "akd", "--runs-dir", str(tmp_path),
                      "search.objectives=[accuracy,latency]"], capsys)
    assert "search.method=akd optimises one objective" in line and "nsga2" in line
