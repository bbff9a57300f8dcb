"""Generated pages of the documentation site, rebuilt on every ``mkdocs build`` (plugin ``mkdocs-gen-files``).

* ``benchmarks/*.md`` from the benchmarks' JSON results, ``bench/results/*.json`` and ``bench/results/small/*.json``:
  the only source of every benchmark figure the site shows. A result that is missing says "not run yet"; a result
  that is partial (``"complete": false``) or that no renderer understands is shown for what it holds — a bad file
  never stops the build.
* ``reference/config.md`` from the config schema's field metadata (``archkd.config.describe_fields``).
* ``dependencies.md`` from README.md's dependency table.
* ``reproduction.md``: ``docs/reproduction.in.md`` with each ``<!-- gen:NAME -->`` marker replaced by a figure read
  from a result file; likewise every other page of ``docs/`` that carries such markers (``gen:result:STEM`` shows a
  whole result file, as the benchmark pages do).

Nothing is written into ``docs/`` on disk: the pages exist only in the built site, so they cannot go stale. README.md,
which GitHub shows unbuilt, keeps its benchmark tables between ``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->``:
``python docs/gen_pages.py --readme`` rewrites them from the result files, and a test fails when they differ from
what the committed results give.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"

# What `make bench` (bench/run.py --scale small) writes, in its order, and the script behind each file.
SMALL = ["kd_throughput", "workers", "latency", "akd", "autokd", "trade", "distpro", "gtn", "proxy", "chaos",
         "teacher_dependence", "losses"]
# The longer runs, each script's own defaults (`python bench/<script>.py ...`): file stem -> (script, command).
FULL: dict[str, tuple[str, str]] = {
    "kd_throughput": ("kd_throughput.py", "python bench/kd_throughput.py --threads 1 --repeats 3 --teacher FILE "
                                          "--data PATH"),
    "workers": ("workers.py", "python bench/workers.py"),
    "latency": ("latency.py", "python bench/latency.py"),
    "precision_speed": ("precision.py", "python bench/precision.py --part speed"),
    "precision_distill": ("precision.py", "python bench/precision.py --part distill --data PATH"),
    "precision_parity": ("precision.py", "python bench/precision.py --part parity --data PATH"),
    "akd_digits": ("akd.py", "python bench/akd.py --dataset digits"),
    "akd_cifar10": ("akd.py", "python bench/akd.py --dataset cifar10 --data PATH --teacher FILE"),
    "akd_digits_64": ("akd.py", "python bench/akd.py --dataset digits --trials 64 --controller-batch-size 8 "
                                "--trial-epochs 1 --search-data-fraction 0.5 --final-epochs 20 "
                                "--target-quantiles 0.25 0.75 --out bench/results/akd_digits_64.json"),
    "akd_joint_digits": ("akd.py", "python bench/akd.py --dataset digits --methods random random-joint "
                                   "--out bench/results/akd_joint_digits.json"),
    "teacher_dependence_digits": ("teacher_dependence.py",
                                  "python bench/teacher_dependence.py --dataset digits --fixed-teachers"),
    "autokd_digits": ("autokd.py", "python bench/autokd.py --dataset digits"),
    "autokd_cifar10": ("autokd.py", "python bench/autokd.py --dataset cifar10"),
    "trade_digits": ("trade.py", "python bench/trade.py --dataset digits"),
    "trade_cifar10": ("trade.py", "python bench/trade.py --dataset cifar10 --hand resnet8x4"),
    "fidelity_cifar10": ("fidelity.py", "python bench/fidelity.py --dataset cifar10 --data PATH --teacher PATH"),
    "pareto_digits": ("pareto.py", "python bench/pareto.py --dataset digits"),
    "rank_fidelity_cifar10": ("rank_fidelity.py", "python bench/rank_fidelity.py --dataset cifar10 --data PATH "
                                                  "--teacher PATH --reference bench/data/cifar10_reference.json"),
    "blockwise_search_cifar10": ("blockwise_search.py", "python bench/blockwise_search.py --dataset cifar10 --data PATH "
                                                        "--teacher PATH --reference bench/data/cifar10_reference.json"),
    "distpro_digits": ("distpro.py", "python bench/distpro.py --dataset digits --epochs 3 10 --methods searched vanilla-kd "
                                     "equal final searched-tau searched-softmax reviewkd searched-transforms "
                                     "searched-transforms-softmax transfer"),
    "distpro_cifar10": ("distpro.py", "python bench/distpro.py --dataset cifar10 --data PATH"),
    "gtn_digits": ("gtn.py", "python bench/gtn.py --dataset digits"),
    "gtn_cifar10": ("gtn.py", "python bench/gtn.py --dataset cifar10"),
    "gtn_digits_condition_kd": ("gtn.py", "python bench/gtn.py --dataset digits --generic generic.condition=kd "
                                          "generic.condition_weight=0.1 --pair-epochs 1 "
                                          "--out bench/results/gtn_digits_condition_kd.json"),
    "proxy_digits": ("proxy.py", "python bench/proxy.py --dataset digits --parts rank --fidelities 1x0.25"),
    "proxy_cifar10": ("proxy.py", "python bench/proxy.py --dataset cifar10"),
    "proxy_search_digits": ("proxy.py", "python bench/proxy.py --dataset digits --parts search "
                                        "--out bench/results/proxy_search_digits.json"),
    "losses_cifar10": ("losses.py", "python bench/losses.py --dataset cifar10"),
    "chaos": ("chaos.py", "python bench/chaos.py"),
    "export_digits": ("export.py", "python bench/export.py"),
    "export_cifar10": ("export.py", "python bench/export.py --dataset cifar10 --data PATH"),
}
NOT_RUN = "not run yet"


# ----------------------------------------------------------------------------------------------------------- helpers
def clean(text: str) -> str:
    """Repository paths made relative; any other absolute path (this machine's data, temporary folders) is PATH."""
    text = text.replace(str(ROOT) + "/", "")
    return re.sub(r"(?<![\w.])/(?:[\w.+-]+/)+[\w.+-]*", "PATH", text)


def shown(path: Path) -> str:
    """A result file's name as the repository knows it (``bench/results/...``), wherever it was read from."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return "bench/results/" + ("small/" if path.parent.name == "small" else "") + path.name


def load(path: Path) -> tuple[dict | None, str | None]:
    """``(document, None)``, or ``(None, why)`` when the file is missing or is not a JSON object."""
    if not path.is_file():
        return None, NOT_RUN
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, f"unreadable ({type(e).__name__}: {e}) — the run may still be writing it"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    return doc, None


def get(doc: Any, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            return default
    return doc


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "—" if v is None else ("yes" if v else "no")
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v[:8]) + (" …" if len(v) > 8 else "")
    return clean(str(v)).replace("|", "\\|").replace("\n", " ")


def md_table(rows: list[dict]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols and not isinstance(r[k], (dict, list))]
    if not cols:
        return ""
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def scalars(d: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and depth < 2:
            out += scalars(v, f"{prefix}{k}.", depth + 1)
        elif not isinstance(v, (dict, list)) or (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)):
            out.append((prefix + str(k), v))
    return out


def kv_table(pairs: list[tuple[str, Any]]) -> str:
    if not pairs:
        return ""
    return "\n".join(["| figure | value |", "|---|---|", *(f"| `{k}` | {fmt(v)} |" for k, v in pairs[:60])])


SEPARATOR = re.compile(r"^\|[-:| ]+\|$")


def table_line(line: str) -> str:
    """A markdown table row with pipes inside a cell (``mean |Δ|``) escaped: a column pipe stands at either end of
    the line or between spaces."""
    if SEPARATOR.match(line.strip()):
        return line
    chars = list(line)
    for i, c in enumerate(chars):
        if c == "|" and 0 < i < len(chars) - 1 and not (chars[i - 1] == " " and chars[i + 1] == " ") \
                and chars[i - 1] != "\\":
            chars[i] = "\\|"
    return "".join(chars)


def table_text(table: Any) -> str:
    """A benchmark's own ``table``: markdown tables kept as they are, other text in code blocks, a list of rows as a
    table."""
    if isinstance(table, str) and table.strip():
        out = []
        for block in re.split(r"\n\s*\n", clean(table.strip("\n"))):
            lines = block.strip("\n").splitlines()
            if len(lines) > 2 and not lines[0].startswith("|") and all(ln.startswith("|") for ln in lines[1:]):
                out.append(lines[0])  # a title line over a markdown table
                lines = lines[1:]
            if lines and all(ln.startswith("|") for ln in lines):
                out.append("\n".join(table_line(ln.rstrip()) for ln in lines))
            elif lines:
                out.append("```\n" + "\n".join(lines) + "\n```")
        return "\n\n".join(out)
    if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
        return md_table(table)
    return ""


# ----------------------------------------------------------------------------------- renderers for one result file
def render_workers(doc: dict) -> str:
    med = doc.get("median") or {}
    rows = []
    for n, m in sorted(med.items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0):
        if isinstance(m, dict):
            rows.append({"workers": m.get("workers", n), "trials": m.get("trials"),
                         "trials/h": m.get("trials_per_hour"), "speed-up": m.get("speedup"),
                         "wall s": m.get("wall_s"), "mean trial s": m.get("mean_trial_s"),
                         "overhead wall/Σtrial": m.get("overhead"),
                         "efficiency Σtrial/(workers·wall)": m.get("efficiency")})
    parts = [md_table(rows)]
    split = [{"workers": m.get("workers", n), "start-up s": m["startup_s"], "in trials s": m.get("in_trials_s"),
              "first trial s": m.get("first_trial_s"), "between trials s": m.get("between_trials_s"),
              "tail s": m.get("tail_s")}
             for n, m in sorted(med.items(), key=lambda kv: str(kv[0])) if isinstance(m, dict) and "startup_s" in m]
    if split:
        parts.append("Where each worker's wall-clock goes (means over workers): start-up is launch to the first "
                     "trial (imports, teacher, data, study), tail is the last trial's end to exit (the run's "
                     "results and report).\n\n" + md_table(split))
    return "\n\n".join(parts)


def render_kd_throughput(doc: dict) -> str:
    s = doc.get("summary") or {}
    ips, ratio = s.get("images_per_s") or {}, s.get("ratio_vs_student_only") or {}
    rows = [{"mode": m, "images/s": ips.get(m), "× student-only": ratio.get(m)} for m in ips]
    text = md_table(rows)
    extra = [(k, s.get(k)) for k in ("warm_cache_hit_rate", "fill_cost_s", "target_warm_ratio", "target_met")
             if k in s]
    return text + ("\n\n" + kv_table(extra) if extra else "")


def render_proxy(doc: dict) -> str:
    parts = []
    for space, r in (doc.get("rank") or {}).items():
        corr = r.get("correlation") or {} if isinstance(r, dict) else {}
        rows = [{"score": name, "kind": c.get("kind"), "Kendall τ vs reference": c.get("tau"),
                 "Spearman ρ": c.get("rho")} for name, c in corr.items() if isinstance(c, dict)]
        if rows:
            parts.append(f"Rank agreement with the reference training, space `{space}` "
                         f"({len(r.get('rows') or [])} architectures):\n\n" + md_table(rows))
        cost = r.get("cost") if isinstance(r, dict) else None
        if isinstance(cost, dict):
            parts.append(kv_table([(f"{space}: seconds per architecture, {k.removesuffix('_s')}", v)
                                   for k, v in cost.items()]))
    search = doc.get("search")
    if isinstance(search, dict):
        parts.append(kv_table(scalars(search)))
    elif isinstance(search, list) and search and all(isinstance(r, dict) for r in search):
        parts.append(_search_variants(search))
    return "\n\n".join(p for p in parts if p)


def _search_variants(rows: list[dict]) -> str:
    """The pre-screen comparison: per variant, mean over seeds (test accuracy with its standard deviation)."""
    import statistics

    out = ["| variant | seeds | best trial val acc | winner re-trained, test acc | winner params | search s |",
           "|---|---|---|---|---|---|"]
    for v in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == v]
        acc = [r["test_acc"] for r in rs]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        out.append(f"| {v} | {len(rs)} | {100 * statistics.fmean(r['best_val'] for r in rs):.1f} % | "
                   f"{100 * statistics.fmean(acc):.2f} ± {100 * sd:.2f} % | "
                   f"{statistics.fmean(r['params'] for r in rs):,.0f} | "
                   f"{statistics.fmean(r['seconds'] for r in rs):.0f} |")
    return "\n".join(out)


def render_chaos(doc: dict) -> str:
    s = doc.get("summary") or {}
    phases = s.get("by_phase") or {}
    head = ("| kills (training / measurement / final) | finished trials lost | duplicated trials | trial results = "
            "uninterrupted run | final student = uninterrupted run | time lost |\n|---|---|---|---|---|---|")
    lost = (f"{fmt(s.get('time_lost_s'))} s over {fmt(s.get('kills'))} kills: {fmt(s.get('startup_s'))} s per "
            f"restart (launch to first trial) + {fmt(s.get('time_lost_beyond_restarts_epochs'))} trial-epochs of "
            f"{fmt(s.get('trial_epoch_s'))} s redone ({fmt(s.get('retried_trials'))} trials retried)")
    row = (f"| {fmt(s.get('kills'))} ({' / '.join(fmt(phases.get(k)) for k in ('training', 'measurement', 'final'))})"
           f" | {fmt(s.get('finished_trials_lost'))} | {fmt(s.get('duplicated_trials'))} | "
           f"{fmt(s.get('trial_results_equal_uninterrupted'))} | {fmt(s.get('final_student_equal_uninterrupted'))} | "
           f"{lost} |")
    a = doc.get("args") or {}
    return (f"{fmt(a.get('n_trials'))} trials × {fmt(a.get('trial_epochs'))} epochs, top-1 re-trained "
            f"{fmt(a.get('final_epochs'))} epochs; uninterrupted run {fmt(s.get('uninterrupted_s'))} s, with kills "
            f"{fmt(s.get('with_kills_s'))} s.\n\n{head}\n{row}")


def _distpro_cells(doc: dict) -> dict[str, dict[int, dict]]:
    """method -> epochs -> its row of DistPro's summary table (mean, std, n, seconds, losses saved)."""
    out: dict[str, dict[int, dict]] = {}
    for t in get(doc, "summary.table") or []:
        out.setdefault(t["method"], {})[int(t["epochs"])] = t
    return out


def _distpro_acc(cell: dict) -> str:
    """Mean ± std test accuracy of one DistPro cell, and how many of its runs diverged."""
    k = cell.get("diverged") or 0
    if k == cell["n"]:
        return f"diverged ({k} of {k})"
    text = f"{100 * cell['test_acc_mean']:.2f} ± {100 * cell['test_acc_std']:.2f} %"
    return text + (f" ({k} of {cell['n']} diverged)" if k else "")


def render_distpro(doc: dict) -> str:
    cells = _distpro_cells(doc)
    if not cells:
        return ""
    epochs = sorted({e for c in cells.values() for e in c})
    out = ["| method | " + " | ".join(f"test acc, {e} epochs" for e in epochs) + " | seeds |",
           "|---|" + "---|" * len(epochs) + "---|"]
    for m, c in cells.items():
        vals = [_distpro_acc(c[e]) if e in c else "—" for e in epochs]
        out.append(f"| {m} | " + " | ".join(vals) + f" | {max(r['n'] for r in c.values())} |")
    s = doc.get("summary") or {}
    extra = [("one search epoch, in vanilla-KD epochs", s.get("search_over_kd_epoch_mean")),
             ("search / a searched replay of the same length", s.get("search_over_searched_replay_mean")),
             ("pathway losses skipped by τ-clipping (searched-tau)", s.get("tau_saved_mean"))]
    return "\n".join(out) + "\n\n" + kv_table([(k, v) for k, v in extra if v is not None])


def render_trade(doc: dict) -> str:
    return _trade_table(doc) or ""


SPECIFIC: dict[str, Callable[[dict], str]] = {"workers": render_workers, "kd_throughput": render_kd_throughput,
                                              "proxy": render_proxy, "chaos": render_chaos, "trade": render_trade,
                                              "distpro": render_distpro}


def kind_of(stem: str, doc: dict) -> str:
    for k in ("bench", "benchmark"):
        if isinstance(doc.get(k), str):
            return doc[k]
    for name in sorted(SPECIFIC, key=len, reverse=True):
        if stem.startswith(name):
            return name
    return stem


def render_result(stem: str, path: Path, command: str | None = None) -> str:
    """One result file as a markdown section body; never raises."""
    doc, why = load(path)
    rel = shown(path)
    if doc is None:
        how = f" — `{command}` writes it" if command else ""
        return f"*{why[:1].upper() + why[1:]}* (`{rel}`){how}.\n"
    out: list[str] = []
    try:
        meta = []
        if isinstance(doc.get("command"), str):
            meta.append(f"command `{clean(doc['command'])}`")
        elif command:
            meta.append(f"command `{command}`")
        if isinstance(doc.get("created"), str):
            meta.append(f"created {doc['created']}")
        secs = doc.get("total_seconds", doc.get("seconds"))
        if isinstance(secs, (int, float)) and not isinstance(secs, bool):
            meta.append(f"{secs / 60:.1f} min")
        torch_v = get(doc, "versions.torch")
        if torch_v:
            meta.append(f"torch {torch_v}")
        if isinstance(doc.get("cpus"), int):
            meta.append(f"{doc['cpus']} CPUs")
        la = doc.get("load_avg")
        if isinstance(la, list) and la:
            meta.append("load average at the end " + ", ".join(fmt(x) for x in la[:3]))
        out.append(f"Source: `{rel}`" + (" — " + "; ".join(meta) if meta else "") + ".")
        if doc.get("complete") is False:
            out.append('!!! warning "Partial result"\n    This run has not finished (`"complete": false`): the '
                       "figures below cover only what it has measured so far.")
    except Exception as e:  # a malformed header must not hide the rest
        out.append(f"Source: `{rel}` (header unreadable: {type(e).__name__}).")
    body = ""
    try:
        renderer = SPECIFIC.get(kind_of(stem, doc))
        body = renderer(doc) if renderer else ""
        if not body:
            body = table_text(doc.get("table")) or table_text(get(doc, "summary.table"))
        if not body and isinstance(doc.get("summary"), dict):
            body = kv_table(scalars(doc["summary"]))
        if not body:
            body = kv_table(scalars({k: v for k, v in doc.items() if k not in ("args", "versions", "machine")}))
    except Exception as e:
        body = f"*This file could not be rendered ({type(e).__name__}: {clean(str(e))}); it is kept as it is.*"
    out.append(body or "*The file holds no figures yet.*")
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------- pages
def small_page(results: Path = RESULTS) -> str:
    small = results / "small"
    lines = ["# Benchmarks at small scale (`make bench`)", "",
             "`make bench` (= `python bench/run.py --scale small --docs`) runs every script in `bench/` one after "
             "another on digits with one seed and short trainings, writes each JSON to `bench/results/small/`, and "
             "rebuilds this site. At this scale the figures are comparisons measured within one run on one machine, "
             "not the methods' accuracy at full scale (see [longer runs](full.md)). Every figure on this page is read "
             "from those JSON files when the site is built.", ""]
    extra = sorted(p.stem for p in small.glob("*.json") if p.stem not in SMALL and p.stem != "status") \
        if small.is_dir() else []
    for name in SMALL + extra:
        lines += [f"## {name}", "", render_result(name, small / f"{name}.json",
                                                  f"python bench/run.py --only {name}" if name in SMALL else None), ""]
    return "\n".join(lines)


def full_page(results: Path = RESULTS) -> str:
    lines = ["# Benchmarks: longer runs", "",
             "Each script's own settings (three seeds, longer trainings, CIFAR-10 where the script takes "
             "`--dataset cifar10`), one JSON per run in `bench/results/`. Every figure on this page is read from "
             "those files when the site is built; a run that has not been made says so. Scripts that read CIFAR-10 "
             "take it with `--data PATH` (see [Getting started](../getting-started.md#cifar-10)).", ""]
    present = sorted(p.stem for p in results.glob("*.json")) if results.is_dir() else []
    for stem in list(FULL) + [s for s in present if s not in FULL]:
        script, command = FULL.get(stem, (None, None))
        title = f"{stem} (`bench/{script}`)" if script else stem
        lines += [f"## {title}", "", render_result(stem, results / f"{stem}.json", command), ""]
    return "\n".join(lines)


def index_page(results: Path = RESULTS) -> str:
    lines = ["# Benchmarks", "",
             "Benchmarks live in `bench/` (each script's `--help` and docstring give its options); each compares "
             "alternatives as ratios within one run, prints a table and writes JSON to `bench/results/`. These pages "
             "are generated from that JSON every time the site is built, so every figure has one source.", "",
             "- [Small scale (`make bench`)](small.md): every benchmark, digits, one seed, under an hour on 2 CPU "
             "cores.",
             "- [Longer runs](full.md): each script's own defaults.",
             "- [Paper reproduction](../reproduction.md): one row per claim of the implemented papers.", "",
             "## Headline figures", "", "| figure | value | source |", "|---|---|---|"]
    rows = 0
    for label, stem_path, fn in HEADLINES:
        doc, why = load(results / stem_path)
        try:
            value = fn(doc) if doc is not None else None
        except Exception:
            value = None
        lines.append(f"| {label} | {value if value else (why or 'not in this file')} | `bench/results/{stem_path}` |")
        rows += 1
    lines += ["", "## Result files", "", "| file | state |", "|---|---|"]
    files = sorted((results.glob("*.json") if results.is_dir() else [])) + \
        sorted(p for p in ((results / "small").glob("*.json") if (results / "small").is_dir() else [])
               if p.stem != "status")
    for p in files:
        doc, why = load(p)
        state = why or ("partial (`complete: false`)" if doc.get("complete") is False else "complete")
        lines.append(f"| `{shown(p)}` | {state} |")
    if not files:
        lines.append(f"| — | {NOT_RUN} |")
    return "\n".join(lines) + "\n"


def _workers(doc: dict) -> str | None:
    two = get(doc, "median.2")
    if not isinstance(two, dict):
        return None
    return f"{two['speedup']:.2f}× with 2 workers (efficiency {two['efficiency']:.2f}, {two['trials']} trials)"


def _kd(doc: dict) -> str | None:
    r = get(doc, "summary.ratio_vs_student_only")
    return f"naive KD {r['naive_kd']:.2f}×, cached KD (warm) {r['cached_kd_warm']:.2f}× student-only" if r else None


def _precision(doc: dict) -> str | None:
    ms = [m for m in doc.get("models") or [] if isinstance(m, dict) and "choice_vs_fp32" in m]
    if not ms:
        return None
    lo, hi = min(m["choice_vs_fp32"] for m in ms), max(m["choice_vs_fp32"] for m in ms)
    worst = min(m.get("choice_vs_best", 1.0) for m in ms)
    return (f"the tuner's choice trains {lo:.2f}–{hi:.2f}× as fast as fp32 over {len(ms)} models; worst choice / "
            f"best {worst:.3f}")


def _gtn(doc: dict) -> str | None:
    s = get(doc, "summary.generic_vs_vanilla")
    return (f"{100 * s['mean']:+.2f} ± {100 * s['se']:.2f} points (s.e.), generic better on {s['first_better']} of "
            f"{s['pairs']}") if s else None


HEADLINES: list[tuple[str, str, Callable[[dict], str | None]]] = [
    ("search workers: speed-up over 1 worker (small scale)", "small/workers.json", _workers),
    ("KD throughput vs student-only training (small scale)", "small/kd_throughput.json", _kd),
    ("KD throughput vs student-only training (CIFAR-10)", "kd_throughput.json", _kd),
    ("precision tuner (`train.autotune`)", "precision_speed.json", _precision),
    ("GTN: KD from the generic teacher − from a vanilla teacher (digits)", "gtn_digits.json", _gtn),
]


# The figures reproduction.md takes from result files: marker name -> (file, formatter).
def _proxy_tau(doc: dict) -> str | None:
    parts = []
    for space, r in (doc.get("rank") or {}).items():
        c = get(r, "correlation.diswot")
        if isinstance(c, dict):
            parts.append(f"τ {c['tau']:+.2f} on `{space}`")
    return ", ".join(parts) or None


def _trade_line(doc: dict) -> str | None:
    found = _search_methods(doc, "trial_marks")
    if found is None:
        return None
    methods = found[0]
    parts = [f"{m} {100 * r['final_test_acc']:.2f} ± {100 * r['final_test_std']:.2f} %" for m, r in methods.items()]
    n = max(r["seeds"] for r in methods.values())
    fams = sorted({f for m, r in methods.items() if m in ("trade", "random") for f in r["winning_families"]})
    return f"{n} seeds, final test " + ", ".join(parts) + f"; multi-family winners: {', '.join(fams)}"


def _pm(pair: Any, scale: float = 1.0, digits: int = 3) -> str:
    """``[mean, std]`` as "mean ± std"."""
    return f"{scale * pair[0]:.{digits}f} ± {scale * pair[1]:.{digits}f}"


def _akd_line(doc: dict) -> str | None:
    """Per latency target: final reward and final test accuracy of akd against nas-then-kd (and random)."""
    summary = doc.get("summary")
    if not isinstance(summary, dict) or not summary:
        return None
    seeds = max(m["n_seeds"] for t in summary.values() for m in t.values())
    parts = []
    for target, methods in summary.items():
        names = [m for m in ("akd", "nas-then-kd", "random") if m in methods]
        parts.append(f"T = {float(target):.3g} ms: final reward " + " vs ".join(
            f"{m} {_pm(methods[m]['final_reward'])}" for m in names) + "; final test accuracy " + " vs ".join(
            f"{m} {_pm(methods[m]['final_test_acc'], 100, 2)} %" for m in names))
    return f"{seeds} seeds; " + "; ".join(parts)


def _akd_curve_line(doc: dict) -> str | None:
    """Per latency target: mean best-so-far search reward of akd and random at every recorded trial count."""
    rows = [r for r in doc.get("rows") or [] if r.get("best_so_far")]
    if not rows:
        return None
    n_max = max(len(r["best_so_far"]) for r in rows)
    marks = [n for n in (8, 16, 32, 64) if n <= n_max]
    parts = []
    for target in sorted({r["target_ms"] for r in rows}):
        cells = []
        for m in ("akd", "random"):
            rs = [r for r in rows if r["method"] == m and r["target_ms"] == target]
            if rs:
                means = [sum(r["best_so_far"][min(n, len(r["best_so_far"])) - 1] for r in rs) / len(rs) for n in marks]
                cells.append(f"{m} " + " / ".join(f"{v:.3f}" for v in means))
        parts.append(f"T = {target:.3g} ms: " + ", ".join(cells))
    return f"best-so-far search reward after {' / '.join(map(str, marks))} trials, mean over seeds — " + "; ".join(parts)


def _distpro_line(*methods: str) -> Callable[[dict], str | None]:
    """Test accuracy of ``methods`` at every budget of a DistPro result, "m a / b %" (one value per budget)."""
    def line(doc: dict) -> str | None:
        cells = _distpro_cells(doc)
        if not all(m in cells for m in methods):
            return None
        epochs = sorted({e for m in methods for e in cells[m]})
        seeds = max(r["n"] for m in methods for r in cells[m].values())
        parts = [m + " " + " / ".join(_distpro_acc(cells[m][e]) for e in epochs if e in cells[m]) for m in methods]
        saved = (get(doc, "summary.tau_saved_mean") if "searched-tau" in methods else None)
        tail = f"; pathway losses skipped {100 * saved:.1f} %" if is_number(saved) else ""
        return f"{seeds} seeds, {' / '.join(map(str, epochs))} epochs: " + ", ".join(parts) + tail
    return line


def _teacher_dependence_line(doc: dict) -> str | None:
    s = doc.get("summary")
    if not isinstance(s, dict) or "diagonal_advantage" not in s:
        return None
    n = len(doc.get("runs") or [])
    text = (f"{n} seeds: diagonal advantage {_pm(s['diagonal_advantage'], 100, 2)} points (positive on "
            f"{s['diagonal_wins']} of {n} seeds), the same winner under both teachers on {s['same_winner']} of {n}")
    if s.get("ranking_tau"):
        text += f"; Kendall τ between the two teachers' rankings of the same candidates {_pm(s['ranking_tau'], 1, 2)}"
    return text


def _search_methods(doc: dict, marks: str) -> tuple[dict, int] | None:
    """A search benchmark's per-method summary and its last trial mark (``summary.<marks>``), or None if it has none."""
    methods = get(doc, "summary.methods")
    if not isinstance(methods, dict) or not methods:
        return None
    return methods, max(get(doc, f"summary.{marks}") or [0])


def _autokd_line(doc: dict) -> str | None:
    found = _search_methods(doc, "marks")
    if found is None:
        return None
    methods, n = found
    seeds = max(r["seeds"] for r in methods.values())
    return (f"{seeds} seeds, {n} trained networks per search: best trial val / final test " + ", ".join(
        f"{m} {100 * r[f'best_val@{n}']:.1f} % / {100 * r['final_test_acc']:.2f} ± {100 * r['final_test_std']:.2f} %"
        for m, r in methods.items()))


MARKERS: dict[str, tuple[str, Callable[[dict], str | None]]] = {
    "autokd_digits": ("autokd_digits.json", _autokd_line),
    "distpro_vs_kd": ("distpro_digits.json", _distpro_line("searched", "vanilla-kd", "reviewkd")),
    "distpro_vs_final": ("distpro_digits.json", _distpro_line("searched", "final")),
    "distpro_vs_equal": ("distpro_digits.json", _distpro_line("searched", "equal")),
    "distpro_tau": ("distpro_digits.json", _distpro_line("searched", "searched-tau")),
    "distpro_scale": ("distpro_digits.json", _distpro_line("searched", "searched-softmax")),
    "distpro_transforms": ("distpro_digits.json", _distpro_line("searched", "searched-transforms",
                                                                "searched-transforms-softmax")),
    "distpro_transfer": ("distpro_digits.json", _distpro_line("searched", "transfer", "vanilla-kd")),
    "teacher_dependence_digits": ("teacher_dependence_digits.json", _teacher_dependence_line),
    "akd_digits_64": ("akd_digits_64.json", _akd_line),
    "akd_digits_64_curve": ("akd_digits_64.json", _akd_curve_line),
    "trade_cifar10": ("trade_cifar10.json", _trade_line),
    "trade_digits": ("trade_digits.json", _trade_line),
    "gtn_digits": ("gtn_digits.json", _gtn),
    "gtn_digits_condition_kd": ("gtn_digits_condition_kd.json", _gtn),
    "proxy_digits": ("proxy_digits.json", _proxy_tau),
}


def figure(file: str, render: Callable[[dict], str | None], results: Path = RESULTS) -> str:
    """``render``'s text for a result file, or why there is none (not run, unreadable, incomplete or not understood):
    a generated page says so rather than failing to build."""
    doc, why = load(results / file)
    try:
        value = render(doc) if doc is not None else None
    except Exception:  # noqa: BLE001 - a result this renderer does not understand is shown as missing, not fatal
        value = None
    return value or f"({why or 'still running, incomplete or not understood'}: `bench/results/{file}`)"


def fill_markers(text: str, results: Path = RESULTS) -> str:
    """``text`` with every ``<!-- gen:NAME -->`` marker replaced by its figure (``MARKERS``), and every
    ``<!-- gen:result:STEM -->`` by the whole of ``bench/results/STEM.json`` as the benchmark pages show it (source,
    command, date, then its tables)."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name.startswith("result:"):
            stem = name.removeprefix("result:")
            return render_result(stem, results / f"{stem}.json", FULL.get(stem, ("", None))[1])
        known = {**README_BLOCKS, **MARKERS}  # a README table may stand on a doc page too
        return figure(*known[name], results) if name in known else f"(unknown figure {name})"
    return re.sub(r"<!-- gen:([\w.:-]+) -->", sub, text)


def marked_pages(results: Path = RESULTS) -> dict[str, str]:
    """Every page of ``docs/`` that carries ``<!-- gen:... -->`` markers, filled from the result files: the guide and
    method pages show benchmark figures this way, so each figure has one source, its JSON."""
    out = {}
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        if not path.name.endswith(".in.md") and "<!-- gen:" in text:
            out[path.relative_to(DOCS).as_posix()] = fill_markers(text, results)
    return out


# ------------------------------------------------------------------------------------------------ README's tables
def _trade_table(doc: dict) -> str | None:
    found = _search_methods(doc, "trial_marks")
    if found is None:
        return None
    methods, n = found
    rows = ["| method | seeds | best trial val acc @" + str(n) + " | final test acc | params | winning students |",
            "|---|---|---|---|---|---|"]
    for m, r in methods.items():
        best = r.get(f"best_val@{n}")
        rows.append(f"| {m} | {r['seeds']} | {'—' if best is None else f'{100 * best:.1f} %'} | "
                    f"{100 * r['final_test_acc']:.2f} ± {100 * r['final_test_std']:.2f} % | {r['params_mean']:,.0f} | "
                    f"{', '.join(r['winning_families'])} |")
    t = doc.get("teacher") or {}
    if t.get("test_acc") is not None:
        rows.append(f"\nTeacher {t['name']}: {100 * t['test_acc']:.2f} % test accuracy, {t['params']:,} parameters.")
    return "\n".join(rows)


def _fidelity_table(doc: dict) -> str | None:
    rows = [r for r in doc.get("rows") or [] if isinstance(r.get("fidelity_check"), dict)]
    if not rows:
        return None
    out = ["| trial fidelity (epochs × data) | trial val acc | Kendall τ, trial vs full recipe [95 % interval] | "
           "the search says | cost: trials / check |", "|---|---|---|---|---|"]
    for r in rows:
        fc, (lo, hi) = r["fidelity_check"], r["trial_val_acc_range"]
        e, f = r["fidelity"].split("x")
        tau = fc.get("tau")
        agreement = (f"{tau:+.2f} [{fc['ci'][0]:+.2f}, {fc['ci'][1]:+.2f}]" if is_number(tau)
                     else "undefined: every trial scored the same")
        out.append(f"| {e} × {float(f):.0%} | {100 * lo:.1f}–{100 * hi:.1f} % | {agreement} (n = {fc['n']}) | "
                   f"{'trusted' if fc['trusted'] else 'not trusted: raise the fidelity'} | "
                   f"{r['trial_seconds'] / 60:.1f} / {fc['seconds'] / 60:.1f} min |")
    return "\n".join(out)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _pareto_table(doc: dict) -> str | None:
    s = doc.get("summary")
    if not isinstance(s, dict) or not s.get("methods"):
        return None
    n = s["marks"][-1]
    out = [f"| method | seeds | hypervolume @{n} trials | Δ vs random, paired | front size | best front val acc |",
           "|---|---|---|---|---|---|"]
    for m, r in s["methods"].items():
        diff = (f"{r['hv_minus_random']:+.3g} ± {r['hv_minus_random_std']:.2g} ({r['seeds_ahead_of_random']} of "
                f"{r['seeds']} seeds ahead)") if "hv_minus_random" in r else "—"
        out.append(f"| {m} | {r['seeds']} | {r[f'hv@{n}']:.4g} ± {r['hv_std']:.2g} | {diff} | {r['front_size']:.1f} | "
                   f"{100 * r['best_acc']:.1f} % |")
    return "\n".join(out)


RATINGS = {"trial": "KD trial, {e} epoch(s) × {f}", "blockwise": "blockwise KD, {e} epoch(s) × {f} per block",
           "supernet": "supernet (inherited weights), {e} epochs × {f}", "diswot": "DisWOT (zero-cost)",
           "grad_norm": "grad_norm (zero-cost)"}


def _rating(name: str) -> str:
    kind, _, rest = name.partition(":")
    e, _, f = rest.partition("x")
    return RATINGS.get(kind, kind).format(e=e, f=f"{float(f):.0%}" if f else "")


def _rank_table(doc: dict) -> str | None:
    s = doc.get("summary")
    if not isinstance(s, dict) or not s.get("fidelities"):
        return None
    out = ["| rating | Kendall τ vs the reference [95 % interval] | students | CPU s per student |",
           "|---|---|---|---|"]
    for name, r in sorted(s["fidelities"].items(), key=lambda kv: -kv[1]["cpu_seconds_per_candidate"]):
        tau = f"{r['tau']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]" if is_number(r["tau"]) else "undefined"
        extra = (f" ({r['blocks_trained']} blocks trained, {r['blocks_reused']} reused)"
                 if "blocks_trained" in r else "")
        out.append(f"| {_rating(name)}{extra} | {tau} | {r['n']} | {r['cpu_seconds_per_candidate']:.1f} |")
    for c in s.get("ceiling") or []:
        out.append(f"| **ceiling**: the reference's two training seeds | {c['tau']:+.2f} [{c['ci'][0]:+.2f}, "
                   f"{c['ci'][1]:+.2f}] | {c['n']} | — |")
    return "\n".join(out)


def _blockwise_search_table(doc: dict) -> str | None:
    s = doc.get("summary")
    if not isinstance(s, dict) or not s.get("arms"):
        return None
    out = ["| search | seeds | trials | search CPU time | winner params | winner test acc |", "|---|---|---|---|---|---|"]
    for arm, r in s["arms"].items():
        kind, _, n = arm.partition(":")
        out.append(f"| {kind}-scored | {r['seeds']} | {r['trials']:.0f} | {r['search_cpu_minutes']:.1f} min | "
                   f"{r['params']:,.0f} | {100 * r['test_acc']:.2f} ± {100 * r['test_std']:.2f} % |")
    for name, r in (s.get("hand") or {}).items():
        out.append(f"| hand-designed {name} (reference set) | {r['seeds']} | — | — | — | "
                   f"{100 * r['test_acc']:.2f} ± {100 * r['test_std']:.2f} % |")
    return "\n".join(out)


# README block name -> (result file, renderer of the markdown that goes between its markers)
README_BLOCKS: dict[str, tuple[str, Callable[[dict], str | None]]] = {
    "trade_cifar10": ("trade_cifar10.json", _trade_table),
    "fidelity_cifar10": ("fidelity_cifar10.json", _fidelity_table),
    "pareto_digits": ("pareto_digits.json", _pareto_table),
    "rank_fidelity_cifar10": ("rank_fidelity_cifar10.json", _rank_table),
    "blockwise_search_cifar10": ("blockwise_search_cifar10.json", _blockwise_search_table),
}


def fill_blocks(text: str, results: Path = RESULTS) -> str:
    """``text`` with every ``<!-- gen:NAME -->…<!-- /gen:NAME -->`` block rendered anew from its result file."""
    def sub(m: re.Match) -> str:
        body = figure(*README_BLOCKS[m.group(1)], results)
        body = f"*{body}*" if body.startswith("(") else body
        return f"<!-- gen:{m.group(1)} -->\n{body}\n<!-- /gen:{m.group(1)} -->"
    return re.sub(r"<!-- gen:([\w.-]+) -->.*?<!-- /gen:\1 -->", sub, text, flags=re.S)


def config_page() -> str:
    """Every settable key with type, default, allowed range and help, from the config schema's field metadata."""
    sys.path.insert(0, str(ROOT / "src"))
    import archkd.cli  # noqa: F401  (imports every registry, so registry-backed choices are listed as the CLI does)
    from archkd.config import describe_fields

    lines = ["# Configuration keys", "",
             "Every key a YAML file, a flag or a `key.sub=value` override can set, with its type (closed choices "
             "spelled out, registry-backed ones listed from the registries), its default, its allowed range and its "
             "help. Generated from the config schema (each field's metadata) when the site is built; "
             "`archkd config --keys` prints the same list. Precedence, lowest first: defaults < YAML file < flags < "
             "overrides. A value outside its choices or range is refused when the config loads, before any data is "
             "read.", ""]
    section = None
    cell = lambda s: s.replace("|", "\\|")  # noqa: E731
    for d in describe_fields():
        top = d.key.split(".")[0] if "." in d.key else "(top level)"
        if top != section:
            section = top
            lines += ["", f"## `{top}`" if top != "(top level)" else "## Top level", "",
                      "| key | type | default | range | help |", "|---|---|---|---|---|"]
        lines.append(f"| `{d.key}` | {cell(d.type)} | `{cell(d.default)}` | {d.range} | {cell(d.help)} |")
    return "\n".join(lines) + "\n"


def dependencies_page() -> str:
    """The README's dependency table (the project keeps one line per dependency there) as a page of its own."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Dependencies\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    body = m.group(1).strip() if m else "*README.md has no Dependencies section.*"
    return ("# Dependencies\n\nOne line per dependency, as the project keeps them in `README.md` (this page is "
            "generated from it). The extras are declared in `pyproject.toml`.\n\n" + body + "\n")


def pages(results: Path = RESULTS) -> dict[str, str]:
    out = {"benchmarks/index.md": index_page(results), "benchmarks/small.md": small_page(results),
           "benchmarks/full.md": full_page(results), "dependencies.md": dependencies_page()}
    src = DOCS / "reproduction.in.md"
    if src.is_file():
        out["reproduction.md"] = fill_markers(src.read_text(encoding="utf-8"), results)
    out.update(marked_pages(results))
    return out


def main() -> None:
    import mkdocs_gen_files

    generated = pages()
    generated["reference/config.md"] = config_page()
    for path, text in generated.items():
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)
        mkdocs_gen_files.set_edit_path(path, "gen_pages.py")


if __name__ == "__main__" and sys.argv[1:] == ["--readme"]:
    readme = ROOT / "README.md"
    readme.write_text(fill_blocks(readme.read_text(encoding="utf-8")), encoding="utf-8")
elif __name__ in ("__main__", "<run_path>"):
    main()
