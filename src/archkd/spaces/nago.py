"""The ``nago`` space: NAGO's hierarchical graph *generator* (Ru et al., NeurIPS 2020), AutoKD's student space.

What: a configuration is not a network but 8 generator parameters — Watts–Strogatz (nodes, K, P) for the top
(cells) and bottom (ops) graphs, Erdős–Rényi (nodes, P) for the mid (nodes) graph. Each graph seed draws one network
from that generator; ``members`` returns a family of ``family_size`` of them (seeds ``seed + j``), which the trial
objective trains and scores by their mean (AutoKD's family objective). The networks are ``archkd.models.nago``
specs with the sampled graphs written out as edge lists, so a checkpoint rebuilds without networkx.

Why width scaling: as in NAGO, every sampled network is scaled to the parameter budget (``scale_to``), so the search
compares *wirings* at equal size instead of rediscovering "bigger is better". Channels are
``[round(w), round(2w), round(4w)]`` (at least 1; round half up) for a real multiplier ``w`` found by bisection on
the closed-form parameter count ``nago_param_count`` (never by building models), to the largest count within the
budget — normally ≥ 90 % of it. Two documented limits: if even ``w = 1`` (channels ``[1, 2, 4]``) exceeds the budget,
that smallest width is used and the search's budget check marks the network infeasible; and at small widths one
more channel can add over 10 % of the parameters, so the [0.9, 1.0] window can be unreachable — the largest count
within the budget is taken then. Without a budget, channels are ``[width, 2·width, 4·width]``.

Graph sampling (networkx, ``sample_graph``): K is clipped to ``[2, nodes − 1]``; graphs are redrawn until connected.
Departures from VEGA's code: each level gets its own derived seed ``3·graph_seed + level`` (levels top 0, mid 1,
bottom 2) so the three levels differ, and attempt ``a`` of a level uses networkx seed ``100·level_seed + a`` for
``a < 100`` — disjoint seed ranges for every (graph seed, level), where VEGA tries 30 seeds. VEGA's
``connected_watts_strogatz_graph`` is replaced by this loop over ``watts_strogatz_graph`` so that every level retries
the same way; if no attempt is connected (vanishingly rare: an ER graph with P = 0.2) the path graph
``0-1-…-(n−1)`` is used, deterministically.
"""
from __future__ import annotations

import math
from typing import Any

from archkd.errors import ArchkdError
from archkd.models.nago import nago_param_count
from archkd.spaces import FloatDim, IntDim, SearchSpace, register_space

LEVELS = ("top", "mid", "bottom")
GENERATOR_KEYS = ("top_nodes", "top_k", "top_p", "mid_nodes", "mid_p", "bottom_nodes", "bottom_k", "bottom_p")
ATTEMPTS = 100  # connected-graph draws per level before the path-graph fallback
SMALL_INPUT_PX = 40  # images below this height get the stride-1 stem


def sample_graph(kind: str, nodes: int, k: int | None, p: float, level_seed: int) -> dict[str, Any]:
    """A connected random graph as ``{"nodes": n, "edges": [[u, v], ...]}`` with ``u < v``, sorted.

    ``kind`` is ``"ws"`` (Watts–Strogatz with ``K`` clipped to ``[2, n − 1]``) or ``"er"`` (Erdős–Rényi).
    Attempt ``a`` uses seed ``100·level_seed + a``; after ``ATTEMPTS`` disconnected draws, the path graph.
    """
    import networkx as nx  # only sampling needs networkx; rebuilding a network from its spec does not

    n = int(nodes)
    if n == 1:
        return {"nodes": 1, "edges": []}
    for a in range(ATTEMPTS):
        seed = ATTEMPTS * level_seed + a
        if kind == "ws":
            g = nx.watts_strogatz_graph(n, max(2, min(int(k or 2), n - 1)), float(p), seed=seed)
        else:
            g = nx.erdos_renyi_graph(n, float(p), seed=seed)
        if nx.is_connected(g):
            return {"nodes": n, "edges": sorted([min(u, v), max(u, v)] for u, v in g.edges())}
    return {"nodes": n, "edges": [[i, i + 1] for i in range(n - 1)]}


def channels_for(w: float) -> list[int]:
    """Stage channels ``[round(w), round(2w), round(4w)]``, each at least 1 (round half up)."""
    return [max(1, int(math.floor(m * w + 0.5))) for m in (1, 2, 4)]


