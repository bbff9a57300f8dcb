"""Latency under a fixed, documented protocol.

Why fixed: latency numbers are compared across candidate students and across runs; warmup,
thread count, timing clock and statistic must be identical or the comparison is meaningless.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from archkd.config import register_choices
from archkd.errors import ArchkdError
from archkd.measure._common import check_shape, parse_device, private_copy, random_input
from archkd.measure.onnx_export import INPUT_NAME, to_onnx
from archkd.registry import Registry

# runtime name -> timer(model, shape, device, threads, warmup, repeats) -> seconds of each timed call; a new
# runtime is one registered timer
Timer = Callable[[nn.Module, tuple[int, ...], torch.device, int, int, int], list[float]]
RUNTIMES: Registry[Timer] = Registry("runtime")
register_choices("budget.latency_runtime", RUNTIMES.names)
register_choices("measure.runtimes", RUNTIMES.names)
# The one protocol: every latency archkd reports (search budgets, reward terms, `archkd measure`, the predictor's
# training data, the int8 comparison) comes from WARMUP untimed then REPEATS timed calls; `bench/latency.py` measures
# its repeatability (coefficient of variation of the median over repeated measurements) against the cheaper 5/30.
WARMUP = 10
REPEATS = 50


@dataclass(frozen=True)
class LatencyResult:
    """Latency statistics of ``repeats`` timed single forward calls, in milliseconds.

    The median is the headline number (robust to outliers); ``iqr_ms`` (p75 - p25) says how
    noisy the machine was. ``load_warning`` is set when the 1-minute load average exceeded the
    number of cores when measuring: numbers from a busy machine are unreliable.
    """

    runtime: str
    device: str
    batch_size: int
    threads: int
    repeats: int
    median_ms: float
    iqr_ms: float
    p90_ms: float
    min_ms: float
    load_warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _load_warning() -> str | None:
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows / unavailable
        return None
    cores = _cpu_count()
    if load > cores:
        return (f"1-minute load average {load:.1f} exceeds {cores} cores: "
                "latency numbers are unreliable, re-measure on an idle machine")
    return None


def _stats(times_s: list[float]) -> dict[str, float]:
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    p25, p50, p75, p90 = np.percentile(ms, [25, 50, 75, 90])
    return {"median_ms": float(p50), "iqr_ms": float(p75 - p25), "p90_ms": float(p90), "min_ms": float(ms.min())}


@RUNTIMES.register("torch")
def _time_torch(model: nn.Module, shape: tuple[int, ...], dev: torch.device, threads: int, warmup: int,
                repeats: int) -> list[float]:  # threads: set by measure_latency with torch.set_num_threads
    clone = private_copy(model, dev)
    x = random_input(clone, shape, dev)
    cuda = dev.type == "cuda"
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            clone(x)
        if cuda:
            torch.cuda.synchronize(dev)
        for _ in range(repeats):
            t0 = time.perf_counter()
            clone(x)
            if cuda:
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t0)
    return times


@RUNTIMES.register("onnxruntime")
def _time_onnxruntime(model: nn.Module, shape: tuple[int, ...], dev: torch.device, threads: int,
                      warmup: int, repeats: int) -> list[float]:
    import onnxruntime as ort

    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ArchkdError(
                "onnxruntime has no CUDAExecutionProvider in this environment",
                "install onnxruntime-gpu, or measure onnxruntime latency with device='cpu'",
            )
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": dev.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    x = random_input(model, shape, "cpu").numpy()  # reads the dtype only
    with tempfile.TemporaryDirectory(prefix="archkd-lat-") as tmp:
        path = to_onnx(model, torch.from_numpy(x), Path(tmp) / "model.onnx")
        session = _session(path, threads, providers)
    return _time_session(session, x, warmup, repeats)


def _session(path: Path, threads: int, providers: list[Any]):  # noqa: ANN202 - onnxruntime is imported lazily
    """An ONNX Runtime session under the protocol: ``threads`` intra-op threads, one inter-op, sequential."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def _time_session(session: Any, x: np.ndarray, warmup: int, repeats: int) -> list[float]:
    feed = {INPUT_NAME: x}
    for _ in range(warmup):
        session.run(None, feed)
    times: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)  # synchronous: outputs are copied back to host
        times.append(time.perf_counter() - t0)
    return times


def time_onnx_file(path: str | Path, input_shape: tuple[int, ...], batch_size: int = 1, threads: int = 1,
                   warmup: int = WARMUP, repeats: int = REPEATS) -> LatencyResult:
    """Latency of an ONNX file on ONNX Runtime (CPU) under the same protocol as ``measure_latency``: for a file that
    is not a PyTorch model, e.g. an int8 export beside its fp32 original."""
    shape = check_shape(input_shape, batch_size)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    times = _time_session(_session(Path(path), int(threads), ["CPUExecutionProvider"]), x, int(warmup), int(repeats))
    return LatencyResult(runtime="onnxruntime", device="cpu", batch_size=int(batch_size), threads=int(threads),
                         repeats=int(repeats), load_warning=_load_warning(), **_stats(times))


def measure_latency(model: nn.Module, input_shape: tuple[int, ...], runtime: str = "torch", device: str = "cpu",
                    batch_size: int = 1, threads: int = 1, warmup: int = WARMUP, repeats: int = REPEATS) -> LatencyResult:
    """Latency of one forward on a ``(batch_size, *input_shape)`` input.

    Protocol: private eval-mode copy; ``torch.inference_mode``; ``torch.set_num_threads(threads)``
    (restored afterwards) or, for onnxruntime, ``intra_op_num_threads=threads``,
    ``inter_op_num_threads=1`` and sequential execution; ``warmup`` untimed calls, then
    ``repeats`` single calls each timed with ``time.perf_counter`` (CUDA synchronised).
    ``runtime="onnxruntime"`` with ``device="cuda"`` needs the CUDAExecutionProvider.
    """
    timer = RUNTIMES.lookup(runtime)
    shape = check_shape(input_shape, batch_size)
    dev = parse_device(device)
    for name, value, low in (("threads", threads, 1), ("warmup", warmup, 0), ("repeats", repeats, 1)):
        if int(value) != value or value < low:
            raise ArchkdError(f"{name} must be an integer >= {low}, got {value!r}", f"set {name} >= {low}")

    load_warning = _load_warning()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        times = timer(model, shape, dev, int(threads), int(warmup), int(repeats))
    finally:
        torch.set_num_threads(previous_threads)
    return LatencyResult(runtime=runtime, device=str(dev), batch_size=int(batch_size), threads=int(threads),
                         repeats=int(repeats), load_warning=load_warning, **_stats(times))
