"""Write deployable student files and prove they reproduce the eager model."""
from __future__ import annotations

import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archkd.config import ExportFormat
from archkd.errors import ArchkdError
from archkd.measure import model_dtype, private_copy, quiet_deprecations
from archkd.measure.onnx_export import INPUT_NAME, to_onnx

FORMATS: tuple[str, ...] = typing.get_args(ExportFormat)  # the config type (export.formats) is the list
_RESERVED_KEYS = ("files", "parity", "torch_version", "onnx_opset")


@dataclass
class ExportResult:
    """Where the files went and how closely each reproduces the eager model on the example batch."""

    out_dir: Path
    metadata_path: Path
    paths: dict[str, Path] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "metadata_path": str(self.metadata_path),
            "paths": {k: str(v) for k, v in self.paths.items()},
            "max_abs_diff": dict(self.max_abs_diff),
        }


def _to_torchscript(clone: nn.Module, x: torch.Tensor, path: Path) -> str:
    """Trace (fall back to script) and save; return the method used.

    Why trace first: tracing handles any Python in forward() that is static for a fixed
    architecture; scripting is the fallback for modules that cannot be traced.
    """
    with quiet_deprecations():
        try:
            with torch.no_grad():
                module = torch.jit.trace(clone, (x,), check_trace=False)
            method = "trace"
        except Exception as trace_exc:  # noqa: BLE001
            try:
                module = torch.jit.script(clone)
                method = "script"
            except Exception as script_exc:  # noqa: BLE001
                raise ArchkdError(
                    f"TorchScript export failed: trace: {trace_exc}; script: {script_exc}",
                    "export with formats=('onnx',) or make forward() traceable",
                ) from script_exc
        torch.jit.save(module, str(path))
    return method


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: x})[0])


def _run_torchscript(path: Path, x: np.ndarray) -> np.ndarray:
    with quiet_deprecations():
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _max_abs_diff(fmt: str, ref: np.ndarray, got: np.ndarray) -> float:
    if got.shape != ref.shape:
        raise ArchkdError(f"exported {fmt} output shape {got.shape} differs from the model's {ref.shape}",
                          "check the export; the model must return one logits tensor")
    return float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0


def export_model(model: nn.Module, out_dir: str | Path, example: torch.Tensor, metadata: dict[str, Any],
                 formats: Sequence[str] = FORMATS, atol: float = 1e-4, basename: str = "student",
                 opset: int = 17, onnx_exporter: str = "torchscript") -> ExportResult:
    """Export ``model`` to ``out_dir`` as ``<basename>.onnx`` / ``<basename>.torchscript.pt`` plus ``<basename>.json``.

    Each exported file is reloaded on its own (onnxruntime / ``torch.jit.load``) and run on the
    real ``example`` batch (normalised inputs); the max abs difference to the eager model must be
    ``<= atol`` or an ArchkdError names the format. Why: a silently wrong deployed file is worse
    than no file. ``onnx_exporter`` picks the ONNX route (``archkd.measure.to_onnx``). The JSON sidecar (caller
    ``metadata`` + files, parity, torch version, opset, exporter)
    is written only after all checks pass, so its presence marks a verified export. The
    caller's model is never modified (exports run on a private eval-mode CPU copy).
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ArchkdError(f"unknown export formats {unknown or formats!r}", f"choose from {', '.join(FORMATS)}")
    if not isinstance(example, torch.Tensor) or example.dim() < 1 or example.shape[0] < 1:
        raise ArchkdError("example must be a non-empty batch tensor", "pass e.g. 16 normalised validation images")
    if not isinstance(metadata, dict):
        raise ArchkdError(f"metadata must be a dict, got {type(metadata).__name__}", "pass a dict")
    clash = [k for k in _RESERVED_KEYS if k in metadata]
    if clash:
        raise ArchkdError(f"metadata keys {clash} are reserved for export results", "rename those keys")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise ArchkdError(f"metadata is not JSON-serialisable: {exc}",
                          "convert tensors/arrays/paths to lists, numbers or strings") from exc

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / f"{basename}.json"
    meta_path.unlink(missing_ok=True)  # a stale sidecar must not vouch for new, unchecked files

    clone = private_copy(model, "cpu").to(memory_format=torch.contiguous_format)
    x = example.detach().to("cpu", dtype=model_dtype(clone)).contiguous()
    with torch.no_grad():
        ref_t = clone(x)
    if not isinstance(ref_t, torch.Tensor):
        raise ArchkdError(f"the model returns {type(ref_t).__name__}, not a logits tensor",
                          "wrap the model so forward() returns only the logits")
    ref = ref_t.numpy()
    x_np = x.numpy()

    result = ExportResult(out_dir=out, metadata_path=meta_path)
    parity: dict[str, dict[str, Any]] = {}
    for fmt in formats:
        if fmt == "onnx":
            path = to_onnx(clone, x, out / f"{basename}.onnx", opset=opset, exporter=onnx_exporter)
            got, extra = _run_onnx(path, x_np), {}
        else:
            path = out / f"{basename}.torchscript.pt"
            method = _to_torchscript(clone, x, path)
            got, extra = _run_torchscript(path, x_np), {"method": method}
        diff = _max_abs_diff(fmt, ref, got)
        if not diff <= atol:  # also catches NaN
            raise ArchkdError(
                f"{fmt} export does not match the model: max abs difference {diff:.3g} > atol {atol:g}",
                f"do not deploy {path.name}; check for ops the {fmt} exporter handles differently, "
                "or raise atol if the difference is acceptable",
            )
        result.paths[fmt] = path
        result.max_abs_diff[fmt] = diff
        parity[fmt] = {"max_abs_diff": diff, "atol": float(atol), "n_samples": int(x.shape[0]), **extra}

    sidecar = {
        **metadata,
        "files": {fmt: p.name for fmt, p in result.paths.items()},
        "parity": parity,
        "torch_version": torch.__version__,
        "onnx_opset": (max(18, int(opset)) if onnx_exporter == "dynamo" else int(opset)) if "onnx" in formats else None,
        "onnx_exporter": onnx_exporter if "onnx" in formats else None,
    }
    meta_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return result
