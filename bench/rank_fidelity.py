"""How well each cheap way of rating a student ranks the reference set: Kendall τ against the reference's mean test
accuracy, beside the cost per candidate and the reference's own seed-to-seed τ (the ceiling).

The architectures are the reference set's ``stages`` students (``bench/reference.py``: the same draw, so this can run
before the reference finishes). Each ``--fidelities`` entry rates every one of them:

- ``trial:ExF``: a search trial — KD training for E epochs on a fraction F of the training split, scored by validation
  accuracy after BatchNorm recalibration (what ``search.fidelity=trained`` does);
- ``blockwise:ExF``: blockwise distillation (``search.fidelity=blockwise``): each stage trained alone against the
  teacher's stage for E epochs on F, memoised across the candidates (their order is the reference's);
- ``supernet:ExF``: a weight-sharing supernet of the space (``archkd.models.supernet``) trained by KD for E epochs on
  F, one path per step drawn from the architectures being rated; each rated by its extracted weights (``extract``)
  after BatchNorm recalibration, on the validation split (GTN's inherited weights);
- ``diswot``, ``grad_norm``: zero-cost proxies (``archkd.proxies``) on two batches, DisWOT against a randomly
  initialised network of the teacher's architecture (DisWOT's protocol; ``--teacher-arch`` gives it as a spec).

Jobs are (fidelity, architecture), written after each; re-running resumes, and shards (``--fidelities`` split over
processes, one per core) are pooled with ``--combine``. The τ table is computed against ``--reference`` (its JSON, or
its shard files while it is being built) whenever the rows are pooled.

    python bench/rank_fidelity.py --dataset cifar10 --data D.zip --teacher T.pt --fidelities trial:1x0.2 \\
        --reference bench/data/cifar10_reference.json --out a.json
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from _common import fill_presets  # noqa: E402  (bench/ is on sys.path when run as a script)
from _searchbench import Setup, add_run_args, bench_parser, run_bench, shared_config  # noqa: E402
from reference import PRESETS as REFERENCE_PRESETS, architectures  # noqa: E402

from archkd import api  # noqa: E402
from archkd.distill import (Batch, BlockRecipe, BlockwiseScorer, StepContext, TrainHook, evaluate, fit,  # noqa: E402
                            objective_from_config)
from archkd.models import build_from_spec  # noqa: E402
from archkd.models.supernet import Supernet, create_supernet  # noqa: E402
from archkd.proxies import ProxyScorer  # noqa: E402
from archkd.search.fidelity import rank_agreement  # noqa: E402
from archkd.spaces import create_space  # noqa: E402
from archkd.teacher.generic import extract_student  # noqa: E402

# the shared CIFAR-10 teacher's architecture (ResNet, one basic block per stage at 32/64/128 channels) as a spec
TEACHER_ARCH = {"name": "stagenet", "num_classes": 10, "in_channels": 3, "kwargs": {"stages": [
    {"depth": 1, "width": 32, "kernel": 3}, {"depth": 1, "width": 64, "kernel": 3},
    {"depth": 1, "width": 128, "kernel": 3}]}}
PRESETS = {k: {"archs": v["archs"], "max_params": v["max_params"], "val_fraction": v["val_fraction"],
               "fidelities": ["trial:1x0.2", "trial:2x0.2", "blockwise:1x0.2", "supernet:4x0.2", "diswot", "grad_norm"]
               if k == "cifar10" else ["trial:1x1", "blockwise:1x1", "supernet:2x1", "diswot", "grad_norm"]}
           for k, v in REFERENCE_PRESETS.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser(__doc__, PRESETS, "cifar10", ("max_params", "val_fraction"))
    p.add_argument("--fidelities", nargs="+", help="trial:ExF, blockwise:ExF, supernet:ExF, diswot, grad_norm")
    p.add_argument("--reference", nargs="+", help="the reference set's JSON (or its shard files)")
    p.add_argument("--archs", type=int)
    p.add_argument("--teacher-arch", help="JSON spec of the teacher's architecture for DisWOT (default: the shared "
                                          "CIFAR-10 teacher's; digits: the digits teacher's own)")
    add_run_args(p)
    args = fill_presets(p.parse_args(argv), PRESETS, "rank_fidelity")
    args.seeds, args.methods = [0], None
    return args


def parse_fidelity(name: str) -> tuple[str, int, float]:
    kind, _, rest = name.partition(":")
    if not rest:
        return kind, 0, 0.0
    epochs, fraction = rest.split("x")
    return kind, int(epochs), float(fraction)


class Raters:
    """One rater per fidelity, built on first use (the blockwise library and the proxies' batches are shared by every
    architecture of the process)."""

    def __init__(self, st: Setup, teacher_arch: dict | None, specs: dict[str, dict]) -> None:
        self.st, self.teacher_arch, self.specs, self.made = st, teacher_arch, specs, {}

    def rate(self, fidelity: str, spec: dict) -> dict:
        """The rating and its cost: wall-clock seconds, and CPU seconds of this process (one thread: the cost whatever
        else the machine runs)."""
        c0 = time.process_time()
        out = self._rate(fidelity, spec)
        return {**out, "cpu_seconds": time.process_time() - c0}

    def _rate(self, fidelity: str, spec: dict) -> dict:
        kind, epochs, fraction = parse_fidelity(fidelity)
        st = self.st
        t0 = time.perf_counter()
        if kind == "trial":
            cfg = copy.deepcopy(st.cfg.train)
            cfg.epochs, cfg.data_fraction, cfg.bn_recalibration = epochs, fraction, st.cfg.search.bn_recalibration
            torch.manual_seed(0)
            model = build_from_spec(spec)
            cache = self.made.setdefault("cache", api.make_cache(st.cfg, st.teacher, st.data))
            res = fit(model, st.data, cfg, objective=objective_from_config(st.cfg.distill, cfg.label_smoothing),
                      teacher=st.teacher.module, cache=cache, seed=0, device="cpu", log=None)
            return {"score": res.best_val_acc, "seconds": time.perf_counter() - t0}
        if kind == "blockwise":
            if fidelity not in self.made:
                self.made[fidelity] = BlockwiseScorer(
                    st.teacher.module, st.teacher.fingerprint, st.data, st.cfg.cache_dir,
                    BlockRecipe(epochs=epochs, data_fraction=fraction, lr=st.cfg.search.blockwise_lr,
                                batch_size=st.cfg.train.batch_size), log=st.log)
            s = self.made[fidelity].score(build_from_spec(spec))
            return {"score": s.score, "seconds": time.perf_counter() - t0, "nsr": s.nsr, "trained": s.trained,
                    "reused": s.reused}
        if kind == "supernet":
            if fidelity not in self.made:
                self.made[fidelity] = self._supernet(epochs, fraction)
            torch.manual_seed(0)
            model = extract_student(self.made[fidelity], spec, st.data, n=st.cfg.search.bn_recalibration)
            return {"score": evaluate(model, st.data.val, st.data.normalize, "cpu"),
                    "seconds": time.perf_counter() - t0}
        if "proxies" not in self.made:
            torch.manual_seed(0)
            reference = build_from_spec(self.teacher_arch or st.teacher.spec)
            self.made["proxies"] = ProxyScorer(["diswot", "grad_norm"], reference, st.data, n_batches=2)
        t0 = time.perf_counter()
        return {"score": float(self.made["proxies"](spec)[kind]), "seconds": time.perf_counter() - t0}


    def _supernet(self, epochs: int, fraction: float) -> Supernet:
        """A weight-sharing supernet of the space, trained by KD from the teacher for ``epochs`` on ``fraction`` of the
        images, one path per step drawn uniformly from the architectures being rated (GTN's pool)."""
        st = self.st
        space = create_space("stages")
        supernet = create_supernet(space.spec(space.largest(), st.data.input_shape, st.data.num_classes))
        cfg = copy.deepcopy(st.cfg.train)
        cfg.epochs, cfg.data_fraction, cfg.bn_recalibration = epochs, fraction, 0
        specs = [v for k, v in self.specs.items() if k.startswith("stages")]
        fit(supernet, st.data, cfg, objective=objective_from_config(st.cfg.distill, cfg.label_smoothing),
            teacher=st.teacher.module, cache=self.made.setdefault("cache", api.make_cache(st.cfg, st.teacher, st.data)),
            seed=0, device="cpu", log=None, hooks=[PathSampler(supernet, specs)])
        return supernet


class PathSampler(TrainHook):
    """Before each step, one of ``specs`` (seeded, uniform) becomes the supernet's active path."""

    def __init__(self, supernet: Supernet, specs: list[dict], seed: int = 0) -> None:
        self.supernet, self.specs = supernet, specs
        self.generator = torch.Generator().manual_seed(seed)

    def before_step(self, ctx: StepContext, batch: Batch) -> None:
        self.supernet.set_path(self.specs[int(torch.randint(len(self.specs), (1,), generator=self.generator))])


def reference_accuracy(files: list[str] | None) -> dict[str, dict[int, float]]:
    """Test accuracy by architecture and seed, pooled over the reference's files."""
    by: dict[str, dict[int, float]] = {}
    for f in files or []:
        if Path(f).is_file():
            for r in json.loads(Path(f).read_text())["rows"]:
                by.setdefault(r["method"], {})[int(r["seed"])] = r["test_acc"]
    return by


def summarize(rows: list[dict], reference: dict[str, dict[int, float]]) -> dict[str, Any]:
    seeds = sorted({s for v in reference.values() for s in v})
    full = {a: v for a, v in reference.items() if a.startswith("stages") and all(s in v for s in seeds)}
    out: dict[str, Any] = {"reference_archs": len(full), "fidelities": {}}
    if len(seeds) >= 2 and len(full) >= 3:
        archs = sorted(full)
        taus = []
        for a, b in itertools.combinations(seeds, 2):
            tau, ci = rank_agreement([full[k][a] for k in archs], [full[k][b] for k in archs])
            taus.append({"seeds": [a, b], "tau": tau, "ci": list(ci), "n": len(archs)})
        out["ceiling"] = taus
    for fid in dict.fromkeys(r["method"] for r in rows):
        mine = {r["arch"]: r for r in rows if r["method"] == fid}
        common = sorted(set(mine) & set(full))
        tau, ci = (rank_agreement([mine[a]["score"] for a in common],
                                  [statistics.fmean(full[a].values()) for a in common])
                   if len(common) >= 3 else (float("nan"), (float("nan"), float("nan"))))
        out["fidelities"][fid] = {"tau": tau, "ci": list(ci), "n": len(common), "rated": len(mine),
                                  "seconds_per_candidate": statistics.fmean(r["seconds"] for r in mine.values()),
                                  "cpu_seconds_per_candidate": statistics.fmean(r["cpu_seconds"]
                                                                                for r in mine.values()),
                                  **({"blocks_trained": sum(r["trained"] for r in mine.values()),
                                      "blocks_reused": sum(r["reused"] for r in mine.values())}
                                     if fid.startswith("blockwise") else {})}
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    teacher_arch = json.loads(args.teacher_arch) if args.teacher_arch else (
        TEACHER_ARCH if args.dataset == "cifar10" else None)

    def finish(rows: list[dict], teacher: dict, seconds: float) -> dict:
        s = summarize(rows, reference_accuracy(args.reference))
        lines = [f"Ranking the reference set ({args.dataset}, {s['reference_archs']} stages students with both "
                 f"reference seeds; teacher test {teacher['test_acc']:.4f})",
                 "| rating | Kendall τ vs reference [95 % CI] | students | CPU seconds per student |", "|---|---|---|---|"]
        for fid, r in s["fidelities"].items():
            lines.append(f"| {fid} | {r['tau']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | {r['n']} | "
                         f"{r['cpu_seconds_per_candidate']:.1f} |")
        for c in s.get("ceiling", []):
            lines.append(f"| ceiling: reference seed {c['seeds'][0]} vs {c['seeds'][1]} | {c['tau']:+.2f} "
                         f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}] | {c['n']} | — |")
        return {"summary": s, "table": "\n".join(lines)}

    state: dict[str, Any] = {}

    def job_for(fid: str, arch: str):  # noqa: ANN202
        def job(st: Setup, name: str, seed: int) -> dict:
            if not state:
                state["specs"] = dict(architectures(args.archs, args.max_params, st.data.input_shape,
                                                    st.data.num_classes))
                state["rater"] = Raters(st, teacher_arch, state["specs"])
            return {"method": fid, "arch": arch, "seed": seed, **state["rater"].rate(fid, state["specs"][arch])}
        return job

    names = [f"stages{k:02d}" for k in range(args.archs)]
    run_bench(args, "rank_fidelity", shared_config,
              [(f"{fid}@{a}", job_for(fid, a)) for fid in args.fidelities for a in names],
              lambda r: f"{r['method']:<16} {r['arch']}: score {r['score']:.4f}, {r['seconds']:.1f} s", finish)


if __name__ == "__main__":
    main()
