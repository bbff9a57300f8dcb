"""GTN: does one generic teacher distil better into a pool of students than a vanilla teacher of the same architecture
and training length, and than one teacher fine-tuned per student, and at what teacher-training cost?

Per seed, on one dataset:

1. a **vanilla teacher** (``teacher.arch``, CE, ``teacher_epochs``);
2. a **pool** of students of the ``stages`` space within ``max_params``: ``random`` random ones and the top
   ``searched`` of a short KD-guided search (random sampler, ``search_trials`` trials) guided by the vanilla teacher;
3. a **generic teacher**: the same architecture and epochs, trained from scratch by ``archkd teacher generic`` against
   a weight-sharing supernet of that pool;
4. **per-pair teachers**, the baseline GTN argues against (SFTN-style, one teacher per student): for each pool student,
   the vanilla teacher fine-tuned by ``archkd teacher generic`` (``teacher.path`` = the vanilla checkpoint, the same
   teacher recipe and conditioning loss, ``--generic`` overrides included) against a pool of exactly that student (a
   one-entry list file), for ``--pair-epochs`` epochs. Default: ``teacher_epochs``, the generic teacher's own length,
   so each student gets as much conditioning as the generic teacher spends on the whole pool (the baseline at its
   strongest for this budget; one fine-tuning then costs about one generic training);
5. every pool student distilled from scratch from the vanilla, the generic and its own per-pair teacher with the same KD
   recipe and the same initialisation (same architecture file, seed and ``student.init=scratch``), and tested.

Reported per seed and pooled: the teachers' accuracy; each student's test accuracy under each teacher; the paired
differences (generic − vanilla), (per-pair − vanilla) and (generic − per-pair) with standard errors and how often each
side is better; each arm's teacher-training cost in teacher trainings (vanilla 1, generic 1 generic training,
per-pair N fine-tunings) and in seconds: the sum of the epochs' wall times in each training's history (a resumed
training counts its earlier epochs; setup, BatchNorm recalibration of extracted students and testing are not
counted). Seconds compare arms of one run on one machine under one load only; the per-pair arm also needs the vanilla
teacher it starts from (``seconds_with_vanilla`` in the JSON), as does this benchmark's searched pool.

Resuming: every finished piece (a teacher, the search, a distillation) is recorded in the output JSON as it finishes,
with the pieces it was made from; re-running the command reads them back and computes only what is missing (a piece
whose inputs were recomputed is recomputed too), and an interrupted teacher or student training continues from its
run directory's ``last.pt``. Seeds may run as separate processes writing one JSON (``--seeds 0`` beside
``--seeds 1``); its tables pool every finished seed. A JSON of other arguments is refused (``--fresh`` starts over);
``--pair-epochs`` and ``--pair`` are not among them: changing them redoes the per-pair arm only.

    python bench/gtn.py --dataset digits               # 3 seeds, ~4-8 min each on one core of a busy 2-core machine
    python bench/gtn.py --dataset digits --seeds 1     # another seed in a second process, same JSON
    python bench/gtn.py --dataset cifar10              # ../shared/data/cifar10-jpeg.zip, low fidelity

Writes ``bench/results/gtn_<dataset>.json`` after every piece; run directories go to ``bench/results/gtn_<dataset>/``.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import io
import json
import os
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from _common import bench_config, fill_presets, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)

from archkd import api  # noqa: E402
from archkd.config import Config, set_key  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "resnet20", "teacher_epochs": 20, "student_epochs": 20, "data_fraction": 1.0,
               "teacher_fraction": 1.0, "search_trials": 8, "search_epochs": 3, "max_params": 30_000,
               "val_fraction": 0.1},
    # CIFAR-10 at CPU scale (one thread on a shared 2-core machine: ~15 min per seed): teachers see a fifth of the
    # training images 3 times, students a tenth twice; accuracies are far from converged
    "cifar10": {"arch": "resnet20", "teacher_epochs": 3, "student_epochs": 2, "data_fraction": 0.1,
                "teacher_fraction": 0.2, "search_trials": 4, "search_epochs": 1, "max_params": 20_000,
                "val_fraction": 0.05},
}
WIDTHS = [8, 12, 16, 24, 32, 48]
ARMS = ("vanilla", "generic", "per_pair")
# arguments that make no other benchmark: which seeds, where, and the per-pair arm (its pieces carry their own key)
IDENTITY_FREE = ("seeds", "out", "pair_epochs", "pair", "fresh")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--random", type=int, default=3, help="random students in the pool")
    p.add_argument("--searched", type=int, default=2, help="searched students in the pool")
    for k in PRESETS["digits"]:
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=type(PRESETS["digits"][k]), default=None)
    p.add_argument("--generic", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides of the generic teacher's run and of the per-pair fine-tunings, "
                        "e.g. generic.condition=kd")
    p.add_argument("--pair-epochs", type=int, default=None,
                   help="epochs of each per-pair fine-tuning (default: --teacher-epochs, the generic teacher's length)")
    p.add_argument("--pair", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides of the per-pair fine-tunings only, after --generic's, "
                        "e.g. teacher.train.lr=0.01")
    p.add_argument("--fresh", action="store_true",
                   help="forget the pieces the output JSON records for these seeds (all of it if its arguments differ)")
    p.add_argument("--out", help="JSON output (default bench/results/gtn_<dataset>.json)")
    args = fill_presets(p.parse_args(argv), PRESETS, "gtn")
    if args.pair_epochs is None:
        args.pair_epochs = args.teacher_epochs
    if args.pair_epochs < 1:
        p.error("--pair-epochs must be at least 1")
    return args


def base(args: argparse.Namespace, seed: int, name: str) -> Config:
    return bench_config("gtn", args.dataset, f"{name}_s{seed}", seed, args.val_fraction, [
        f"teacher.arch={args.arch}",
        f"teacher.train.epochs={args.teacher_epochs}", f"teacher.train.data_fraction={args.teacher_fraction}",
        f"train.epochs={args.student_epochs}", f"train.data_fraction={args.data_fraction}",
        f"budget.max_params={args.max_params}", f"search.space_kwargs={{widths: {WIDTHS}}}",
        f"generic.space_kwargs={{widths: {WIDTHS}}}"])


def _normal(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples become lists), so recorded and current keys compare equal."""
    return json.loads(json.dumps(x, default=str))


