"""Running a parsed ``archkd`` command: config resolution, the verb call, its summary, and the bad-input contract.

Why one place for the contract: whatever a verb raises — a user error, a full disk, an interrupted run — the user
sees one line naming the problem and the fix, and exit status 2, never a traceback; what was computed stays on disk.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from archkd.config import Config, describe_keys, load_config, to_dict
from archkd.device import close_distributed, configure_threads, exit_process, init_distributed, is_rank0
from archkd.cli.parser import FLAG_KEYS, build_parser
from archkd.errors import ArchkdError, ArchkdWarning

def _resolve(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    flags = {FLAG_KEYS[k]: v for k, v in vars(args).items() if k in FLAG_KEYS and v is not None}
    flags.update({k: v for k, v in (extra or {}).items() if v is not None})
    cfg = load_config(getattr(args, "config", None), getattr(args, "overrides", None), flags)
    configure_threads(cfg.threads)
    return cfg


def _versus(c: dict) -> str:
    """The comparison in one cell: speed-up and accuracy gap against the teacher, gain over the baseline."""
    cell = f"{c['speedup']:.1f}× faster ({c['runtime']})" if c.get("speedup") else "latency not compared"
    if c.get("gap") is not None:
        cell += f" · {100 * c['gap']:.2f} pts below the teacher" if c["gap"] >= 0 else \
            f" · {-100 * c['gap']:.2f} pts above the teacher"
    if c.get("search_gain") is not None:
        cell += f" · {100 * c['search_gain']:+.2f} pts vs {c['baseline']['name']}"
    return cell


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _log() -> Callable[[str], None]:
    t0 = time.perf_counter()
    if not is_rank0():  # under torchrun, rank 0 speaks for the group
        return lambda _msg: None
    return lambda msg: print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def run(argv: list[str] | None = None) -> int:
    from archkd import api

    ap = build_parser()
    # overrides may sit between flags (`--epochs 3 train.lr=0.1 --name x`): argparse stops collecting a positional
    # list at the first flag, and its intermixed parsing does not support sub-commands, so the stray ones join here
    args, extra = ap.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        ap.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    if args.verb is None:
        ap.print_help()
        return 0
    log = _log()
    if args.verb == "demo":
        cfg = load_config(args.config, args.overrides, {**{FLAG_KEYS[k]: v for k, v in vars(args).items()
                                                           if k in FLAG_KEYS and v is not None}}, base=demo_defaults())
        log(f"using {configure_threads(cfg.threads)} CPU thread(s)")
        r = api.demo(cfg, log)
        f = r["final"]
        _print_table(f"archkd demo — {cfg.run_dir}", [
            ("teacher", f"{r['teacher']['name']} · {r['teacher']['params']:,} params · test {_pct(r['teacher']['test_acc'])}"),
            ("search", f"{sum(t['state'] == 'COMPLETE' for t in r['trials'])} students trained "
                       f"({sum(t['state'] == 'INFEASIBLE' for t in r['trials'])} over budget skipped), "
                       f"{r['search']['sampler']}, best #{r['search']['best_trial']}"),
            ("student", f"{f['spec']['name']} · {f['params']:,} params · {f['flops'] / 1e6:.2f} MFLOPs"),
            ("student accuracy", f"val {_pct(f['val_acc'])} · test {_pct(f['test_acc'])}"),
            ("export", ", ".join(f"{k}: max |Δ| {v:.1e}" for k, v in r["export"]["max_abs_diff"].items())),
            ("time", f"{r['timings']['total_s']:.0f} s"),
            ("report", str(cfg.run_dir / "report.html"))])
    elif args.verb == "teacher" and args.teacher_verb == "generic":
        cfg = _resolve(args, {"teacher.train.epochs": args.teacher_epochs})
        r = api.generic_teacher(cfg, log)
        _print_table("generic teacher (GTN)", [
            ("checkpoint", r.checkpoint), ("params", f"{r.params:,}"), ("val acc", _pct(r.val_acc)),
            ("test acc", _pct(r.test_acc)), ("supernet", r.supernet),
            ("pool", f"{len(r.pool)} students in {Path(r.checkpoint).parents[1] / 'pool'}" if r.pool
             else f"the whole '{r.space}' space"), ("time", f"{r.seconds:.1f} s")])
    elif args.verb == "teacher":
        if args.teacher_verb != "train":
            raise ArchkdError("archkd teacher: no action given", "use 'archkd teacher train' or 'archkd teacher "
                              "generic' (see 'archkd teacher --help')")
        cfg = _resolve(args, {"teacher.train.epochs": args.teacher_epochs})
        r = api.train_teacher(cfg, log, write=True)
        if not is_rank0():
            return 0
        _print_table("teacher", [("checkpoint", r.checkpoint), ("params", f"{r.params:,}"),
                                 ("val acc", _pct(r.val_acc)), ("test acc", _pct(r.test_acc))])
    elif args.verb == "distill":
        cfg = _resolve(args, {"student.checkpoint": args.student_checkpoint})
        r = api.distill(cfg, log, resume=True, write=True)  # re-running a killed command continues it
        if not is_rank0():
            return 0
        _print_table("distilled student", [("student", r.spec["name"]), ("params", f"{r.params:,}"),
                                           ("val acc", _pct(r.val_acc)), ("test acc", _pct(r.test_acc)),
                                           ("checkpoint", r.checkpoint)])
    elif args.verb == "process":
        if args.process_verb != "search":
            raise ArchkdError("archkd process: no action given", "use 'archkd process search' (see 'archkd process "
                              "--help')")
        cfg = _resolve(args, {"student.checkpoint": args.student_checkpoint,
                              "process.search_epochs": args.process_epochs})
        r = api.process_search(cfg, log)
        _print_table("process search", [("pathways", ", ".join(r.pathways)),
                                        ("final weights", " ".join(f"{w:.2f}" for w in r.final_weights)),
                                        ("student val acc", _pct(r.val_acc)),
                                        ("time", f"{r.seconds:.1f} s (meta-updates {r.meta_seconds:.1f} s)"),
                                        ("process", r.process)])
    elif args.verb == "search":
        cfg = _resolve(args)
        r = api.search(cfg, log)
        if not is_rank0():
            return 0
        b = r.best
        _print_table("search", [("best trial", f"#{b['number']}"), ("reward", f"{b['reward']:.4f}"),
                                ("blockwise score", f"{b['val_acc']:.4f}") if b.get("blockwise")
                                else ("val acc", _pct(b["val_acc"])),
                                ("params", f"{b['params']:,}"), ("config", json.dumps(b["config"])),
                                ("checkpoint", str(b.get("checkpoint") or "-")), ("study", r.storage),
                                ("pareto", ", ".join(f"#{n}" for n in r.pareto["trials"]) + f" ({r.pareto['cost']})")]
                     + [(f"top-{len(r.top_k)} #{t['trial']}", f"test {_pct(t['test_acc'])} · reward "
                         f"{t['final_reward']:.4f}") for t in r.top_k or []]
                     + ([("vs teacher", _versus(r.comparison))] if r.comparison else []))
    elif args.verb == "family":
        if args.family_verb != "sample":
            raise ArchkdError("archkd family: no action given", "use 'archkd family sample RUN_DIR --n 5'")
        run_dir = Path(args.run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise ArchkdError(f"{run_dir} is not a run directory (no config.yaml)", "give runs/<name> of a search")
        if args.n < 1:
            raise ArchkdError(f"--n {args.n} draws no member", "give --n 1 or more")
        cfg = load_config(run_dir / "config.yaml", args.overrides,
                          {"runs_dir": str(run_dir.parent), "name": run_dir.name})
        configure_threads(cfg.threads)
        fam = api.family_sample(cfg, n=args.n, train=args.train, log=log)
        _print_table(f"family of trial #{fam.trial}", [
            (f"member {m['member']}", f"{m['params']:,} params" + (f" · test {_pct(m.get('test_acc'))}"
                                                                    if args.train else ""))
            for m in fam.members])
    elif args.verb == "measure":
        flags = {"measure.model": args.model, "measure.threads": args.threads, "measure.batch_size": args.batch_size,
                 "measure.repeats": args.repeats, "device": args.device,
                 "measure.input_shape": [int(v) for v in args.input_shape.split(",")] if args.input_shape else None,
                 "measure.runtimes": args.runtime}
        cfg = load_config(args.config, args.overrides, flags)
        configure_threads(cfg.threads)
        r = api.measure(cfg)
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            rows = [("params", f"{r['params']:,}"), ("FLOPs", f"{r['flops']:,}"), ("MACs", f"{r['macs']:,}"),
                    ("peak activations", f"{r['peak_activation_bytes'] / 1024:.1f} KiB")]
            for rt, lat in r["latency"].items():
                rows.append((f"latency {rt}", f"median {lat['median_ms']:.3f} ms · IQR {lat['iqr_ms']:.3f} ms · "
                             f"bs {lat['batch_size']} · {lat['threads']} thread(s)"))
            _print_table(f"measure {args.model} @ {'×'.join(map(str, r['input_shape']))}", rows)
    elif args.verb == "export":
        if not args.checkpoint and args.overrides and "=" not in args.overrides[0]:  # `archkd export <file>`
            args.checkpoint = args.overrides.pop(0)
        cfg = _resolve(args)
        api.export(cfg, checkpoint=args.checkpoint, out_dir=args.out, log=log, force=args.force)
    elif args.verb == "predictor":
        r = api.latency_predictor(_resolve(args), log=log)
        v = r.validation
        _print_table(f"latency predictor · {r.space} · {r.runtime}", [
            ("file", r.path), ("architectures", f"{r.samples} ({v['n']} held out)"),
            ("blocks timed", str(r.blocks)), ("within ±10 %", _pct(v["within_10pct"])),
            ("median error", _pct(v["median_rel_error"])), ("worst error", _pct(v["max_rel_error"])),
            ("Kendall τ", f"{v['kendall_tau']:.3f}"), ("measured while busy", _pct(r.busy_share)),
            ("time", f"{r.seconds:.0f} s")])
    elif args.verb == "report":
        _resolve(args)  # checks the overrides and sets the threads; the report itself is the run's own
        api.report(args.run_dir, log=print)
    elif args.verb == "config":
        cfg = _resolve(args)
        if args.keys:
            rows = describe_keys()
            width = max(len(r[0]) for r in rows)
            for key, tp, default, text in rows:
                print(f"{key:<{width}}  {tp}  (default {default})" + (f"  — {text}" if text else ""))
        else:
            import yaml

            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def demo_defaults() -> Config:
    """The demo's recipe: sized to finish in about a minute on 2 CPU cores with the embedded digits data."""
    cfg = Config(name="demo")
    cfg.teacher.arch = "resnet20"
    cfg.teacher.train.epochs = 30
    cfg.search.n_trials = 10
    cfg.search.epochs = 6
    cfg.search.space_kwargs = {"widths": [8, 12, 16, 24, 32, 48]}
    cfg.budget.max_params = 30_000
    cfg.train.epochs = 40
    return cfg


