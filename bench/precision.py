"""Training precision and memory format chosen per student by ``archkd.distill.autotune`` (issue #26).

The tuner times a few training steps of each student under fp32 / bf16 autocast × contiguous / channels_last and
trains with the fastest. Three parts check that choice:

1. ``--part speed``: per student (the registry's CIFAR students and random members of every search space), batch 128,
   3×32×32, 1 thread: (a) the tuner as ``fit`` runs it (``autotune.choose`` with the step of
   ``trainer._precision``, an empty ``ARCHKD_CACHE``), then (b) every setting measured again independently, as full
   SGD training steps (forward under the setting, fp32 cross-entropy, backward, optimiser step), in interleaved rounds
   (A B C D, B C D A, ...) so all settings share the machine's load; the median img/s per setting. Reported: each
   setting's speed as a ratio to fp32, the tuner's choice, its speed relative to the best setting (acceptance ≥ 0.95)
   and to fp32, today's fixed CPU default (acceptance ≥ 1.0). Synthetic N(0, 1) inputs and random labels: speed does
   not depend on pixel values. Each model runs in a fresh process (as ``archkd distill`` meets it), ``--jobs``
   at a time, 1 thread each; ``--tuner-repeats 5`` re-runs the tuner to show how stable its choice is.
2. ``--part distill``: end to end, ``archkd distill`` of resnet20 and vit from the shared CIFAR-10 teacher for one
   epoch, with the tuner on and with ``train.autotune=false``, one arm after the other, same seed; ``images_per_s``
   and ``precision`` from each run's ``results.json``. Twice per model: ``cold`` (the literal first run: an empty
   teacher-logit cache, so the teacher runs on every step — in fp32, or in the setting the tuner measured fastest for
   it — and an empty tuner store) and ``warm`` (the same command again: teacher logits and the tuner's choices
   cached, as for every later search trial). Each arm has a teacher-logit cache of its own. The data fraction
   is chosen so each run has ≥ ``autotune.MIN_STEPS`` optimiser steps (shorter runs skip tuning).
3. ``--part parity``: test accuracy of resnet8 and vit distilled 8 epochs on 20 % of CIFAR-10, tuned setting vs fp32
   (``train.autotune=false``), seeds 0 1 2; mean |Δ| against the seed-to-seed spread. Resumable: a run whose
   ``results.json`` exists (same recipe) is read back, a killed run continues from its ``last.pt``; ``--seeds 0``
   trains one seed, so seeds can run as separate processes. The JSON always summarises every seed found.

Run from the repository root (OMP_NUM_THREADS=1 is set for every child process; this process uses 1 torch thread):

    python bench/precision.py --part speed              # 16 models, ~10 min with --jobs 2 (default) on 2 cores
    python bench/precision.py --part speed --jobs 1     # ~14 min; use it when other work shares the cores
    python bench/precision.py --part distill            # 8 runs one after another, ~16 min
    python bench/precision.py --part parity --seeds 0   # 4 runs, ~15-20 min per seed; seeds as separate processes
    python bench/precision.py --part parity --seeds     # no training: summarise what finished

JSON: ``bench/results/precision_speed.json``, ``precision_distill.json``, ``precision_parity.json``. Run directories
and caches (decoded CIFAR-10, teacher logits, tuner stores) live under ``bench/results/precision_cifar10/``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from _common import CLI, RESULTS, cpu_busy, load_avg, write_result  # noqa: E402  (bench/ is on sys.path as a script)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TEACHER = SHARED / "teachers" / "cifar10_resnet_w32.torchscript.pt"
DATA = SHARED / "data" / "cifar10-jpeg.zip"
ROOT = RESULTS / "precision_cifar10"  # run directories and caches of the distill and parity parts
STUDENTS = ["resnet8", "resnet20", "resnet8x4", "wrn_16_2", "mobilenetv2", "shufflenetv2", "vit", "mixer"]
SPACES = ["stages", "mnas", "multifamily", "nago"]
SHAPE, CLASSES = (3, 32, 32), 10
WITHIN_BEST, VS_FP32 = 0.95, 1.0  # acceptance: tuner's choice ≥ 0.95 × best setting and ≥ 1.0 × fp32
DISTILL_TARGET = {"resnet20": 1.8, "vit": 1.0}  # acceptance: tuned / fp32 images_per_s of the distill verb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--part", required=True, choices=["speed", "distill", "parity"])
    p.add_argument("--seed", type=int, default=0, help="seed of models, batches and space samples (speed, distill)")
    p.add_argument("--out", default=None, help="JSON path (default results/precision_<part>.json)")
    s = p.add_argument_group("speed")
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--members", type=int, default=2, help="random members per search space")
    s.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the settings (median reported)")
    s.add_argument("--min-rounds", type=int, default=3, help="rounds kept for slow models that exceed --model-budget")
    s.add_argument("--model-budget", type=float, default=40.0,
                   help="seconds of interleaved rounds per model; slower models get fewer rounds (≥ --min-rounds)")
    s.add_argument("--round-seconds", type=float, default=0.5,
                   help="each setting runs enough steps per round to take about this long (≥ 1 step)")
    s.add_argument("--jobs", type=int, default=2, choices=[1, 2],
                   help="model processes at a time, 1 thread each (use 1 when other work shares the cores)")
    s.add_argument("--models", nargs="+", default=None, help="only these models (e.g. resnet20 stages#0)")
    s.add_argument("--tuner-repeats", type=int, default=1,
                   help="run the tuner this many times per model (fresh store each): the stability of its choice")
    s.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a child process's model
    d = p.add_argument_group("distill and parity")
    d.add_argument("--teacher", default=str(TEACHER))
    d.add_argument("--data", default=str(DATA))
    d.add_argument("--distill-students", nargs="+", default=["resnet20", "vit"])
    d.add_argument("--distill-fraction", type=float, default=0.3,
                   help="train.data_fraction of the one-epoch distill runs (0.3 of 45,000 = 105 steps at batch 128)")
    d.add_argument("--states", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    d.add_argument("--parity-students", nargs="+", default=["resnet8", "vit"])
    d.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2],
                   help="parity seeds to train (none: only summarise what finished)")
    d.add_argument("--all-seeds", nargs="+", type=int, default=[0, 1, 2], help="parity seeds the summary covers")
    d.add_argument("--parity-epochs", type=int, default=8)
    d.add_argument("--parity-fraction", type=float, default=0.2)
    a = p.parse_args(argv)
    a.out = a.out or str(RESULTS / f"precision_{a.part}.json")
    return a


def machine() -> dict:
    from archkd.distill.autotune import _machine

    return {"machine": _machine(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "loadavg": load_avg()}


# ----------------------------------------------------------------------------------------------------------- speed


def speed_models(args: argparse.Namespace) -> dict[str, tuple[dict, str]]:
    """name -> (archkd model spec, origin): the registry's CIFAR students, then ``--members`` random members of each
    search space (drawn with ``sample_rng`` from a per-space seeded generator, so every process draws the same)."""
    from archkd.models import create_model, list_models, model_spec
    from archkd.spaces import create_space

    out: dict[str, tuple[dict, str]] = {}
    registered = set(list_models())
    for name in STUDENTS:
        if name in registered:
            out[name] = (model_spec(create_model(name, num_classes=CLASSES, in_channels=SHAPE[0])), "registry")
    for i, sp in enumerate(SPACES):
        space = create_space(sp)
        rng = np.random.default_rng([args.seed, i])
        for j in range(args.members):
            config = space.sample_rng(rng)
            out[f"{sp}#{j}"] = (space.spec(config, SHAPE, CLASSES), f"space {sp}: {json.dumps(config, default=str)}")
    return out


def train_step_fn(m: nn.Module, s, x: torch.Tensor, y: torch.Tensor):
    """One full SGD training step of ``m`` under setting ``s`` (fit's recipe: Nesterov momentum, weight decay)."""
    from archkd.distill.autotune import autocast

    dev = torch.device("cpu")
    xs = x.contiguous(memory_format=torch.channels_last) if s.channels_last else x
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step() -> None:
        with autocast(dev, s.amp):
            loss = nn.functional.cross_entropy(m(xs).float(), y)  # fp32 loss on fp32 logits, as fit takes it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def build_spec(spec: dict) -> nn.Module:
    from archkd.models import build_from_spec

    return build_from_spec(spec)


def speed_one(name: str, spec: dict, origin: str, args: argparse.Namespace, store: Path) -> dict:
    from archkd.distill import autotune
    from archkd.distill.autotune import Setting, autocast, candidates
    from archkd.models import build_from_spec

    dev = torch.device("cpu")
    torch.manual_seed(args.seed)
    model = build_from_spec(spec)
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(args.seed)
    bs = args.batch_size
    x = torch.randn(bs, *SHAPE, generator=g)
    y = torch.randint(0, CLASSES, (bs,), generator=g)
    cpu0, wall0 = time.process_time(), time.perf_counter()

    # (a) the tuner as fit calls it (distill.precision.student_precision's step: forward under the setting, fp32 CE,
    # backward)
    def step(m: nn.Module, s: Setting) -> None:
        with autocast(dev, s.amp):
            logits = m(x.contiguous(memory_format=torch.channels_last) if s.channels_last else x)
        nn.functional.cross_entropy(logits.float(), y).backward()

    model.train()
    choice = autotune.choose(model, step, device=dev, amp=None, channels_last=None, tune=True,
                             default=Setting(False, False), total_steps=10 * autotune.MIN_STEPS, spec=spec,
                             batch_size=bs, input_shape=SHAPE)
    if choice.source != "tuned":
        raise RuntimeError(f"{name}: the tuner did not measure (source {choice.source}); is ARCHKD_CACHE fresh?")
    again = []
    for _ in range(args.tuner_repeats - 1):  # the same measurement on an emptied store: how stable is the choice?
        (store / "autotune.json").unlink(missing_ok=True)
        c = autotune.choose(model, step, device=dev, amp=None, channels_last=None, tune=True,
                            default=Setting(False, False), total_steps=10 * autotune.MIN_STEPS, spec=spec,
                            batch_size=bs, input_shape=SHAPE)
        again.append({"choice": c.setting.name, "speeds": c.speeds, "seconds": round(c.seconds, 2)})

    # (b) every setting again, as full training steps, interleaved rounds on persistent private copies
    settings = candidates(dev, None, None)
    names = [s.name for s in settings]
    steps, per = {}, {}
    for s in settings:
        m = copy.deepcopy(model)
        if s.channels_last:
            m = m.to(memory_format=torch.channels_last)
        m.train()
        steps[s.name] = train_step_fn(m, s, x, y)
        # steps per round: about --round-seconds at the tuner's speed, at least one
        per[s.name] = max(1, min(20, round(args.round_seconds * choice.speeds[s.name] / bs)))
    slow = max(bs / choice.speeds[s] for s in names) > 1.5
    for _ in range(1 if slow else 2):  # untimed steps (optimiser state, oneDNN primitives of the full step)
        for s in names:
            steps[s]()
    round_s = sum(per[s] * bs / choice.speeds[s] for s in names)
    rounds = max(min(args.rounds, args.min_rounds), min(args.rounds, int(args.model_budget // max(round_s, 1e-9))))
    samples: dict[str, list[float]] = {s: [] for s in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate so no setting always goes first
        for s in order:
            t0 = time.perf_counter()
            for _ in range(per[s]):
                steps[s]()
            samples[s].append(per[s] * bs / (time.perf_counter() - t0))
    cpu_per_wall = (time.process_time() - cpu0) / max(1e-9, time.perf_counter() - wall0)
    med = {s: statistics.median(v) for s, v in samples.items()}
    fp32, best = Setting(False, False).name, max(names, key=lambda s: med[s])
    pick = choice.setting.name
    # paired per-round ratios (same round, adjacent in time): how much the medians' ratios move with the load
    r_fp32 = [samples[pick][i] / samples[fp32][i] for i in range(rounds)]
    r_best = [samples[pick][i] / max(samples[s][i] for s in names) for i in range(rounds)]
    return {
        "model": name, "origin": origin, "params": params, "spec": spec,
        "tuner": {"choice": pick, "speeds": choice.speeds, "seconds": round(choice.seconds, 2),
                  "ratio_to_fp32": {s: choice.speeds[s] / choice.speeds[fp32] for s in names}},
        "tuner_repeats": again, "tuner_choices": [pick] + [a["choice"] for a in again],
        "rounds": rounds, "steps_per_round": per, "samples": samples, "images_per_s": med,
        "ratio_to_fp32": {s: med[s] / med[fp32] for s in names}, "best": best,
        "choice_vs_best": med[pick] / med[best], "choice_vs_fp32": med[pick] / med[fp32],
        "choice_vs_fp32_rounds": [round(v, 3) for v in r_fp32], "choice_vs_best_rounds": [round(v, 3) for v in r_best],
        "within_best": med[pick] / med[best] >= WITHIN_BEST, "not_below_fp32": med[pick] / med[fp32] >= VS_FP32,
        "cpu_per_wall": round(cpu_per_wall, 2), "seconds": round(time.perf_counter() - wall0, 1),
    }


def speed_table(rows: list[dict]) -> str:
    names = ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    lines = ["| model | params | fp32 img/s | fp32+cl | bf16 | bf16+cl | tuner's choice (its own ratio to fp32) | "
             "choice / best | choice / fp32 | tuning s | cpu/wall |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["tuner"]["choice"]
        short = c.replace("+channels_last", "+cl")
        lines.append(f"| {r['model']} | {r['params']:,} | {r['images_per_s']['fp32']:.0f} | "
                     + " | ".join(f"{r['ratio_to_fp32'][n]:.2f}×" for n in names[1:])
                     + f" | {short} ({r['tuner']['ratio_to_fp32'][c]:.2f}×) | "
                     f"{'' if r['within_best'] else '**'}{r['choice_vs_best']:.3f}{'' if r['within_best'] else '**'} | "
                     f"{'' if r['not_below_fp32'] else '**'}{r['choice_vs_fp32']:.3f}"
                     f"{'' if r['not_below_fp32'] else '**'} | {r['tuner']['seconds']:.1f} | {r['cpu_per_wall']:.2f} |")
    if any(len(r.get("tuner_choices", [])) > 1 for r in rows):
        lines.append("")
        lines.append("tuner choices over repeated runs (fresh store each): " + "; ".join(
            f"{r['model']}: " + ", ".join(f"{c} {r['tuner_choices'].count(c)}/{len(r['tuner_choices'])}"
                                          for c in dict.fromkeys(r["tuner_choices"])) for r in rows))
    return "\n".join(lines)


def speed_child(args: argparse.Namespace, name: str) -> dict:
    """One model in this (fresh) process, as ``archkd distill`` would meet it: the tuner's first measurement in a
    process that has not yet run this model. With ``--tuner-repeats`` > 1 the tuner runs again on an emptied store
    (the choice reported is the first run's; the others show how stable it is)."""
    spec, origin = speed_models(args)[name]
    with tempfile.TemporaryDirectory(prefix="archkd-precision-") as td:
        os.environ["ARCHKD_CACHE"] = td  # a fresh tuner store: every model is measured, as on a first run
        return speed_one(name, spec, origin, args, Path(td))


def part_speed(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    if args.only is not None:  # a child: one model, its row as JSON
        Path(args.out).write_text(json.dumps(speed_child(args, args.only), default=str))
        return 0
    models = speed_models(args)
    names = [n for n in models if not args.models or n in args.models]
    unknown = set(args.models or []) - set(models)
    if unknown:
        print(f"unknown models {sorted(unknown)}; known: {', '.join(models)}", file=sys.stderr)
        return 2
    t0, la0, busy = time.perf_counter(), load_avg(), cpu_busy()
    print(f"{len(names)} models, batch {args.batch_size}, {'×'.join(map(str, SHAPE))}, 1 thread, {args.jobs} "
          f"process(es) at a time; up to {args.rounds} interleaved rounds per model; load {la0}, CPUs busy before "
          f"start {busy}", flush=True)
    if busy is not None and busy * (os.cpu_count() or 1) > (os.cpu_count() or 1) - args.jobs + 0.5:
        print(f"WARNING: other processes keep {busy:.0%} of the CPUs busy: timings are contended (see cpu/wall)",
              file=sys.stderr)
    # one child process per model, at most --jobs at a time, heaviest first (parameters as the proxy) so the last
    # model to start is a short one
    queue = sorted(names, key=lambda n: -sum(p.numel() for p in build_spec(models[n][0]).parameters()))
    found: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="archkd-precision-jobs-") as td:
        running: list[tuple[str, subprocess.Popen]] = []
        failed = []
        while queue or running:
            while queue and len(running) < args.jobs:
                n = queue.pop(0)
                cmd = [sys.executable, __file__, "--part", "speed", "--only", n, "--out", str(Path(td) / f"{n}.json"),
                       "--seed", str(args.seed), "--batch-size", str(args.batch_size), "--members",
                       str(args.members), "--rounds", str(args.rounds), "--min-rounds", str(args.min_rounds),
                       "--model-budget", str(args.model_budget), "--round-seconds", str(args.round_seconds),
                       "--tuner-repeats", str(args.tuner_repeats)]
                running.append((n, subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})))
            time.sleep(0.5)
            for n, proc in list(running):
                if proc.poll() is None:
                    continue
                running.remove((n, proc))
                if proc.returncode:
                    failed.append(n)
                    continue
                row = found[n] = json.loads((Path(td) / f"{n}.json").read_text())
                print(f"  {n:<16} {row['params']:>10,} params  tuner {row['tuner']['choice']:<20} "
                      f"best {row['best']:<20} choice/best {row['choice_vs_best']:.3f}  choice/fp32 "
                      f"{row['choice_vs_fp32']:.3f}  ({row['rounds']} rounds, {row['seconds']:.0f} s, cpu/wall "
                      f"{row['cpu_per_wall']:.2f})", flush=True)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    rows = [found[n] for n in names]
    table = speed_table(rows)
    ok_best = all(r["within_best"] for r in rows)
    ok_fp32 = all(r["not_below_fp32"] for r in rows)
    print()
    print(table)
    print(f"\ntuner within {1 - WITHIN_BEST:.0%} of the best setting for every model: {'yes' if ok_best else 'NO'}; "
          f"≥ fp32 for every model: {'yes' if ok_fp32 else 'NO'} (bold: fails)")
    print(f"load average start {la0} end {load_avg()}; total {time.perf_counter() - t0:.0f} s")
    write_result(args.out, {
        "benchmark": "precision", "part": "speed", "created": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "machine": machine(),
        "loadavg_start": la0, "summary": {"all_within_best": ok_best, "all_not_below_fp32": ok_fp32,
                                          "failing": [r["model"] for r in rows
                                                      if not (r["within_best"] and r["not_below_fp32"])],
                                          "thresholds": {"choice_vs_best": WITHIN_BEST, "choice_vs_fp32": VS_FP32}},
        "table": table, "models": rows, "total_seconds": round(time.perf_counter() - t0, 1)})
    return 0


# ---------------------------------------------------------------------------------------------- distill (CLI runs)


def run_distill(args: argparse.Namespace, *, student: str, name: str, runs: Path, cache: Path, tuner_store: Path,
                seed: int, epochs: int, fraction: float, autotune_on: bool, log: Path) -> dict:
    """``archkd distill`` in a child process (1 thread); its ``results.json``."""
    cmd = [*CLI, "distill", "--teacher", args.teacher, "--data", args.data, "--student", student,
           "--epochs", str(epochs), "--name", name, "--runs-dir", str(runs), "--seed", str(seed), "--device", "cpu",
           f"train.data_fraction={fraction}", f"cache_dir={cache}", "threads=1"]
    if not autotune_on:
        cmd.append("train.autotune=false")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARCHKD_CACHE": str(tuner_store),
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ OMP_NUM_THREADS=1 ARCHKD_CACHE={tuner_store} archkd {' '.join(cmd[len(CLI):])}\n")
        f.flush()
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if rc:
        raise RuntimeError(f"archkd distill failed (exit {rc}); see {log}")
    res = json.loads((runs / name / "results.json").read_text())
    res["_wall_seconds"] = round(time.perf_counter() - t0, 1)
    return res


def summarize_run(res: dict) -> dict:
    f, cfg = res["final"], res["config"]
    n_used = max(1, int(round(res["dataset"]["train"] * cfg["train"]["data_fraction"])))
    bs = min(cfg["train"]["batch_size"], n_used)
    prec = f.get("precision") or {}
    return {"images_per_s": f["images_per_s"], "precision": prec.get("name"), "precision_source": prec.get("source"),
            "tuner_speeds": prec.get("speeds"), "tuning_seconds": prec.get("seconds"), "fit_seconds": f["seconds"],
            "wall_seconds": res.get("_wall_seconds"), "steps": cfg["train"]["epochs"] * (n_used // bs),
            "train_images": n_used, "test_acc": f["test_acc"], "val_acc": f["val_acc"],
            "teacher_cache_hit_rate": (f.get("cache") or {}).get("hit_rate"), "seed": cfg["seed"],
            "teacher_precision": (prec.get("teacher") or {}).get("name", "fp32"),
            "teacher_precision_source": (prec.get("teacher") or {}).get("source", "default")}


def part_distill(args: argparse.Namespace) -> int:
    from archkd.distill.autotune import MIN_STEPS

    t0, la0 = time.perf_counter(), load_avg()
    # a teacher-logit cache per arm (emptied before the arm's cold run, read by its warm run); decoded data shared
    cache = ROOT / "distill-cache"
    (ROOT / "cache" / "decoded").mkdir(parents=True, exist_ok=True)
    for arm in ("fp32", "tuned"):
        (cache / arm).mkdir(parents=True, exist_ok=True)
        if not (cache / arm / "decoded").exists():
            (cache / arm / "decoded").symlink_to(ROOT / "cache" / "decoded", target_is_directory=True)
    runs, logs = ROOT / "distill-runs", ROOT / "logs"
    results: dict[str, dict] = {}
    for student in args.distill_students:
        store = ROOT / "distill-autotune" / student
        results[student] = {}
        for state in args.states:
            # cold: fp32 first; warm: tuned first (ABBA), so a drift in the machine's load does not favour one arm
            arms = ["fp32", "tuned"] if state == "cold" else ["tuned", "fp32"]
            results[student][state] = {}
            for arm in arms:
                name = f"{student}_{arm}_{state}"
                shutil.rmtree(runs / name, ignore_errors=True)  # a fresh training, never a read-back
                if state == "cold":  # this arm's own cache emptied; the other arm's is kept for its warm run
                    shutil.rmtree(cache / arm / "teacher_logits", ignore_errors=True)
                    if arm == "tuned":
                        shutil.rmtree(store, ignore_errors=True)  # the tuner measures, as on a first run
                store.mkdir(parents=True, exist_ok=True)
                print(f"  {student:<10} {state:<5} {arm:<6} ...", end="", flush=True)
                res = run_distill(args, student=student, name=name, runs=runs, cache=cache / arm, tuner_store=store,
                                  seed=args.seed, epochs=1, fraction=args.distill_fraction,
                                  autotune_on=arm == "tuned", log=logs / f"distill_{name}.log")
                s = summarize_run(res)
                results[student][state][arm] = s
                print(f" {s['images_per_s']:7.1f} img/s  {s['precision']} ({s['precision_source']}), "
                      f"{s['steps']} steps, teacher cache hit {s['teacher_cache_hit_rate']:.0%}, "
                      f"fit {s['fit_seconds']:.0f} s, wall {s['wall_seconds']:.0f} s", flush=True)
                if arm == "tuned" and s["steps"] < MIN_STEPS:
                    print(f"WARNING: {s['steps']} steps < autotune.MIN_STEPS={MIN_STEPS}: the tuner did not measure",
                          file=sys.stderr)
            r = results[student][state]
            r["ratio"] = r["tuned"]["images_per_s"] / r["fp32"]["images_per_s"]
            r["target"] = DISTILL_TARGET.get(student)
            r["met"] = None if r["target"] is None else r["ratio"] >= r["target"]
            r["same_setting"] = r["tuned"]["precision"] == r["fp32"]["precision"]
    lines = ["| student | teacher cache | steps | fp32 img/s | tuned img/s | tuned setting, student / teacher (source) | "
             "tuned / fp32 | "
             "target | tuning s | fit s fp32 → tuned |", "|---|---|---|---|---|---|---|---|---|---|"]
    for student, states in results.items():
        for state, r in states.items():
            a, b = r["fp32"], r["tuned"]
            tgt = "-" if r["target"] is None else f"≥ {r['target']:.1f}× ({'met' if r['met'] else 'NOT met'})"
            lines.append(f"| {student} | {state} | {b['steps']} | {a['images_per_s']:.0f} | {b['images_per_s']:.0f} | "
                         f"{b['precision']} / {b.get('teacher_precision', 'fp32')} ({b['precision_source']}) | "
                         f"{r['ratio']:.2f}× | {tgt} | "
                         f"{b['tuning_seconds'] or 0:.1f} | {a['fit_seconds']:.0f} → {b['fit_seconds']:.0f} |")
    table = "\n".join(lines)
    print()
    print(table)
    print(f"load average start {la0} end {load_avg()}; total {time.perf_counter() - t0:.0f} s")
    write_result(args.out, {
        "benchmark": "precision", "part": "distill", "created": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "machine": machine(),
        "loadavg_start": la0, "distill_command": f"archkd distill --teacher {args.teacher} --data {args.data} "
        f"--student <student> --epochs 1 --seed {args.seed} train.data_fraction={args.distill_fraction} threads=1 "
        "[train.autotune=false]", "table": table, "results": results,
        "total_seconds": round(time.perf_counter() - t0, 1)})
    return 0


# ---------------------------------------------------------------------------------------------------------- parity


def parity_done(path: Path, args: argparse.Namespace, seed: int) -> dict | None:
    """The run's results.json when it finished with this recipe, else None. A tuned run must record the teacher's
    choice too (archkd tunes a frozen teacher's inference since the tuner's second version; a run of the student-only
    tuner is not the arm this part measures)."""
    try:
        res = json.loads(path.read_text())
        t = res["config"]["train"]
        tuned = res["config"]["train"].get("autotune", True)
        if (t["epochs"] == args.parity_epochs and abs(t["data_fraction"] - args.parity_fraction) < 1e-9
                and res["config"]["seed"] == seed and res["final"]["test_acc"] is not None
                and (not tuned or "teacher" in (res["final"].get("precision") or {}))):
            return res
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def part_parity(args: argparse.Namespace) -> int:
    t0, la0 = time.perf_counter(), load_avg()
    runs, cache, store, logs = ROOT / "parity-runs", ROOT / "cache", ROOT / "parity-autotune", ROOT / "logs"
    store.mkdir(parents=True, exist_ok=True)

    def name(student: str, arm: str, seed: int) -> str:
        return f"{student}_{arm}_s{seed}"

    for seed in args.seeds:
        for student in args.parity_students:
            for arm in ("tuned", "fp32"):
                n = name(student, arm, seed)
                if parity_done(runs / n / "results.json", args, seed):
                    print(f"  {n}: finished earlier, read back", flush=True)
                    continue
                print(f"  {n} ...", end="", flush=True)
                res = run_distill(args, student=student, name=n, runs=runs, cache=cache, tuner_store=store, seed=seed,
                                  epochs=args.parity_epochs, fraction=args.parity_fraction,
                                  autotune_on=arm == "tuned", log=logs / f"parity_{n}.log")
                s = summarize_run(res)
                print(f" test {s['test_acc']:.4f}, {s['precision']} ({s['precision_source']}), "
                      f"{s['images_per_s']:.0f} img/s, {s['steps']} steps, wall {s['wall_seconds']:.0f} s", flush=True)
    # the summary covers every seed found, whichever process trained it
    found: dict[str, dict] = {}
    summary: dict[str, dict] = {}
    for student in args.parity_students:
        per: dict[str, dict[int, dict]] = {"tuned": {}, "fp32": {}}
        for arm in per:
            for seed in args.all_seeds:
                res = parity_done(runs / name(student, arm, seed) / "results.json", args, seed)
                if res:
                    per[arm][seed] = summarize_run(res)
        found[student] = per
        both = sorted(set(per["tuned"]) & set(per["fp32"]))
        deltas = {s: per["tuned"][s]["test_acc"] - per["fp32"][s]["test_acc"] for s in both}

        def spread(arm: str) -> float | None:
            v = [r["test_acc"] for r in per[arm].values()]
            return statistics.stdev(v) if len(v) > 1 else None

        sd = [v for v in (spread("fp32"), spread("tuned")) if v is not None]
        mean_abs = statistics.mean(abs(d) for d in deltas.values()) if deltas else None
        noise = statistics.mean(sd) if sd else None
        summary[student] = {
            "seeds_complete": both, "delta_by_seed": deltas, "mean_abs_delta": mean_abs,
            "mean_delta": statistics.mean(deltas.values()) if deltas else None,
            "tuned_mean": statistics.mean(r["test_acc"] for r in per["tuned"].values()) if per["tuned"] else None,
            "fp32_mean": statistics.mean(r["test_acc"] for r in per["fp32"].values()) if per["fp32"] else None,
            "seed_std_fp32": spread("fp32"), "seed_std_tuned": spread("tuned"), "seed_std": noise,
            "within_noise": None if mean_abs is None or noise is None else mean_abs <= noise,
            "tuned_settings": sorted({r["precision"] for r in per["tuned"].values()}),
            "tuned_teacher_settings": sorted({r["teacher_precision"] for r in per["tuned"].values()}),
            # not a speed measure: the tuned arm runs first and fills the seed's teacher-logit cache, the fp32 arm
            # reads it (part distill compares speeds under equal cache states)
            "img_per_s_ratio_unequal_cache": (statistics.mean(r["images_per_s"] for r in per["tuned"].values())
                        / statistics.mean(r["images_per_s"] for r in per["fp32"].values()))
            if per["tuned"] and per["fp32"] else None,
        }
    complete = all(len(summary[s]["seeds_complete"]) == len(args.all_seeds) for s in args.parity_students)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    lines = ["| student | tuned setting (student / teacher) | seeds | fp32 test % (per seed) | tuned test % (per seed) | mean |Δ| (pts) | "
             "mean Δ | seed-to-seed std (pts, fp32 / tuned) | within noise |",
             "|---|---|---|---|---|---|---|---|---|"]
    for student, s in summary.items():
        per = found[student]
        accs = {arm: ", ".join(pct(per[arm][k]["test_acc"]) if k in per[arm] else "-" for k in args.all_seeds)
                for arm in per}
        lines.append(f"| {student} | {', '.join(s['tuned_settings']) or '-'} / "
                     f"{', '.join(s['tuned_teacher_settings']) or '-'} | {len(s['seeds_complete'])} | "
                     f"{pct(s['fp32_mean'])} ({accs['fp32']}) | {pct(s['tuned_mean'])} ({accs['tuned']}) | "
                     f"{pct(s['mean_abs_delta'])} | {pct(s['mean_delta'])} | {pct(s['seed_std_fp32'])} / "
                     f"{pct(s['seed_std_tuned'])} | {'-' if s['within_noise'] is None else s['within_noise']} |")
    table = "\n".join(lines)
    print()
    print(table)
    if not complete:
        missing = [name(st, arm, sd) for st in args.parity_students for arm in ("tuned", "fp32")
                   for sd in args.all_seeds if sd not in found[st][arm]]
        print(f"incomplete: {len(missing)} run(s) missing ({', '.join(missing)}); resume with "
              f"`python bench/precision.py --part parity --seeds <seed>`")
    out = Path(args.out)
    payload = {"benchmark": "precision", "part": "parity", "created": datetime.now().isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": vars(args), "machine": machine(),
               "loadavg_start": la0, "recipe": {"epochs": args.parity_epochs, "data_fraction": args.parity_fraction,
                                                "teacher": args.teacher, "seeds": args.all_seeds},
               "complete": complete, "table": table, "summary": summary, "runs": found,
               "total_seconds": round(time.perf_counter() - t0, 1)}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # seeds run as separate processes: whole-file writes
    write_result(tmp, payload)
    os.replace(tmp, out)
    print(f"(moved to {out})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    return {"speed": part_speed, "distill": part_distill, "parity": part_parity}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