def pair_key(args: argparse.Namespace) -> dict:
    """What a per-pair piece was made with: pieces of another key are recomputed."""
    return _normal({"epochs": args.pair_epochs, "overrides": list(args.pair)})


class Ledger:
    """The output JSON as the record of finished pieces, per seed: ``pieces[seed][name]`` holds the piece's value, a
    stamp, and the stamps of the pieces it was made from. Several processes (one per seed) share the file: every
    read-modify-write holds an ``fcntl`` lock on ``<out>.lock``, and the file is replaced whole."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = Path(args.out)
        self.identity = _normal({k: v for k, v in vars(args).items() if k not in IDENTITY_FREE})
        with self._locked():
            doc = self._read()
            if doc is not None and doc.get("identity") != self.identity:
                if not args.fresh:
                    old = doc.get("identity") or {}
                    differ = ', '.join(sorted(k for k in set(old) | set(self.identity)
                                              if old.get(k) != self.identity.get(k)))
                    raise SystemExit(f"{self.path} holds runs of other arguments (they differ in {differ}"
                                     f"{'' if old else '; it records none'}): give --out for a new file, or --fresh "
                                     "to start this one over")
                doc = None
            doc = doc or {"pieces": {}}
            if args.fresh:
                for s in args.seeds:
                    doc["pieces"].pop(str(s), None)
            self._write(doc)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict | None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            raise SystemExit(f"{self.path} is not valid JSON: give --out for a new file, or delete it") from None
        return doc if isinstance(doc, dict) else {}

    def _write(self, doc: dict) -> dict:
        """Rebuild the finished seeds' records, summary and tables from the pieces; replace the file whole."""
        runs = [assemble(self.args, int(s), p) for s, p in sorted(doc["pieces"].items(), key=lambda kv: int(kv[0]))
                if finished(self.args, p)]
        summary = summarise(runs) if runs else None
        payload = {"bench": "gtn", "dataset": self.args.dataset, "args": vars(self.args), "identity": self.identity,
                   "runs": runs, "summary": summary, "table": tables(self.args, runs, summary) if runs else None,
                   "seconds": sum(q.get("seconds", 0.0) for p in doc["pieces"].values() for q in p.values()),
                   "pieces": doc["pieces"]}
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with contextlib.redirect_stdout(io.StringIO()):  # write_result names the temporary file
            payload = write_result(tmp, payload)
        os.replace(tmp, self.path)
        return payload

    def pieces(self, seed: int) -> dict:
        with self._locked():
            doc = self._read() or {}
        return (doc.get("pieces") or {}).get(str(seed), {})

    def save(self, seed: int, pieces: dict) -> dict:
        with self._locked():
            doc = self._read() or {}
            if doc.get("identity") != self.identity:
                raise SystemExit(f"{self.path} was started over by another process with other arguments")
            doc.setdefault("pieces", {})[str(seed)] = pieces
            return self._write(doc)


