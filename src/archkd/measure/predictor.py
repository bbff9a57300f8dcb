"""A latency predictor: a per-block lookup table plus a fitted additive correction, per machine and runtime.

Why this form (chosen on evidence, ``bench/latency.py``): a regression on whole-network features (FLOPs, operator
counts, elements written, per operator kind) put only 40–65 % of held-out ``stages``/``mnas`` networks within ±10 % of
their measured ONNX Runtime latency, because the runtime's speed per FLOP depends on the exact layer shape (kernel,
channel counts, spatial size pick different kernels: a 24-channel 5×5 conv ran slower than a 64-channel 3×3 one). So
every convolution and linear layer — a *block* — is timed once in isolation on the target runtime (as
conv + BatchNorm + ReLU, the pattern runtimes fuse, minus the time of an empty model) and kept in a lookup table keyed
by its exact shape; what the table does not see (the overlap of blocks, attention, element-wise and normalisation
operators the runtime does not fuse, the session's fixed cost) is a non-negative linear correction:

.. math::

    \\hat t(x) = c_0 + a\\sum_{b\\in\\text{blocks}(x)} L[b]
                 + \\sum_k \\big(a_k\\,n_k(x) + b_k\\,f_k(x) + d_k\\,e_k(x)\\big),\\qquad c_0, a, a_k, b_k, d_k \\ge 0,

with ``n_k``, ``f_k``, ``e_k`` the count, FLOPs and written elements of the other operators of kind ``k``. The
coefficients are fitted by non-negative least squares on *relative* error, :math:`\\min_{w\\ge0}\\sum_i((X_iw-t_i)/t_i)^2`,
because the goal is relative (±10 %) and latencies span orders of magnitude; non-negativity keeps every term a cost.
Operators are read by running the network once under a dispatch mode that sees every aten call, so any space works.
A block not yet in the table is timed when first met (milliseconds), so the table grows with use.

A predictor is tied to the machine, runtime, threads and batch size it was measured with (:func:`machine_id`);
:func:`predictor_path` names its file under the archkd cache so later searches reuse it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from archkd.errors import ArchkdError
from archkd.measure._common import check_shape, private_copy, random_input
from archkd.measure.latency import measure_latency

KINDS = ("matmul", "attention", "norm", "pool", "layout", "eltwise")
BLOCKS = ("conv", "dwconv", "linear")  # dense convolutions, depthwise/grouped ones, linear layers
FEATURES = (("bias",) + tuple(f"{b}_{q}" for b in BLOCKS for q in ("ms", "n"))
            + tuple(f"{k}_{q}" for k in KINDS for q in ("ops", "flops", "elems")))
_SKIP = {"detach", "view", "_unsafe_view", "reshape", "expand", "unsqueeze", "squeeze",
         "slice", "select", "alias", "as_strided", "split", "split_with_sizes", "chunk", "unbind", "flatten", "empty",
         "_to_copy", "lift_fresh", "clone", "contiguous", "dropout"}  # views and no-ops: no kernel of their own


def _kind(name: str) -> str | None:
    if name in _SKIP:
        return None
    if name in ("mm", "addmm", "bmm", "baddbmm", "matmul"):
        return "matmul"
    if "scaled_dot_product" in name:
        return "attention"
    if name in ("t", "transpose", "permute", "cat", "pixel_shuffle", "channel_shuffle"):
        return "layout"  # views or copies in PyTorch, but a copying Transpose/Concat in an exported graph
    if "batch_norm" in name or "layer_norm" in name or "group_norm" in name:
        return "norm"
    if "pool" in name or name in ("mean", "sum", "amax"):
        return "pool"
    return "eltwise"


def _flops(kind: str, name: str, args: tuple, out: torch.Tensor) -> float:
    """Multiply-adds × 2 of a matmul or attention operator (0 for the rest, whose cost is their elements)."""
    if kind == "matmul":
        a = args[1] if name in ("addmm", "baddbmm") else args[0]  # addmm(bias, a, b)
        return 2.0 * out.numel() * float(a.shape[-1])
    if kind == "attention":
        q, k = args[0], args[1]
        return 4.0 * float(np.prod(q.shape[:-1])) * k.shape[-2] * q.shape[-1]
    return 0.0


def _block(name: str, args: tuple) -> str | None:
    """The lookup-table key of a convolution or linear layer: everything its run time depends on."""
    if name == "conv2d" and args[0].dim() == 4:
        x, w, b = args[0], args[1], args[2] if len(args) > 2 else None
        get = lambda i, d: args[i] if len(args) > i else d  # noqa: E731 - conv2d's trailing defaults
        return json.dumps(["conv2d", list(x.shape), list(w.shape), b is not None, list(get(3, [1, 1])),
                           get(4, [0, 0]), list(get(5, [1, 1])), int(get(6, 1))])
    if name == "linear":
        x, w = args[0], args[1]
        return json.dumps(["linear", list(x.shape), list(w.shape), len(args) > 2 and args[2] is not None])
    return None


def block_kind(key: str) -> str:
    """``conv``, ``dwconv`` (grouped: in-graph runtimes lay these out differently from dense ones) or ``linear``."""
    op, _, _, _, *rest = json.loads(key)
    return "linear" if op == "linear" else "dwconv" if rest[3] > 1 else "conv"


def _pair(v: Any) -> Any:
    return v if isinstance(v, str) else tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def block_module(key: str) -> tuple[nn.Module, tuple[int, ...], int]:
    """A block rebuilt from its key, with its per-sample input shape and batch size, to be timed in isolation."""
    op, x_shape, w_shape, bias, *rest = json.loads(key)
    if op == "conv2d":
        stride, padding, dilation, groups = rest
        cout, cin_g, kh, kw = w_shape
        conv = nn.Conv2d(cin_g * groups, cout, (kh, kw), _pair(stride), _pair(padding), _pair(dilation), groups,
                         bias=bias)
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU()), tuple(x_shape[1:]), x_shape[0]
    return nn.Linear(w_shape[1], w_shape[0], bias=bias), tuple(x_shape[1:]), x_shape[0]


@dataclass
class OpCounts:
    """What one forward of a network runs: its blocks (with repeats) and, per other operator kind, counts, FLOPs and
    elements written."""

    blocks: list[str]
    totals: dict[str, float]


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = OpCounts([], {f"{k}_{q}": 0.0 for k in KINDS for q in ("ops", "flops", "elems")})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        block = _block(name, args)
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if block is not None:
            self.ops.blocks.append(block)
        elif (kind := _kind(name)) is not None and isinstance(first, torch.Tensor):
            t = self.ops.totals
            t[f"{kind}_ops"] += 1
            t[f"{kind}_flops"] += _flops(kind, name, args, first)
            t[f"{kind}_elems"] += float(first.numel())
        return out


def count_ops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> OpCounts:
    """Run a private eval copy once on CPU and record its operators (the inference path: ``inference_mode``)."""
    shape = check_shape(input_shape, batch_size)
    clone = private_copy(model, "cpu")
    x = random_input(clone, shape, "cpu")
    rec = _OpRecorder()
    with torch.inference_mode(), rec:
        clone(x)
    return rec.ops


def machine_id() -> dict[str, str]:
    """What a latency measured here depends on: CPU model, usable cores and the runtimes' versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime as ort

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": str(cores), "torch": torch.__version__, "onnxruntime": ort.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def predictor_path(cache_dir: str | Path, runtime: str, threads: int, batch_size: int, space: str,
                   input_shape: Sequence[int]) -> Path:
    """Where the predictor for this machine, runtime, threads, batch size, space and input shape is kept."""
    key = hashlib.sha256(json.dumps(machine_id(), sort_keys=True).encode()).hexdigest()[:12]
    shape = "x".join(str(int(s)) for s in input_shape)
    return Path(cache_dir) / "latency" / key / f"{space}-{runtime}-t{threads}-b{batch_size}-{shape}.json"


