"""int8 export against fp32: accuracy on the test split, file size and ONNX Runtime latency of one trained student.

Trains a student by plain KD-free training (``archkd teacher train``: the export does not care how a checkpoint was
made), then runs ``archkd export --quantize int8`` on it and reads the comparison the export records.

    python bench/export.py                                  # digits, resnet8, 15 epochs
    python bench/export.py --dataset cifar10 --data PATH    # 32x32 px: resnet20, 1 epoch on a tenth of the images

Writes ``bench/results/export_<dataset>.json``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import RESULTS, write_result  # noqa: E402  (bench/ is on sys.path when run as a script)

from archkd import api  # noqa: E402
from archkd.config import load_config  # noqa: E402

PRESETS = {"digits": {"arch": "resnet8", "epochs": 15, "data_fraction": 1.0},
           "cifar10": {"arch": "resnet20", "epochs": 1, "data_fraction": 0.1}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--data", help="data source (default: digits; required for cifar10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training and ONNX Runtime latency")
    p.add_argument("--out")
    a = p.parse_args()
    if a.dataset == "cifar10" and not a.data:
        p.error("--dataset cifar10 needs --data PATH (the CIFAR-10 zip or folder)")
    preset = PRESETS[a.dataset]
    out = Path(a.out or RESULTS / f"export_{a.dataset}.json")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="archkd-export-bench-") as tmp:
        cfg = load_config(overrides=[
            f"runs_dir={tmp}", "name=export", f"cache_dir={Path(tmp) / 'cache'}", f"threads={a.threads}",
            f"data.source={a.data or 'digits'}", f"teacher.arch={preset['arch']}",
            f"teacher.train.epochs={preset['epochs']}", f"teacher.train.data_fraction={preset['data_fraction']}",
            "teacher.train.bn_recalibration=2048", "export.quantize=int8", f"budget.latency_threads={a.threads}"])
        trained = api.train_teacher(cfg, log=None)
        exported = api.export(cfg, checkpoint=trained["checkpoint"], log=None)
        params = trained["params"]
    q = exported["int8"]
    rows = [{"student": f"{a.dataset} {preset['arch']}", "params": params,
             "training": f"{preset['epochs']} epoch(s) × {preset['data_fraction']:g} of the images",
             "fp32 test acc": f"{100 * q['fp32_acc']:.2f} %", "int8 test acc": f"{100 * q['int8_acc']:.2f} %",
             "fp32 size": f"{q['fp32_bytes'] / 1024:.0f} KiB", "int8 size": f"{q['int8_bytes'] / 1024:.0f} KiB",
             "fp32 latency": f"{q['fp32_latency_ms']:.3f} ms", "int8 latency": f"{q['int8_latency_ms']:.3f} ms"}]
    table = "\n".join(["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0]),
                       "| " + " | ".join(str(v) for v in rows[0].values()) + " |"])
    print(table, flush=True)
    write_result(out, {"args": vars(a), "int8": q, "params": params, "table": table,
                       "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
