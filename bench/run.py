"""`make bench`: every benchmark, one after another, at a scale chosen for the machine; one markdown summary.

``--scale small`` (the default) fits in an hour on 2 CPU cores: digits data, one seed, short trainings. Its numbers
are ratios and comparisons measured within one run of each benchmark — they say how archkd's parts compare on this
machine, not what a paper's method reaches at full scale. ``--scale full`` runs each script's own defaults (three
seeds, longer trainings; CIFAR-10 where the script takes ``--dataset cifar10``), meant for a GPU machine.

Benchmarks run one at a time (two at once would share the cores and distort each other's timings). Each writes its
JSON and log under ``bench/results/<scale>/``; the runner then writes ``bench/results/<scale>/SUMMARY.md`` — the
headline figures (KD throughput, search overhead, sample efficiency per search method, latency repeatability and
predictor accuracy) and each benchmark's own final table — and, with ``--docs``, rebuilds the documentation site
(``mkdocs build --strict``), whose benchmark pages are generated from the JSON results by ``docs/gen_pages.py``. A
benchmark that fails is reported as failed; the others still run.

    python bench/run.py                    # = make bench
    python bench/run.py --only latency kd_throughput
    python bench/run.py --scale full
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS, load_avg  # noqa: E402  (bench/ is on sys.path when run as a script)

BENCH = Path(__file__).resolve().parent

# name -> (script, arguments at small scale, arguments at full scale); --out is added by the runner
PLAN: dict[str, tuple[str, list[str], list[str]]] = {
    "kd_throughput": ("kd_throughput.py", ["--quick", "--threads", "1", "--repeats", "3"], ["--repeats", "3"]),
    "workers": ("workers.py", ["--n-trials", "8", "--trial-epochs", "3"], ["--n-trials", "32"]),
    "latency": ("latency.py", ["--samples", "60", "--nago-samples", "20", "--networks", "4", "--rounds", "3"], []),
    "akd": ("akd.py", ["--seeds", "0", "--trials", "8", "--trial-epochs", "2", "--final-epochs", "10",
                       "--teacher-epochs", "15"], ["--dataset", "cifar10"]),
    "autokd": ("autokd.py", ["--seeds", "0", "--networks", "8", "--trial-epochs", "2", "--final-epochs", "10",
                             "--teacher-epochs", "15", "--methods", "autokd", "random"], ["--dataset", "cifar10"]),
    "trade": ("trade.py", ["--seeds", "0", "--trials", "8", "--trial-epochs", "2", "--final-epochs", "10",
                           "--teacher-epochs", "15", "--hand", "resnet8x4"], ["--dataset", "cifar10"]),
    "distpro": ("distpro.py", ["--seeds", "0", "--epochs", "8", "--teacher-epochs", "15"], ["--dataset", "cifar10"]),
    "gtn": ("gtn.py", ["--seeds", "0", "--teacher-epochs", "8", "--student-epochs", "8", "--search-trials", "4",
                       "--search-epochs", "2"], ["--dataset", "cifar10"]),
    "proxy": ("proxy.py", ["--spaces", "stages", "--parts", "rank", "search", "--seeds", "0", "--n-archs", "16",
                           "--ref-epochs", "6", "--teacher-epochs", "10"], ["--dataset", "cifar10"]),
    "chaos": ("chaos.py", ["--kills", "4", "--n-trials", "6", "--trial-epochs", "2", "--final-epochs", "8"], []),
    "teacher_dependence": ("teacher_dependence.py", ["--seeds", "0", "--trials", "6", "--trial-epochs", "1",
                                                     "--final-epochs", "8", "--teacher-epochs", "10"],
                           ["--dataset", "cifar10"]),
    "losses": ("losses.py", ["--dataset", "digits", "--seeds", "0", "--epochs", "4", "--teacher-epochs", "15"], []),
}


def final_block(stdout: str) -> str:
    """A benchmark's closing table: the lines between the blank line before its last ``wrote`` and that line."""
    lines = stdout.rstrip().splitlines()
    end = max((i for i, ln in enumerate(lines) if ln.startswith("wrote ")), default=len(lines))
    body = lines[:end]
    while body and not body[-1].strip():
        body.pop()
    start = max((i for i, ln in enumerate(body) if not ln.strip()), default=-1) + 1
    block = body[start:] if len(body) - start >= 2 else body[-30:]
    if block and all(ln.startswith("|") for ln in block):
        return "\n".join(block)
    return "```\n" + "\n".join(block[-40:]) + "\n```"


