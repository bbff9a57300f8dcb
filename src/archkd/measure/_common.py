"""Helpers shared by the measurement functions.

Why they exist: every measurement must run on a private copy of the caller's model so that
train/eval mode, device, dtype and memory format of the caller's model never change (a search
loop measures a student and then keeps training it).
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from archkd.errors import ArchkdError


def model_dtype(model: nn.Module) -> torch.dtype:
    """Floating dtype of the model's first floating parameter/buffer (float32 if none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter/buffer (CPU if the model holds no tensors)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def private_copy(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """Deep copy of ``model`` in eval mode (optionally moved to ``device``).

    Why a deep copy: ``.eval()``/``.to()`` mutate a module in place; measuring must leave the
    caller's model exactly as it was.
    """
    if not isinstance(model, nn.Module):
        raise ArchkdError(
            f"expected a torch.nn.Module, got {type(model).__name__}",
            "pass the model object itself (not a state dict or a path)",
        )
    try:
        clone = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any failure here is caused by the user's module
        raise ArchkdError(
            f"cannot copy the model for measurement ({type(exc).__name__}: {exc})",
            "make the model deep-copyable (remove hooks/handles holding locks, files or generators)",
        ) from exc
    if device is not None:
        clone = clone.to(device)
    return clone.eval()


def check_shape(input_shape: tuple[int, ...], batch_size: int) -> tuple[int, ...]:
    """Validate a per-sample input shape and a batch size; return the full batched shape."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError) as exc:
        raise ArchkdError(
            f"input_shape must be a tuple of ints, got {input_shape!r}",
            "pass the per-sample shape without the batch dimension, e.g. (3, 224, 224)",
        ) from exc
    if not shape or any(s <= 0 for s in shape):
        raise ArchkdError(
            f"input_shape must be non-empty with positive sizes, got {input_shape!r}",
            "pass the per-sample shape without the batch dimension, e.g. (3, 224, 224)",
        )
    if int(batch_size) != batch_size or batch_size < 1:
        raise ArchkdError(f"batch_size must be a positive integer, got {batch_size!r}", "use batch_size >= 1")
    return (int(batch_size), *shape)


def random_input(model: nn.Module, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    """A random input of ``shape`` matching the model's dtype, on ``device``.

    Fixed seed generator so repeated measurements feed the same numbers (no effect on the
    global RNG, which the caller may rely on for training reproducibility).
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float32)
    return x.to(device=device, dtype=model_dtype(model))


def parse_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` and fail with a user-facing error if it is unusable here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ArchkdError(f"unknown device {device!r}", "use 'cpu' or 'cuda' (optionally 'cuda:N')") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ArchkdError(f"unsupported device {device!r} for measurement", "use 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArchkdError("device 'cuda' requested but CUDA is not available", "measure on device='cpu'")
    return dev


@contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Silence DeprecationWarnings from torch's legacy ONNX exporter and TorchScript.

    Why: archkd deliberately uses the legacy (TorchScript-based) ONNX exporter because the dynamo
    exporter needs onnxscript; the warnings are noise for the user. Scoped, not global.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