def _files_exist(value: Any) -> bool:
    """Every file a recorded piece points to (checkpoints, a search's results) is still there."""
    if isinstance(value, dict):
        return all(Path(v).is_file() for k, v in value.items() if k in ("checkpoint", "results")) and \
            all(_files_exist(v) for v in value.values() if isinstance(v, (dict, list)))
    if isinstance(value, list):
        return all(_files_exist(v) for v in value)
    return True


def piece(ledger: Ledger, seed: int, pieces: dict, name: str, deps: list[str], compute: Callable[[], dict],
          key: Any = None) -> dict:
    """The piece ``name`` of this seed: read back if recorded from the same ``deps`` (their stamps) with the same
    ``key`` and its files present; else ``compute()``d, recorded with the seconds it took, and every piece made from
    an earlier version of it dropped."""
    want = {d: pieces[d]["stamp"] for d in deps}
    key = _normal(key)
    p = pieces.get(name)
    if p is not None and p["deps"] == want and p.get("key") == key and _files_exist(p["value"]):
        print(f"  seed {seed} {name}: read back", flush=True)
        return p["value"]
    t0 = time.perf_counter()
    value = _normal(compute())
    gone = {name}
    while True:  # pieces made from the old version, and pieces made from those
        stale = {n for n, q in pieces.items() if n not in gone and gone & set(q["deps"])}
        if not stale:
            break
        gone |= stale
    for n in gone:
        pieces.pop(n, None)
    pieces[name] = {"value": value, "stamp": uuid.uuid4().hex, "deps": want, "key": key,
                    "seconds": time.perf_counter() - t0}
    ledger.save(seed, pieces)
    print(f"  seed {seed} {name}: done in {pieces[name]['seconds']:.0f} s", flush=True)
    return value


def teacher_summary(r: dict) -> dict:
    return {"checkpoint": r["checkpoint"], "params": r["params"], "val_acc": r["val_acc"], "test_acc": r["test_acc"],
            "seconds": r["seconds"], "train_seconds": sum(h["seconds"] for h in r["history"]),
            "epoch_seconds": epoch_seconds(r), "epochs": len(r["history"])}


def epoch_seconds(run: dict) -> float:
    """The median epoch's wall time: the overhead of GTN per epoch, free of the first epoch's warm-up."""
    return statistics.median(h["seconds"] for h in run["history"])


