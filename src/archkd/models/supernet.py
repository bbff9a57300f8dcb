"""Weight-sharing supernets: one set of weights that holds every network of a model family up to a largest one.

Why: GTN conditions a teacher on a *pool* of students at once. Training each student separately would cost the pool's
size in training runs; a supernet trains them all in one, every sampled path updating the weights it shares with the
others (Once-for-All's elastic depth, width and kernel size).

How a path maps onto the shared weights, for a spec of the same family that fits inside the largest one:
- width: a layer with ``c`` active output channels uses the leading ``c`` filters (and the leading input channels the
  previous layer produced); BatchNorm and the classifier use the leading ``c`` entries;
- kernel: a ``k×k`` kernel is the centre ``k×k`` of the largest kernel, with padding ``k // 2``;
- depth: a stage with depth ``d`` runs its first ``d`` blocks.

So ``extract(spec)`` — the standalone model of that spec carrying exactly these slices — computes what the path
computes: the same convolutions of the same weights. BatchNorm running statistics are shared across paths and
therefore describe none of them; recalibrate them for a path before evaluating it (``archkd.distill.recalibrate_bn``
works on the supernet with a path set, and on the extracted model).

Register a family's supernet with ``register_supernet(model_name)``; ``create_supernet(largest_spec)`` builds one.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.registry import build_from_spec
from archkd.registry import Registry


def slice_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The part of a shared tensor a smaller layer uses: leading entries along channel (and feature) dimensions, the
    centre along the spatial dimensions of a 4-D convolution weight."""
    if t.dim() != len(shape):
        raise ValueError(f"cannot slice a {tuple(t.shape)} tensor to {shape}")
    index = []
    for d, (have, want) in enumerate(zip(t.shape, shape)):
        if want > have:
            raise ValueError(f"cannot slice a {tuple(t.shape)} tensor to {shape}")
        start = (have - want) // 2 if t.dim() == 4 and d >= 2 else 0
        index.append(slice(start, start + want))
    return t[tuple(index)]


