"""The ``stages`` space: per stage, a depth, a width and a kernel size of a residual CNN (``stagenet``).

A deliberately simple first space: it is enough to trade accuracy against parameters, FLOPs and latency, and it is
small enough that a search over it runs on a laptop.
"""
from __future__ import annotations

from archkd.spaces import CategoricalDim, IntDim, SearchSpace, register_space


@register_space("stages")
class StagesSpace(SearchSpace):
    name = "stages"

    def __init__(self, num_stages: int = 3, depths: tuple = (1, 2, 3), widths: tuple = (8, 16, 24, 32, 48, 64),
                 kernels: tuple = (3, 5)) -> None:
        self.num_stages = int(num_stages)
        self.depths = tuple(sorted(int(d) for d in depths))
        self.widths = tuple(sorted(int(w) for w in widths))
        self.kernels = tuple(sorted(int(k) for k in kernels))

    def arch_dims(self) -> list:
        out: list = []
        for i in range(self.num_stages):
            out += [IntDim(f"depth_{i}", self.depths[0], self.depths[-1]) if self._contiguous(self.depths)
                    else CategoricalDim(f"depth_{i}", self.depths),
                    CategoricalDim(f"width_{i}", self.widths),
                    CategoricalDim(f"kernel_{i}", self.kernels)]
        return out

    def smallest(self) -> dict:
        return {**{f"{k}_{i}": v for i in range(self.num_stages)
                   for k, v in (("depth", self.depths[0]), ("width", self.widths[0]), ("kernel", self.kernels[0]))},
                **{d.name: d.sample(0.0) for d in self.recipe_dims()}}

    def largest(self) -> dict:
        return {f"{k}_{i}": v for i in range(self.num_stages)
                for k, v in (("depth", self.depths[-1]), ("width", self.widths[-1]), ("kernel", self.kernels[-1]))}

    @staticmethod
    def _contiguous(values: tuple) -> bool:
        return list(values) == list(range(values[0], values[-1] + 1))

    def spec(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> dict:
        stages = [{"depth": int(config[f"depth_{i}"]), "width": int(config[f"width_{i}"]),
                   "kernel": int(config[f"kernel_{i}"]), "stride": 1 if i == 0 else 2}
                  for i in range(self.num_stages)]
        return {"name": "stagenet", "num_classes": int(num_classes), "in_channels": int(input_shape[0]),
                "kwargs": {"stages": stages}}