def one_seed(args: argparse.Namespace, seed: int, ledger: Ledger) -> None:
    log = None
    pieces = ledger.pieces(seed)
    get = functools.partial(piece, ledger, seed, pieces)

    def vanilla_teacher() -> dict:
        return teacher_summary(api.train_teacher(base(args, seed, "vanilla"), log))

    vanilla = get("vanilla", [], vanilla_teacher)

    def search() -> dict:
        cfg = base(args, seed, "search")
        shutil.rmtree(cfg.run_dir, ignore_errors=True)  # a study of an earlier teacher would be continued
        cfg.teacher.path = vanilla["checkpoint"]
        for k, v in (("search.n_trials", args.search_trials), ("search.epochs", args.search_epochs),
                     ("search.data_fraction", args.data_fraction)):
            set_key(cfg, k, v)
        api.search(cfg, log)
        return {"results": str(cfg.run_dir / "results.json")}

    searched = get("search", ["vanilla"], search)

    def generic_teacher() -> dict:
        cfg = base(args, seed, "generic")
        cfg.generic.pool = [f"random:{args.random}", f"{searched['results']}:{args.searched}"]
        for item in args.generic:
            set_key(cfg, *item.split("=", 1))
        r = api.generic_teacher(cfg, log)
        return {**teacher_summary(r), "path_entropy": r["path_entropy"],
                "pool": [{k: m[k] for k in ("index", "config", "params", "probability", "supernet_val_acc",
                                            "checkpoint")} for m in r["pool"]]}

    generic = get("generic", ["search"], generic_teacher)

    def distill(label: str, teacher: dict, m: dict) -> Callable[[], dict]:
        def run() -> dict:
            cfg = base(args, seed, f"kd_{label}_{m['index']}")
            cfg.teacher.path = teacher["checkpoint"]
            cfg.student.checkpoint = m["checkpoint"]  # the architecture only: student.init stays scratch
            r = api.distill(cfg, log, resume=True)  # an interrupted distillation continues
            return {k: r[k] for k in ("test_acc", "val_acc", "checkpoint", "seconds")}
        return run

    def pair_teacher(m: dict) -> Callable[[], dict]:
        def run() -> dict:
            cfg = base(args, seed, f"pair_{m['index']}")
            # the fine-tuning's last.pt is resumed when it was started from this very vanilla teacher only: the
            # training's own key covers the pool, recipe and seed, not the weights it started from
            start = {"vanilla": pieces["vanilla"]["stamp"]}
            marker = cfg.run_dir / "gtn_start.json"
            if cfg.run_dir.exists() and (not marker.is_file() or json.loads(marker.read_text()) != start):
                shutil.rmtree(cfg.run_dir)
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(start) + "\n")
            pool_file = cfg.run_dir / "pool_config.json"  # a pool of exactly this student
            pool_file.write_text(json.dumps([m["config"]]) + "\n")
            set_key(cfg, "teacher.train.epochs", args.pair_epochs)
            for item in [*args.generic, *args.pair]:
                set_key(cfg, *item.split("=", 1))
            cfg.generic.pool = [str(pool_file)]
            cfg.teacher.path = vanilla["checkpoint"]
            r = api.generic_teacher(cfg, log)
            if r["init"] != "fine-tune" or len(r["pool"]) != 1 or r["pool"][0]["config"] != m["config"]:
                raise SystemExit(f"per-pair run {cfg.run_dir} did not fine-tune the vanilla teacher on its student")
            return {**teacher_summary(r), "supernet_val_acc": r["pool"][0]["supernet_val_acc"]}
        return run

    for m in generic["pool"]:
        i = m["index"]
        kd_v = get(f"kd_vanilla_{i}", ["vanilla", "generic"], distill("vanilla", vanilla, m))
        kd_g = get(f"kd_generic_{i}", ["generic"], distill("generic", generic, m))
        pair = get(f"pair_{i}", ["vanilla", "generic"], pair_teacher(m), key=pair_key(args))
        kd_p = get(f"kd_pair_{i}", ["generic", f"pair_{i}"], distill("pair", pair, m), key=pair_key(args))
        print(f"  seed {seed} student {i} ({'random' if i < args.random else 'searched'}, {m['params']:,} params): "
              f"vanilla {kd_v['test_acc']:.4f} generic {kd_g['test_acc']:.4f} per-pair {kd_p['test_acc']:.4f} "
              f"(its teacher {pair['test_acc']:.4f})", flush=True)


def finished(args: argparse.Namespace, pieces: dict) -> bool:
    """Every piece of the seed is recorded, its per-pair pieces with this run's per-pair settings."""
    if not all(n in pieces for n in ("vanilla", "search", "generic")):
        return False
    key = pair_key(args)
    for m in pieces["generic"]["value"]["pool"]:
        i = m["index"]
        if not all(f"{k}_{i}" in pieces for k in ("kd_vanilla", "kd_generic", "pair", "kd_pair")):
            return False
        if pieces[f"pair_{i}"].get("key") != key or pieces[f"kd_pair_{i}"].get("key") != key:
            return False
    return True


