"""Deployable student files: ONNX + TorchScript + a JSON sidecar, each verified by a parity check.

Contract: :func:`export_model` writes files that run without archkd installed (only
onnxruntime or torch needed), reloads each one independently and compares it to the eager
model on a real example batch; a mismatch above ``atol`` raises :class:`archkd.errors.ArchkdError`.
The caller's model is never modified.
"""
from __future__ import annotations

from archkd.export.exporter import FORMATS, ExportResult, export_model

__all__ = ["FORMATS", "ExportResult", "export_model"]
