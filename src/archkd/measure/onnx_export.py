"""ONNX export used both for onnxruntime latency and for deployable student files."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.measure._common import model_dtype, private_copy, quiet_deprecations

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def to_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, opset: int = 17) -> Path:
    """Export ``model`` to ONNX at ``path``; return the path.

    Input is named ``"input"``, output ``"logits"``, with a dynamic batch axis so one file
    serves any batch size. A private eval-mode CPU copy (contiguous memory format) is exported,
    so the caller's model keeps its device, mode and memory format. Uses the legacy TorchScript
    exporter (``dynamo=False``) because the dynamo exporter requires onnxscript.
    """
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