def assemble(args: argparse.Namespace, seed: int, pieces: dict) -> dict:
    """A finished seed's record: the teachers, each student under each teacher and the differences, the costs."""
    val = {n: p["value"] for n, p in pieces.items()}
    vanilla, generic = val["vanilla"], val["generic"]
    keep = ("val_acc", "test_acc", "seconds", "train_seconds", "epoch_seconds", "params", "epochs")
    students, pairs = [], []
    for m in generic["pool"]:
        i = m["index"]
        pt = val[f"pair_{i}"]
        row: dict[str, Any] = {"index": i, "source": "random" if i < args.random else "searched",
                               "config": m["config"], "params": m["params"], "supernet_val_acc": m["supernet_val_acc"],
                               "vanilla": val[f"kd_vanilla_{i}"]["test_acc"],
                               "generic": val[f"kd_generic_{i}"]["test_acc"],
                               "per_pair": val[f"kd_pair_{i}"]["test_acc"], "pair_teacher_test": pt["test_acc"]}
        row["diff"] = row["generic"] - row["vanilla"]
        row["diff_pair"] = row["per_pair"] - row["vanilla"]
        row["diff_generic_pair"] = row["generic"] - row["per_pair"]
        students.append(row)
        pairs.append({"index": i, **{k: pt[k] for k in (*keep, "supernet_val_acc")}})
    n = len(students)
    pair_seconds = sum(p["train_seconds"] for p in pairs)
    cost = {"vanilla": {"trainings": 1, "what": "1 training", "epochs": vanilla["epochs"],
                        "seconds": vanilla["train_seconds"]},
            "generic": {"trainings": 1, "what": "1 generic training", "epochs": generic["epochs"],
                        "seconds": generic["train_seconds"]},
            "per_pair": {"trainings": n, "what": f"{n} fine-tunings", "epochs": sum(p["epochs"] for p in pairs),
                         "seconds": pair_seconds, "seconds_with_vanilla": pair_seconds + vanilla["train_seconds"]}}
    for c in cost.values():
        c["seconds_per_student"] = c["seconds"] / n
    return {"seed": seed, "vanilla": {k: vanilla[k] for k in keep}, "generic": {k: generic[k] for k in keep},
            "per_pair": {"epochs": pieces[f"pair_{students[0]['index']}"]["key"]["epochs"],
                         "overrides": pieces[f"pair_{students[0]['index']}"]["key"]["overrides"],
                         "test_acc": statistics.mean(p["test_acc"] for p in pairs),
                         "epoch_seconds": statistics.median(p["epoch_seconds"] for p in pairs), "teachers": pairs},
            "overhead": generic["epoch_seconds"] / vanilla["epoch_seconds"], "path_entropy": generic["path_entropy"],
            "students": students, "cost": cost, "seconds": sum(p.get("seconds", 0.0) for p in pieces.values())}


def paired(diffs: list[float]) -> dict:
    """Mean and standard error of paired differences, and how often each side is ahead."""
    return {"pairs": len(diffs), "mean": statistics.mean(diffs),
            "se": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan"),
            "first_better": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs),
            "second_better": sum(d < 0 for d in diffs)}


def summarise(runs: list[dict]) -> dict:
    st = [s for r in runs for s in r["students"]]
    gv = paired([s["diff"] for s in st])
    out = {"pairs": gv["pairs"], "mean_diff": gv["mean"], "se_diff": gv["se"], "generic_wins": gv["first_better"],
           "ties": gv["ties"],
           "generic_vs_vanilla": gv, "per_pair_vs_vanilla": paired([s["diff_pair"] for s in st]),
           "generic_vs_per_pair": paired([s["diff_generic_pair"] for s in st]),
           **{f"mean_{a}": statistics.mean(s[a] for s in st) for a in ARMS},
           "teacher_test": {a: statistics.mean(r[a]["test_acc"] for r in runs) for a in ARMS},
           "overhead": statistics.mean(r["overhead"] for r in runs),
           "per_pair_epochs": sorted({r["per_pair"]["epochs"] for r in runs}),
           "cost": {}}
    for a in ARMS:
        secs = [r["cost"][a]["seconds"] for r in runs]
        out["cost"][a] = {"trainings_per_seed": statistics.mean(r["cost"][a]["trainings"] for r in runs),
                          "epochs_per_seed": statistics.mean(r["cost"][a]["epochs"] for r in runs),
                          "seconds_per_seed": statistics.mean(secs), "seconds_total": sum(secs),
                          "seconds_per_student": sum(secs) / len(st)}
    out["cost"]["per_pair"]["seconds_with_vanilla_per_seed"] = statistics.mean(
        r["cost"]["per_pair"]["seconds_with_vanilla"] for r in runs)
    out["cost"]["per_pair_over_generic"] = (out["cost"]["per_pair"]["seconds_total"] /
                                            out["cost"]["generic"]["seconds_total"])
    return out


def _d(p: dict) -> str:
    se = "" if p["pairs"] < 2 else f" ± {100 * p['se']:.2f}"
    return f"{100 * p['mean']:+.2f}{se}"


def _wins(p: dict) -> str:
    return f"{p['first_better']}/{p['pairs']}" + (f" ({p['ties']} tie{'s' * (p['ties'] > 1)})" if p["ties"] else "")


def _cost(c: dict, seconds: float) -> str:
    return f"{c['what']} ({c['epochs']} ep), {seconds:.0f} s"


