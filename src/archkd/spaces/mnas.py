"""The ``mnas`` space: MnasNet's factorized hierarchical space (AKD's student space).

Per stage: op ∈ {conv, dwsep, mbconv3, mbconv6}, kernel ∈ {3, 5}, SE ratio ∈ {0, 0.25}, skip ∈ {none, identity},
layers ∈ {1..4}, filters = base × {0.75, 1.0, 1.25}. ``resolution="small"`` (32 px and below): stem stride 1 and
4 stages (or ``num_stages`` 3); ``"large"`` (224 px): stem stride 2 and 7 stages (5–7) with MnasNet's base filters.
"""
from __future__ import annotations

from archkd.models.mnas import SKIPS
from archkd.spaces import CategoricalDim, SearchSpace, register_space

_SMALL = ((16, 1), (24, 2), (40, 2), (80, 1))
_LARGE = ((16, 1), (24, 2), (40, 2), (80, 2), (112, 1), (160, 2), (320, 1))


def _round8(v: float) -> int:
    return max(8, int(round(v / 8.0)) * 8)


@register_space("mnas")
class MnasSpace(SearchSpace):
    name = "mnas"
    op_choices = ("dwsep", "conv", "mbconv3", "mbconv6")

    def __init__(self, resolution: str = "small", num_stages: int | None = None, layers: tuple = (1, 2, 3, 4),
                 width_multipliers: tuple = (0.75, 1.0, 1.25), base_filters: tuple | None = None,
                 head_filters: int | None = None) -> None:
        if resolution not in ("small", "large"):
            from archkd.errors import ArchkdError

            raise ArchkdError(f"unknown resolution '{resolution}' for space 'mnas'", "use small (≤64 px) or large (224 px)")
        base = _SMALL if resolution == "small" else _LARGE
        n = num_stages or len(base)
        self.resolution = resolution
        self.stage_base = [(f, s) for f, s in base[:n]] if base_filters is None else \
            [(int(f), base[i][1] if i < len(base) else 2) for i, f in enumerate(base_filters)]
        self.layers = tuple(sorted(int(v) for v in layers))
        self.mults = tuple(sorted(float(v) for v in width_multipliers))
        self.head_filters = head_filters or (256 if resolution == "small" else 1280)

    def smallest(self) -> dict:
        """Depthwise-separable 3×3 ops, no SE, fewest layers and narrowest width in every stage."""
        out: dict = {}
        for i in range(len(self.stage_base)):
            out.update({f"op_{i}": "dwsep", f"kernel_{i}": 3, f"se_{i}": 0.0, f"skip_{i}": SKIPS[0],
                        f"layers_{i}": self.layers[0], f"width_{i}": self.mults[0]})
        return {**out, **{d.name: d.sample(0.0) for d in self.recipe_dims()}}

    def arch_dims(self) -> list:
        out: list = []
        for i in range(len(self.stage_base)):
            out += [CategoricalDim(f"op_{i}", self.op_choices), CategoricalDim(f"kernel_{i}", (3, 5)),
                    CategoricalDim(f"se_{i}", (0.0, 0.25)), CategoricalDim(f"skip_{i}", SKIPS),
                    CategoricalDim(f"layers_{i}", self.layers), CategoricalDim(f"width_{i}", self.mults)]
        return out

    def spec(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> dict:
        stages = []
        for i, (base, stride) in enumerate(self.stage_base):
            stages.append({"op": config[f"op_{i}"], "kernel": int(config[f"kernel_{i}"]), "se": float(config[f"se_{i}"]),
                           "skip": config[f"skip_{i}"], "layers": int(config[f"layers_{i}"]),
                           "filters": _round8(base * float(config[f"width_{i}"])), "stride": int(stride)})
        return {"name": "mnasnet", "num_classes": int(num_classes), "in_channels": int(input_shape[0]),
                "kwargs": {"stages": stages, "stem_filters": 16 if self.resolution == "small" else 32,
                           "stem_stride": 1 if self.resolution == "small" else 2, "head_filters": self.head_filters}}