@register_space("nago")
class NagoSpace(SearchSpace):
    """NAGO generator space: 8 generator dims, families of ``family_size`` networks, width scaled to the budget."""

    name = "nago"

    def __init__(self, family_size: int = 2, seed: int = 0, width: float = 16.0) -> None:
        if isinstance(family_size, bool) or not isinstance(family_size, int) or family_size < 1:
            raise ArchkdError(f"nago family_size must be an int >= 1, got {family_size!r}",
                              "set search.space_kwargs.family_size to e.g. 2")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ArchkdError(f"nago seed must be an int >= 0, got {seed!r}", "set search.space_kwargs.seed to e.g. 0")
        if not isinstance(width, (int, float)) or isinstance(width, bool) or not width >= 1:
            raise ArchkdError(f"nago width must be a number >= 1, got {width!r}",
                              "set search.space_kwargs.width to e.g. 16")
        self.family_size = family_size
        self.seed = seed
        self.width = float(width)
        self.max_params: int | None = None

    def arch_dims(self) -> list:
        return [IntDim("top_nodes", 3, 10), IntDim("top_k", 2, 5), FloatDim("top_p", 0.1, 1.0),
                IntDim("mid_nodes", 3, 10), FloatDim("mid_p", 0.2, 1.0),
                IntDim("bottom_nodes", 3, 10), IntDim("bottom_k", 2, 5), FloatDim("bottom_p", 0.1, 1.0)]

    def smallest(self) -> dict:
        """Fewest nodes at every level (the parameter count depends only on node counts), K and P at their low end."""
        arch = {d.name: d.low for d in self.arch_dims()}
        return {**arch, **{d.name: d.sample(0.0) for d in self.recipe_dims()}}

    def scale_to(self, max_params: int | None) -> "NagoSpace":
        """Scale every network's width to ``max_params`` (``None``: fixed ``width``)."""
        self.max_params = None if max_params is None else int(max_params)
        return self

    def spec(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> dict:
        """Member 0 of the configuration's family (graph seed ``self.seed``)."""
        return self._member(config, input_shape, num_classes, self.seed)

    def members(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> list[dict]:
        """``family_size`` networks of one generator configuration, graph seeds ``seed + j``."""
        return [self._member(config, input_shape, num_classes, self.seed + j) for j in range(self.family_size)]

    def new_members(self, config: dict, input_shape: tuple[int, ...], num_classes: int, n: int) -> list[dict]:
        """``n`` members with graph seeds after the search's (``seed + family_size + j``), at the same width scaling."""
        start = self.seed + self.family_size
        return [self._member(config, input_shape, num_classes, start + j) for j in range(n)]

    def graphs(self, config: dict, graph_seed: int) -> dict[str, dict[str, Any]]:
        """The top, mid and bottom graphs drawn for a configuration with one graph seed."""
        g = generator(config)
        kinds = {"top": ("ws", g["top_k"], g["top_p"]), "mid": ("er", None, g["mid_p"]),
                 "bottom": ("ws", g["bottom_k"], g["bottom_p"])}
        return {level: sample_graph(kinds[level][0], g[f"{level}_nodes"], kinds[level][1], kinds[level][2],
                                    len(LEVELS) * graph_seed + i) for i, level in enumerate(LEVELS)}

    def channels(self, config: dict, input_shape: tuple[int, ...], num_classes: int) -> list[int]:
        """Stage channels: ``width``-based without a budget, else the widest ``w`` whose network fits ``max_params``.

        The count is monotone in ``w`` and piecewise constant, so bisection on ``w ∈ [1, hi]`` (``hi`` doubled
        until over budget) converges to the last channel step within the budget.
        """
        if self.max_params is None:
            return channels_for(self.width)
        g = generator(config)
        in_ch, small = int(input_shape[0]), _small_input(input_shape)

        def count(w: float) -> int:
            return nago_param_count(g["top_nodes"], g["mid_nodes"], g["bottom_nodes"], channels_for(w), in_ch,
                                    int(num_classes), small)

        lo, hi = 1.0, 2.0
        if count(lo) > self.max_params:
            return channels_for(lo)
        while count(hi) <= self.max_params:
            lo, hi = hi, 2 * hi
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if count(mid) <= self.max_params else (lo, mid)
        return channels_for(lo)

    def _member(self, config: dict, input_shape: tuple[int, ...], num_classes: int, graph_seed: int) -> dict:
        return {"name": "nago", "num_classes": int(num_classes), "in_channels": int(input_shape[0]),
                "kwargs": {**self.graphs(config, graph_seed),
                           "channels": self.channels(config, input_shape, num_classes),
                           "small_input": _small_input(input_shape),
                           "generator": generator(config), "graph_seed": int(graph_seed)}}


def generator(config: dict) -> dict[str, Any]:
    """The 8 generator values of a configuration as plain ints/floats (recipe keys dropped)."""
    missing = [k for k in GENERATOR_KEYS if k not in config]
    if missing:
        raise ArchkdError(f"config for space 'nago' lacks {missing}", "sample it from the space")
    return {k: float(config[k]) if k.endswith("_p") else int(config[k]) for k in GENERATOR_KEYS}


def _small_input(input_shape: tuple[int, ...]) -> bool:
    return int(input_shape[1]) < SMALL_INPUT_PX
