"""``archkd export``: a checkpoint as ONNX + TorchScript (+ int8 ONNX), each checked against the model on a real
validation batch, written as one set."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from archkd import rundir
from archkd.config import Config
from archkd.data import DataBundle, Normalize, load_data
from archkd.distill import model_from_checkpoint
from archkd.errors import ArchkdError
from archkd.workflows.inputs import cache_root, data_progress
from archkd.workflows.results import ExportRun
from archkd.workflows.run import Log, mirrored


def export(cfg: Config, checkpoint: str | None = None, out_dir: str | Path | None = None,
           data: DataBundle | None = None, log: Log | None = print, force: bool = False) -> ExportRun:
    """Export a checkpoint to ONNX + TorchScript with a parity check on a real validation batch.

    The files go to ``out_dir``, by default the checkpoint's own run (``runs/<name>/export``), and replace an earlier
    export there as one set (``rundir.replace_dir``). An export of another checkpoint in that folder (its
    ``student.json`` names the source) is replaced only with ``force``."""
    from archkd.export import export_model  # looked up at call time: tests replace it

    log = mirrored(log)
    ck_path = Path(checkpoint or cfg.export.checkpoint or cfg.run_dir / "student" / "best.pt")
    model, ck = model_from_checkpoint(ck_path)
    out = Path(out_dir) if out_dir else rundir.run_of(ck_path) / "export"
    source = str(ck_path.resolve())
    if not force:
        check_export_target(out, source)
    pre = ck.get("preprocessing") or {}
    if data is None:  # the data only gives a realistic parity batch; the normalisation is the checkpoint's own
        data = load_data(cfg.data.source, cfg.data, seed=cfg.seed, cache_dir=cache_root(cfg),
                         progress=data_progress(log))
    want = ck.get("input_shape")
    if want and list(want) != list(data.input_shape):
        raise ArchkdError(f"{ck_path} takes {'×'.join(map(str, want))} inputs but data '{cfg.data.source}' is "
                          f"{'×'.join(map(str, data.input_shape))}", "export with the data it was trained on: --data <path>")
    normalize = Normalize(pre["mean"], pre["std"]) if pre.get("mean") and pre.get("std") else data.normalize
    x8, _, _ = next(data.val.batches(16, device=torch.device("cpu")))
    example = normalize(x8)
    meta = {"spec": ck["spec"], "preprocessing": normalize.to_dict(), "classes": ck.get("classes"),
            "input_shape": ck.get("input_shape") or list(data.input_shape), "val_acc": ck.get("val_acc"),
            "source": source, "input": "float32 N,C,H,W: uint8 pixels / 255, then (x - mean) / std per channel"}
    formats = tuple(cfg.export.formats)
    if cfg.export.quantize == "int8" and "onnx" not in formats:
        formats += ("onnx",)  # the int8 model is made from the fp32 ONNX one
    made: dict = {}

    def build(tmp: Path) -> None:
        res = export_model(model, tmp, example, meta, formats=formats, atol=cfg.export.atol,
                           onnx_exporter=cfg.export.onnx_exporter)
        made["res"] = res
        if cfg.export.quantize == "int8":
            made["int8"] = int8_comparison(cfg, res, data, normalize, log)

    rundir.replace_dir(out, build)
    res = made["res"]
    d = ExportRun(**{k: str(out / Path(v).name) for k, v in res.paths.items()}, max_abs_diff=dict(res.max_abs_diff),
                  metadata=str(out / res.metadata_path.name), int8=made.get("int8"))
    log(f"exported {ck_path} to {out}: "
        + ", ".join(f"{k} (max |Δ| {v:.2e})" for k, v in d.max_abs_diff.items()))
    return d


def check_export_target(out: Path, source: str) -> None:
    """Refuse to replace a folder that holds something other than an export of ``source``."""
    if not out.exists() or not any(out.iterdir()):
        return
    try:
        other = json.loads((out / "student.json").read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        other = None
    if other != source:
        what = f"the export of {other}" if other else "files that are not an export of this checkpoint"
        raise ArchkdError(f"{out} holds {what}", "give another --out folder, or --force to replace it")


def int8_comparison(cfg: Config, res, data: DataBundle, normalize: Normalize, log: Log) -> dict:  # noqa: ANN001
    """The int8 ONNX model beside the fp32 one (``res``: the export), calibrated on a seeded sample of training
    images, compared on the test split (validation when there is none); recorded in the export's JSON sidecar too."""
    import numpy as np

    from archkd.export.quantize import compare_int8, quantize_int8

    def images(split, indices=None) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
        xs, ys = [], []
        for x8, y, _ in split.batches(256, device=torch.device("cpu"), indices=indices):
            xs.append(normalize(x8).numpy())
            ys.append(y.numpy())
        return np.concatenate(xs), np.concatenate(ys)

    pick = data.train.sample(cfg.export.calibration_images, cfg.seed)
    n = len(pick)
    calib, _ = images(data.train, pick)
    fp32 = res.paths["onnx"]
    int8 = quantize_int8(fp32, fp32.with_name(fp32.stem + ".int8.onnx"), calib)
    split, name = (data.test, "test") if data.test is not None else (data.val, "val")
    report = compare_int8(fp32, int8, *images(split), split=name, calibration_images=n,
                          threads=cfg.budget.latency_threads)
    sidecar = json.loads(res.metadata_path.read_text())
    sidecar["int8"] = {**report.to_dict(), "path": int8.name}
    res.metadata_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    log(f"int8: {int8.name} — {name} acc {100 * report.int8_acc:.2f} % (fp32 {100 * report.fp32_acc:.2f} %), "
        f"{report.int8_bytes / 1024:.0f} KiB (fp32 {report.fp32_bytes / 1024:.0f} KiB), "
        f"{report.int8_latency_ms:.3f} ms (fp32 {report.fp32_latency_ms:.3f} ms)")
    return report.to_dict()