def headline(results: dict[str, dict]) -> list[str]:
    """The five figures the issue asks every run to report, read from the benchmarks' JSON."""
    out = ["| figure | value (measured in this run) |", "|---|---|"]
    kd = results.get("kd_throughput", {}).get("summary")
    if kd:
        r = kd["ratio_vs_student_only"]
        out.append(f"| KD throughput vs student-only training | naive KD {r['naive_kd']:.2f}×, cached KD (warm) "
                   f"{r['cached_kd_warm']:.2f}× |")
    wk = results.get("workers", {}).get("median")
    if wk:
        one, two = wk.get("1"), wk.get("2")
        out.append(f"| search overhead (wall-clock / Σ trial time), 1 worker | {one['overhead']:.3f} |")
        if two:
            out.append(f"| 2 workers on one study: speed-up, efficiency | {two['speedup']:.2f}×, "
                       f"{two['efficiency']:.2f} |")
    for name in ("akd", "autokd", "trade"):
        if results.get(name, {}).get("table"):
            out.append(f"| sample efficiency per search method | see the `{name}` table below (best-so-far at "
                       "equal trials) |")
            break
    lat = results.get("latency")
    if lat:
        for r in lat["repeatability"]:
            if r["protocol"].startswith("10/50"):
                out.append(f"| latency repeatability, {r['space']} on {r['runtime']} (CV of the median over rounds) | mean "
                           f"{r['mean_cv']:.2%}, worst {r['max_cv']:.2%} |")
        for r in lat["accuracy"]:
            p = r["predictor"]
            out.append(f"| latency predictor, {r['space']} on {r['runtime']} (held out: {r['held_out']}) | "
                       f"{p['within_10pct']:.0%} within ±10 %, Kendall τ {p['kendall_tau']:.2f} |")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=["small", "full"], default="small")
    p.add_argument("--only", nargs="+", choices=list(PLAN), help="run these benchmarks only")
    p.add_argument("--docs", action="store_true",
                   help="rebuild the documentation site afterwards (its benchmark pages are generated from the JSON)")
    p.add_argument("--summary-only", action="store_true", help="rebuild the summary from existing JSON, run nothing")
    a = p.parse_args()
    out_dir = RESULTS / a.scale
    out_dir.mkdir(parents=True, exist_ok=True)
    names = a.only or list(PLAN)
    status: dict[str, dict] = {}
    t0 = time.perf_counter()
    for name in names if not a.summary_only else []:
        script, small, full = PLAN[name]
        cmd = [sys.executable, str(BENCH / script), *(small if a.scale == "small" else full),
               "--out", str(out_dir / f"{name}.json")]
        print(f"[bench {time.perf_counter() - t0:6.0f}s] {name}: {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=BENCH.parent, capture_output=True, text=True)
        (out_dir / f"{name}.log").write_text(proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
        status[name] = {"rc": proc.returncode, "seconds": time.perf_counter() - t, "table": final_block(proc.stdout)}
        print(f"[bench {time.perf_counter() - t0:6.0f}s] {name}: exit {proc.returncode} after "
              f"{status[name]['seconds'] / 60:.1f} min", flush=True)
    if a.summary_only:
        status = json.loads((out_dir / "status.json").read_text())
    else:
        prev = json.loads((out_dir / "status.json").read_text()) if (out_dir / "status.json").is_file() else {}
        status = {**prev, **status, "_run": {"seconds": time.perf_counter() - t0, "load_avg_end": load_avg(),
                                             "names": names}}
        (out_dir / "status.json").write_text(json.dumps(status, indent=1) + "\n")
    results = {n: json.loads((out_dir / f"{n}.json").read_text()) for n in PLAN if (out_dir / f"{n}.json").is_file()}
    total = sum(s["seconds"] for n, s in status.items() if n in PLAN)
    text = [f"`python bench/run.py --scale {a.scale}` (= `make bench`): {len([n for n in PLAN if n in status])} "
            f"benchmarks, {total / 60:.1f} min in all on this machine, one at a time.", "", *headline(results), ""]
    for name in PLAN:
        if name not in status:
            continue
        s = status[name]
        state = "" if s["rc"] == 0 else f" — **failed (exit {s['rc']})**, see `bench/results/{a.scale}/{name}.log`"
        text += [f"**{name}** (`bench/{PLAN[name][0]}`, {s['seconds'] / 60:.1f} min){state}", "", s["table"], ""]
    summary = "\n".join(text)
    (out_dir / "SUMMARY.md").write_text(summary + "\n")
    print(f"\n{summary}\nwrote {out_dir / 'SUMMARY.md'}")
    if a.docs:
        env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}
        built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=BENCH.parent, env=env)
        if built.returncode != 0:
            print("the documentation site did not build: install the docs extra (pip install -e '.[docs]') and run "
                  "`make docs`", file=sys.stderr)
            return 2
        print("rebuilt the documentation site (build/site/): its benchmark pages read bench/results/")
    return 0 if all(s["rc"] == 0 for n, s in status.items() if n in PLAN) else 1


if __name__ == "__main__":
    sys.exit(main())