def _one_line_warnings() -> None:
    """``ArchkdWarning``s print as one ``archkd: warning:`` line (no source line) and go into the run's log too;
    other warnings keep Python's format, as they point at code rather than input."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202 - warnings' hook
        if not issubclass(category, ArchkdWarning):
            return default(message, category, filename, lineno, file, line)
        if is_rank0():
            print(f"archkd: warning: {message}", file=sys.stderr, flush=True)
            from archkd.api import RUN_LOG

            RUN_LOG.warning(f"warning: {message}")

    warnings.showwarning = show


_FULL = ("database or disk is full", "no space left", "disk quota exceeded")
_READ_ONLY = ("readonly database", "read-only file system")


def _unwritable(e: BaseException) -> ArchkdError | None:
    """A failed write (disk full, a read-only or foreign-owned run directory) anywhere in ``e``'s chain, as one line.

    Why by the chain and the message: the same full disk surfaces as ``OSError(ENOSPC)`` from a log write, as
    SQLite's "database or disk is full" through SQLAlchemy and Optuna, or as torch's "file write failed" from a
    checkpoint, and the handlers that try to record the failure then fail the same way, chaining more tracebacks."""
    seen: list[BaseException] = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    for err in seen:
        text = str(err).lower()
        errno_ = getattr(err, "errno", None)
        where = getattr(err, "filename", None)
        at = f" ({where})" if where else ""
        if errno_ in (errno.ENOSPC, errno.EDQUOT) or any(k in text for k in _FULL):
            return ArchkdError(f"no space left on the device while writing{at}",
                               "free some space (or give another --runs-dir / cache_dir) and re-run the same command: "
                               "finished trials, checkpoints and caches are kept")
        if errno_ == errno.EROFS or any(k in text for k in _READ_ONLY):
            return ArchkdError(f"cannot write{at or ' the run directory'}: it is read-only",
                               "make it writable (or give another --runs-dir) and re-run the same command: finished "
                               "trials, checkpoints and caches are kept")
        if errno_ in (errno.EACCES, errno.EPERM):
            return ArchkdError(f"permission denied{at}", "give this user access to it, or use another folder")
        if "file write failed" in text:  # torch.save gives no errno: its stream writer only says it failed
            return ArchkdError("a checkpoint could not be written (the disk is full or the folder read-only)",
                               "free space or make the run directory writable and re-run the same command")
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point; under ``torchrun --nproc-per-node N`` each process joins the group and trains its shard."""
    _one_line_warnings()
    distributed = False
    try:
        distributed = init_distributed()
        code = run(argv)
        close_distributed(wait=True)
    except ArchkdError as e:
        print(f"archkd: error: {e}", file=sys.stderr)
        code = 2
    except BrokenPipeError:  # e.g. `archkd config --keys | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception as e:  # noqa: BLE001 - a failed write is the user's machine, anything else is a bug
        err = _unwritable(e)
        if err is None:
            raise
        print(f"archkd: error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("archkd: interrupted — finished trials, checkpoints and caches are kept; re-run the same command "
              "to resume", file=sys.stderr)
        code = 130
    finally:
        close_distributed()
    exit_process(code, distributed)
