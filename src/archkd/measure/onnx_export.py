"""ONNX export used both for onnxruntime latency and for deployable student files."""
from __future__ import annotations

import typing
from pathlib import Path

import torch
from torch import nn

from archkd.config import OnnxExporter
from archkd.errors import ArchkdError
from archkd.measure._common import model_dtype, private_copy, quiet_deprecations

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


EXPORTERS: tuple[str, ...] = typing.get_args(OnnxExporter)  # the config type (export.onnx_exporter) is the list


def to_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, opset: int = 17,
            exporter: str = "torchscript") -> Path:
    """Export ``model`` to ONNX at ``path``; return the path.

    Input is named ``"input"``, output ``"logits"``, with a dynamic batch axis so one file
    serves any batch size. A private eval-mode CPU copy (contiguous memory format) is exported,
    so the caller's model keeps its device, mode and memory format. ``exporter="torchscript"`` (the default: fast,
    no extra dependency) traces with the legacy exporter; ``"dynamo"`` captures the graph with ``torch.export`` and
    translates it with the dynamo exporter (needs onnxscript; opset 18 at least, PyTorch's current path).
    """
    if exporter not in EXPORTERS:
        raise ArchkdError(f"unknown ONNX exporter '{exporter}'", f"use one of {', '.join(EXPORTERS)}")
    if not isinstance(example, torch.Tensor):
        raise ArchkdError(f"example must be a torch.Tensor, got {type(example).__name__}",
                          "pass a batch tensor such as torch.randn(1, 3, 224, 224)")
    if example.dim() < 1:
        raise ArchkdError("example must have a batch dimension", "pass a tensor shaped (batch, ...)")
    clone = private_copy(model, "cpu").to(memory_format=torch.contiguous_format)
    x = example.detach().to("cpu", dtype=model_dtype(clone)).contiguous()
    with torch.no_grad():
        out = clone(x)
    if not isinstance(out, torch.Tensor):
        raise ArchkdError(
            f"the model returns {type(out).__name__}, but export expects a single logits tensor",
            "wrap the model so that forward() returns only the logits tensor",
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if exporter == "dynamo":
        return _dynamo(clone, x, path, max(18, int(opset)))
    try:
        with quiet_deprecations(), torch.no_grad():
            torch.onnx.export(
                clone,
                (x,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=int(opset),
                do_constant_folding=True,
            )
    except Exception as exc:  # noqa: BLE001 - failures come from the user's ops/opset choice
        raise ArchkdError(
            f"ONNX export (opset {opset}) failed: {type(exc).__name__}: {exc}",
            "replace ops unsupported by the ONNX exporter or try a newer opset",
        ) from exc
    return path


def _dynamo(model: nn.Module, x: torch.Tensor, path: Path, opset: int) -> Path:
    try:
        import onnxscript  # noqa: F401 - the dynamo exporter's dependency, checked for a clear error
    except ImportError as exc:
        raise ArchkdError("the dynamo ONNX exporter needs onnxscript",
                          "pip install 'archkd[dynamo]' (onnxscript), or use export.onnx_exporter=torchscript") from exc
    try:
        with quiet_deprecations(), torch.no_grad():
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},),
                              opset_version=opset, verbose=False)
    except Exception as exc:  # noqa: BLE001 - torch.export refuses some Python control flow in user models
        raise ArchkdError(f"dynamo ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                          "use export.onnx_exporter=torchscript (the tracing exporter)") from exc
    return path
