"""One-call budget report of a model, and its one-line human rendering."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from archkd.measure.counting import count_flops, count_params, peak_activation_memory
from archkd.measure.latency import measure_latency


def measure_model(model: nn.Module, input_shape: tuple[int, ...], runtimes: Sequence[str] = ("torch", "onnxruntime"),
                  latency: bool = True, **latency_kwargs: Any) -> dict[str, Any]:
    """All deployment budgets of ``model`` as a JSON-serialisable dict.

    Keys: ``params``, ``flops``, ``macs``, ``peak_activation_bytes``, ``input_shape``,
    ``batch_size`` and ``latency`` (``{runtime: LatencyResult.to_dict()}``, empty when
    ``latency=False``). ``latency_kwargs`` go to :func:`measure_latency`; its ``batch_size``
    (default 1) is also used for FLOPs and memory so all numbers describe the same input.
    """
    batch_size = int(latency_kwargs.pop("batch_size", 1))
    flops = count_flops(model, input_shape, batch_size=batch_size)
    result: dict[str, Any] = {
        "params": count_params(model),
        "flops": flops.flops,
        "macs": flops.macs,
        "peak_activation_bytes": peak_activation_memory(model, input_shape, batch_size=batch_size),
        "input_shape": [int(s) for s in input_shape],
        "batch_size": batch_size,
        "latency": {},
    }
    if latency:
        for runtime in runtimes:
            res = measure_latency(model, input_shape, runtime=runtime, batch_size=batch_size, **latency_kwargs)
            result["latency"][runtime] = res.to_dict()
    return result


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def format_budget(d: dict[str, Any]) -> str:
    """Short human line, e.g. ``0.27M params · 41.2M FLOPs · 1.23 ms (onnxruntime, bs1, 1 thr)``.

    Shows the onnxruntime latency when present (the usual deployment runtime), else the first
    one; missing keys are skipped so partial dicts still render.
    """
    parts: list[str] = []
    if d.get("params") is not None:
        p = int(d["params"])
        parts.append(f"{p / 1e6:.2f}M params" if p >= 10_000 else f"{p} params")  # tiny nets: no '0.00M'
    if d.get("flops") is not None:
        parts.append(f"{_si(d['flops'])} FLOPs")
    lat = d.get("latency") or {}
    if lat:
        key = "onnxruntime" if "onnxruntime" in lat else next(iter(lat))
        r = lat[key]
        dev = "" if r.get("device", "cpu") == "cpu" else f", {r['device']}"
        parts.append(f"{r['median_ms']:.2f} ms ({key}{dev}, bs{r.get('batch_size', 1)}, {r.get('threads', 1)} thr)")
        if r.get("load_warning"):
            parts.append("busy machine!")
    return " · ".join(parts)