def tables(args: argparse.Namespace, runs: list[dict], summary: dict) -> str:
    lines = ["| seed | teacher | trainings | test acc (%) | s / epoch (median) | teacher-training s | "
             "pool mean KD test acc (%) |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        for a in ARMS:
            c = r["cost"][a]
            mean = statistics.mean(s[a] for s in r["students"])
            acc = f"{100 * r[a]['test_acc']:.2f}" + (" (mean)" if a == "per_pair" else "")
            lines.append(f"| {r['seed']} | {a.replace('_', '-')} | {c['what']} | {acc} | "
                         f"{r[a]['epoch_seconds']:.2f} | {c['seconds']:.0f} | {100 * mean:.2f} |")
    lines += ["", "| seed | student | source | params | supernet val | KD ← vanilla | KD ← generic | KD ← per-pair | "
                  "per-pair teacher | generic − vanilla | per-pair − vanilla | generic − per-pair |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for s in r["students"]:
            lines.append(f"| {r['seed']} | {s['index']} | {s['source']} | {s['params']:,} | "
                         f"{100 * s['supernet_val_acc']:.1f} | {100 * s['vanilla']:.2f} | {100 * s['generic']:.2f} | "
                         f"{100 * s['per_pair']:.2f} | {100 * s['pair_teacher_test']:.2f} | {100 * s['diff']:+.2f} | "
                         f"{100 * s['diff_pair']:+.2f} | {100 * s['diff_generic_pair']:+.2f} |")
    lines += ["", "| seed | Δ per-pair − vanilla (points) | per-pair better | Δ generic − per-pair | generic better "
                  "than per-pair | Δ generic − vanilla | teacher cost: vanilla | generic | per-pair |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        pv = paired([s["diff_pair"] for s in r["students"]])
        gp = paired([s["diff_generic_pair"] for s in r["students"]])
        gv = paired([s["diff"] for s in r["students"]])
        lines.append(f"| {r['seed']} | {_d(pv)} | {_wins(pv)} | {_d(gp)} | {_wins(gp)} | {_d(gv)} | "
                     + " | ".join(_cost(r["cost"][a], r["cost"][a]["seconds"]) for a in ARMS) + " |")
    c = summary["cost"]
    what = {"vanilla": "1 training", "generic": "1 generic training",
            "per_pair": f"{c['per_pair']['trainings_per_seed']:g} fine-tunings"}
    pooled = " | ".join(f"{what[a]} ({c[a]['epochs_per_seed']:g} ep), {c[a]['seconds_per_seed']:.0f} s / seed"
                        for a in ARMS)
    lines.append(f"| pooled ({len(runs)} seeds) | **{_d(summary['per_pair_vs_vanilla'])}** | "
                 f"{_wins(summary['per_pair_vs_vanilla'])} | **{_d(summary['generic_vs_per_pair'])}** | "
                 f"{_wins(summary['generic_vs_per_pair'])} | {_d(summary['generic_vs_vanilla'])} | {pooled} |")
    t = summary["teacher_test"]
    lines += ["", f"Δ: mean ± s.e. of paired differences in test accuracy over students (pooled: {summary['pairs']} "
                  f"seed–student pairs). Teachers' test acc: vanilla {100 * t['vanilla']:.2f} / generic "
                  f"{100 * t['generic']:.2f} / per-pair {100 * t['per_pair']:.2f} % (mean); pool mean KD test acc "
                  f"{100 * summary['mean_vanilla']:.2f} / {100 * summary['mean_generic']:.2f} / "
                  f"{100 * summary['mean_per_pair']:.2f} %. Per-pair: {summary['per_pair_epochs']} fine-tuning "
                  f"epochs per student. Teacher cost per student served: vanilla "
                  f"{c['vanilla']['seconds_per_student']:.0f} s, generic {c['generic']['seconds_per_student']:.0f} s, "
                  f"per-pair {c['per_pair']['seconds_per_student']:.0f} s (per-pair / generic total "
                  f"× {c['per_pair_over_generic']:.2f}; with the vanilla teacher it starts from, per-pair costs "
                  f"{c['per_pair']['seconds_with_vanilla_per_seed']:.0f} s / seed). GTN epoch time × "
                  f"{summary['overhead']:.2f} of vanilla."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ledger = Ledger(args)
    for seed in args.seeds:
        print(f"seed {seed}", flush=True)
        one_seed(args, seed, ledger)
    doc = json.loads(Path(args.out).read_text())
    print(f"wrote {args.out}")
    if doc.get("table"):
        print(f"\n{len(doc['runs'])} finished seeds in {args.out}: {[r['seed'] for r in doc['runs']]}\n")
        print(doc["table"])


if __name__ == "__main__":
    main()
