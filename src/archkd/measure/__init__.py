"""Deployment budgets of a model: parameters, FLOPs, latency, activation memory.

Contract:

* Every function works on a private deep copy in eval mode: the caller's model keeps its
  train/eval mode, device, dtype and memory format (a search measures a student, then trains it).
* ``input_shape`` is the per-sample shape without the batch dimension; ``batch_size`` is separate.
* FLOPs count a multiply-add as 2 (``macs == flops // 2``); only conv/matmul-like ops are counted
  (torch ``FlopCounterMode``).
* Latency follows one fixed protocol (eval, inference mode, fixed threads, warmup, median of
  ``repeats`` single timed calls) so numbers are comparable across candidates; a busy machine is
  flagged in ``LatencyResult.load_warning``.
* Peak activation memory is measured on CUDA and *estimated* on CPU (see
  :func:`peak_activation_memory`).
* User mistakes raise :class:`archkd.errors.ArchkdError`.
"""
from __future__ import annotations

from archkd.measure._common import model_dtype, private_copy, quiet_deprecations
from archkd.measure.counting import FlopsResult, count_flops, count_params, peak_activation_memory
from archkd.measure.latency import REPEATS, RUNTIMES, WARMUP, LatencyResult, measure_latency
from archkd.measure.onnx_export import INPUT_NAME, OUTPUT_NAME, to_onnx
from archkd.measure.summary import format_budget, measure_model

__all__ = [
    "FlopsResult",
    "INPUT_NAME",
    "LatencyResult",
    "OUTPUT_NAME",
    "REPEATS",
    "RUNTIMES",
    "WARMUP",
    "count_flops",
    "count_params",
    "format_budget",
    "measure_latency",
    "measure_model",
    "model_dtype",
    "peak_activation_memory",
    "private_copy",
    "quiet_deprecations",
    "to_onnx",
]