class DynamicConv2d(nn.Conv2d):
    """A convolution whose output channels (``active_out``) and odd kernel size (``active_kernel``) can shrink; its
    input channels follow the tensor it receives."""

    active_out: int | None = None
    active_kernel: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.active_out or self.out_channels
        k = self.active_kernel or self.kernel_size[0]
        w = slice_to(self.weight, (out, x.shape[1], k, k))
        b = self.bias[:out] if self.bias is not None else None
        return F.conv2d(x, w, b, self.stride, k // 2, self.dilation, 1)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the leading channels of its (shared) affine parameters and running statistics.

    Mirrors ``nn.BatchNorm2d.forward``, so ``momentum=None`` (a cumulative average, as ``recalibrate_bn`` sets) works:
    the running-statistic slices are views, updated in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        batch_stats = self.training or not self.track_running_stats
        return F.batch_norm(x, self.running_mean[:c] if self.track_running_stats else None,
                            self.running_var[:c] if self.track_running_stats else None,
                            self.weight[:c], self.bias[:c], batch_stats, factor, self.eps)


class DynamicLinear(nn.Linear):
    """A linear layer over the leading input features (the classifier after a narrower last stage)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, :x.shape[1]], self.bias)


def _dynamic(module: nn.Module) -> nn.Module:
    """Replace every Conv2d (groups 1), BatchNorm2d and Linear below ``module`` by its dynamic twin, same weights."""
    for name, child in module.named_children():
        new: nn.Module | None = None
        if type(child) is nn.Conv2d:
            if child.groups != 1:
                raise ArchkdError("grouped convolutions are not elastic in this supernet", "use a family without them")
            new = DynamicConv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                                bias=child.bias is not None)
        elif type(child) is nn.BatchNorm2d:
            new = DynamicBatchNorm2d(child.num_features, child.eps, child.momentum)
        elif type(child) is nn.Linear:
            new = DynamicLinear(child.in_features, child.out_features, bias=child.bias is not None)
        if new is None:
            _dynamic(child)
        else:
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
    return module


SUPERNETS: Registry[Callable[[dict], "Supernet"]] = Registry("weight-sharing supernet")


def register_supernet(family: str) -> Callable:
    """Register a ``Supernet`` subclass for the model family ``family`` (a registry model name)."""
    return SUPERNETS.register(family)


class Supernet(nn.Module):
    """A family's largest network with elastic layers; ``set_path(spec)`` picks the sub-network ``forward`` runs.

    Subclasses map a spec onto the layers (``_activate``) and run the active blocks (``forward``). The shared weights
    live in ``self.net``, a model of the family with the same module names as every model it contains, so
    ``extract`` copies by name.
    """

    family = ""

    def __init__(self, largest: dict) -> None:
        super().__init__()
        if largest.get("name") != self.family:
            raise ArchkdError(f"a {self.family} supernet cannot hold '{largest.get('name')}' networks",
                              f"give the largest {self.family} spec")
        self.largest = dict(largest)
        self.net = _dynamic(build_from_spec(largest))
        self.path: dict = self.largest
        self.set_path(largest)

    def set_path(self, spec: dict) -> None:
        """Select the sub-network of ``spec``; it must be of this family, with the same classes and input channels."""
        for key in ("name", "num_classes", "in_channels"):
            if spec.get(key) != self.largest.get(key):
                raise ArchkdError(f"spec {key}={spec.get(key)!r} differs from the supernet's {self.largest.get(key)!r}",
                                  "sample paths from the space the supernet was built for")
        self._activate(spec)
        self.path = spec

    def _activate(self, spec: dict) -> None:
        raise NotImplementedError

    def extract(self, spec: dict | None = None) -> nn.Module:
        """The standalone model of ``spec`` (default: the current path) carrying the shared weights it uses.

        Its BatchNorm buffers are the shared ones, sliced: recalibrate them before evaluating it."""
        spec = spec or self.path
        self.set_path(spec)
        model = build_from_spec(spec)
        shared = self.net.state_dict()
        own = model.state_dict()
        missing = [k for k in own if k not in shared]
        if missing:
            raise ArchkdError(f"spec has layers the supernet lacks (first: {missing[0]})",
                              "sample paths from the space the supernet was built for")
        try:
            model.load_state_dict({k: slice_to(shared[k], tuple(v.shape)).clone() for k, v in own.items()})
        except ValueError as e:
            raise ArchkdError(f"spec does not fit inside the supernet ({e})",
                              "sample paths from the space the supernet was built for") from None
        return model


@register_supernet("stagenet")
class StageSupernet(Supernet):
    """Elastic ``stagenet``: per stage, the first ``depth`` residual blocks, the leading ``width`` channels, the
    centre ``kernel×kernel`` taps. Paths must keep the stage count and strides of the largest network."""

    family = "stagenet"

    def _stages(self, spec: dict) -> list[dict]:
        from archkd.models.stagenet import normalize_stages

        return normalize_stages((spec.get("kwargs") or {}).get("stages"))

    def _activate(self, spec: dict) -> None:
        if not hasattr(self, "_top"):
            self._top = self._stages(self.largest)
        stages, top = self._stages(spec), self._top
        kw, top_kw = spec.get("kwargs") or {}, self.largest.get("kwargs") or {}
        if len(stages) != len(top) or (kw.get("stem_width") is None) != (top_kw.get("stem_width") is None):
            raise ArchkdError(f"a path has {len(stages)} stages but the supernet {len(top)} (or a different stem)",
                              "sample paths from the space the supernet was built for")
        for i, (st, mx) in enumerate(zip(stages, top)):
            bad = [k for k in ("depth", "width", "kernel") if st[k] > mx[k]] + (["stride"] if st["stride"] != mx["stride"] else [])
            if bad or st["kernel"] % 2 != mx["kernel"] % 2:
                raise ArchkdError(f"stage {i} of the path ({st}) does not fit the supernet's ({mx})",
                                  "sample paths from the space the supernet was built for")
        net = self.net
        net.stem[0].active_out = kw.get("stem_width") or stages[0]["width"]
        for st, stage in zip(stages, net.stages):
            for block in stage[:st["depth"]]:
                for conv in (block.conv1[0], block.conv2[0]):
                    conv.active_out, conv.active_kernel = st["width"], st["kernel"]
                if isinstance(block.shortcut, nn.Sequential):
                    block.shortcut[0].active_out = st["width"]
        self.depths = [st["depth"] for st in stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net.stem(x)
        for stage, depth in zip(self.net.stages, self.depths):
            for block in stage[:depth]:
                x = block(x)
        return self.net.head(x)


def create_supernet(largest: dict) -> Supernet:
    """The supernet of ``largest``'s family holding every network up to ``largest``."""
    family = largest.get("name")
    if family not in SUPERNETS:
        raise ArchkdError(f"model family '{family}' has no weight-sharing supernet (have: {', '.join(SUPERNETS)})",
                          "use a space of a family with one, e.g. --space stages")
    return SUPERNETS[family](largest)