@dataclass(frozen=True)
class Validation:
    """Accuracy on held-out networks: the share predicted within ±10 % of measured, the median and worst relative
    errors, and Kendall's τ between predicted and measured (does the predictor *rank* as the runtime does)."""

    n: int
    within_10pct: float
    median_rel_error: float
    max_rel_error: float
    kendall_tau: float


@dataclass
class LatencyPredictor:
    """Predicted latency in ms on ``runtime`` with ``threads`` threads at ``batch_size``, under the measurement
    protocol of :func:`archkd.measure.measure_latency`; the module docstring gives the model and its fit."""

    runtime: str
    threads: int = 1
    batch_size: int = 1
    weights: dict[str, float] = field(default_factory=dict)
    lut: dict[str, float] = field(default_factory=dict)
    empty_ms: float | None = None
    machine: dict[str, str] = field(default_factory=machine_id)
    space: str | None = None
    input_shape: list[int] | None = None
    n_fit: int = 0
    busy_share: float = 0.0  # share of its training measurements taken while the machine was busy
    validation: Validation | None = None

    def _time(self, module: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> float:
        return measure_latency(module, input_shape, runtime=self.runtime, batch_size=batch_size,
                               threads=self.threads).median_ms

    def features(self, model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, float]:
        """The model's features; blocks not in the lookup table yet are timed now and added to it."""
        ops = count_ops(model, input_shape, self.batch_size)
        if self.empty_ms is None:
            self.empty_ms = self._time(nn.ReLU(), (1,), 1)  # the session's own cost, taken off every block
        for key in set(ops.blocks) - set(self.lut):
            module, shape, batch = block_module(key)
            self.lut[key] = max(0.0, self._time(module, shape, batch) - self.empty_ms)
        out = {"bias": 1.0, **{f"{b}_{q}": 0.0 for b in BLOCKS for q in ("ms", "n")}, **ops.totals}
        for key in ops.blocks:
            kind = block_kind(key)
            out[f"{kind}_ms"] += self.lut[key]
            out[f"{kind}_n"] += 1.0
        return out

    def fit(self, features: Sequence[dict[str, float]], latencies_ms: Sequence[float]) -> "LatencyPredictor":
        """Non-negative least squares on relative error; columns scaled to unit maximum for conditioning."""
        from scipy.optimize import nnls

        if len(features) < 2 or len(features) != len(latencies_ms):
            raise ArchkdError(f"a latency predictor needs at least 2 measured networks, got {len(features)}",
                              "measure more architectures (budget.latency_predictor_samples)")
        X = np.array([[f.get(k, 0.0) for k in FEATURES] for f in features], dtype=np.float64)
        t = np.asarray(latencies_ms, dtype=np.float64)
        scale = np.where(X.max(axis=0) > 0, X.max(axis=0), 1.0)
        w, _ = nnls((X / scale) / t[:, None], np.ones_like(t), maxiter=50 * X.shape[1])
        self.weights = {k: float(v) for k, v in zip(FEATURES, w / scale)}
        self.n_fit = len(t)
        return self

    def predict(self, features: dict[str, float]) -> float:
        if not self.weights:
            raise ArchkdError("this latency predictor was never fitted", "fit it with 'archkd predictor'")
        return float(sum(self.weights.get(k, 0.0) * v for k, v in features.items()))

    def predict_ms(self, model: nn.Module, input_shape: tuple[int, ...]) -> float:
        return self.predict(self.features(model, input_shape))

    def validate(self, features: Sequence[dict[str, float]], latencies_ms: Sequence[float]) -> Validation:
        from scipy.stats import kendalltau

        pred = np.array([self.predict(f) for f in features])
        t = np.asarray(latencies_ms, dtype=np.float64)
        rel = np.abs(pred - t) / t
        tau = float(kendalltau(pred, t).statistic) if len(t) > 1 else float("nan")
        return Validation(n=len(t), within_10pct=float(np.mean(rel <= 0.10)), median_rel_error=float(np.median(rel)),
                          max_rel_error=float(rel.max()), kendall_tau=tau)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)  # atomic: a crash never leaves half a predictor for the next search to read
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyPredictor":
        try:
            d = json.loads(Path(path).read_text())
            v = d.pop("validation", None)
            return cls(**d, validation=Validation(**v) if v else None)
        except FileNotFoundError as exc:
            raise ArchkdError(f"no latency predictor at {path}", "fit one with 'archkd predictor --space SPACE'") from exc
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise ArchkdError(f"{path} is not an archkd latency predictor ({exc})",
                              "delete it and fit it again with 'archkd predictor'") from exc
