"""Parameter, FLOP and activation-memory counts."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archkd.measure._common import check_shape, model_device, private_copy, random_input


@dataclass(frozen=True)
class FlopsResult:
    """FLOPs and MACs of one forward pass.

    ``flops`` counts a multiply-add as 2 FLOPs (torch's FlopCounterMode convention), so
    ``macs == flops // 2``. Only ops FlopCounterMode knows (conv, matmul/linear, attention, ...)
    are counted; elementwise ops (activations, BatchNorm in eval, adds) are not.
    """

    flops: int
    macs: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable and frozen; buffers excluded; shared ones counted once).

    Why include frozen ones: they still ship in the deployed file and occupy memory.
    """
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> FlopsResult:
    """FLOPs/MACs of one inference forward on a ``(batch_size, *input_shape)`` input.

    Runs a private eval-mode CPU copy under ``torch.no_grad`` inside ``FlopCounterMode``, so
    dropout/BatchNorm behave as at deployment and the caller's model is untouched.
    """
    shape = check_shape(input_shape, batch_size)
    clone = private_copy(model, "cpu")
    x = random_input(clone, shape, "cpu")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        clone(x)
    flops = int(counter.get_total_flops())
    return FlopsResult(flops=flops, macs=flops // 2)


def _tensors(obj: Any) -> list[torch.Tensor]:
    """All tensors inside a (possibly nested) tuple/list/dict of module inputs or outputs."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _live_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views/in-place outputs counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def peak_activation_memory(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Peak activation memory in bytes of one inference forward.

    On CUDA (model's parameters on a CUDA device): the measured increase of
    ``torch.cuda.max_memory_allocated`` during a forward of a private copy (input included,
    weights excluded).

    On CPU this is an *estimate* of peak live activation memory for inference: the maximum over
    leaf modules of (bytes of its inputs + bytes of its outputs), with tensors sharing storage
    counted once. Why an estimate: CPU allocators expose no peak counter; in inference a layer's
    input and output are what must be alive together. Tensors held for skip connections and
    functional ops outside leaf modules are not seen, so residual nets are under-estimated.
    """
    shape = check_shape(input_shape, batch_size)
    device = model_device(model)
    if device.type == "cuda":
        return _cuda_peak(model, shape, device)

    clone = private_copy(model, "cpu")
    peak = 0

    def hook(_module: nn.Module, inputs: Any, outputs: Any) -> None:
        nonlocal peak
        peak = max(peak, _live_bytes(_tensors(inputs) + _tensors(outputs)))

    leaves = [m for m in clone.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = random_input(clone, shape, "cpu")
        with torch.inference_mode():
            out = clone(x)
    finally:
        for h in handles:
            h.remove()
    if peak == 0:  # no leaf module ran (purely functional forward): whole model as one op
        peak = _live_bytes([x, *_tensors(out)])
    return int(peak)


def _cuda_peak(model: nn.Module, shape: tuple[int, ...], device: torch.device) -> int:
    clone = private_copy(model, device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = random_input(clone, shape, device)
    with torch.inference_mode():
        out = clone(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out, x
    return int(max(peak, 0))
