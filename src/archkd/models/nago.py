"""NAGO: the three-level random-graph network of NAGO (Ru et al., NeurIPS 2020), AutoKD's student family.

What: a network is three graphs. The *top* graph's nodes are cells, split evenly in index order into three
stages; every cell is wired like the *mid* graph, whose nodes are "nodes"; every node is wired like the *bottom*
graph, whose nodes are single ops ReLU → conv3×3 (no bias) → BN. One DAG module (``GraphBlock``) runs all three
levels: edges point from the lower to the higher node index; a node without predecessors reads the graph's input, a
node with predecessors reads the SUM of their outputs, and the nodes without successors are averaged into the
graph's output.

Why the spec carries explicit edge lists (``{"nodes": n, "edges": [[u, v], ...]}``) rather than generator
parameters: a checkpoint must rebuild the *same* network without networkx, whatever networkx version (and hence
whatever random-graph stream) is installed. Sampling graphs is the search space's job (``archkd.spaces.nago``);
the provenance fields ``generator`` and ``graph_seed`` ride along in the spec and are ignored here.

Design choices and departures from NAGO's VEGA release:

- **Stages use the induced subgraph** of their top-level nodes: top-level edges between two stages are dropped,
  because the stages are chained by a resolution-halving transition anyway and a cross-stage edge would need its
  own resampling path. Stage ``s`` holds the nodes ``i`` with ``⌊3i/n⌋ = s`` (every stage gets ≥ 1 node for n ≥ 3).
- **One graph per level per network**, shared by all its uses: every cell has the same mid graph and every node the
  same bottom graph (weights are not shared), as in NAGO's hierarchical generator.
- **Merges are SUM; channels change only between stages.** Within a stage every op keeps ``channels[s]``, so no
  projection is needed inside a graph. "SUM merge with 1×1 projections where channels differ" is realised by the
  transition before stages 1 and 2: ReLU → conv1×1 stride 2 (``C_{s−1} → C_s``) → BN, which also halves resolution.
- **Stem**: images below 40 px (``small_input=True``): conv3×3 → BN → ReLU → conv3×3 → BN at stride 1; larger
  images: a stride-2 depthwise-separable conv → BN, then ReLU → depthwise-separable conv stride 2 → BN.
- **Head**: ReLU → conv1×1 to ``4·channels[2]`` → BN → ReLU → global average pool → dropout 0.2 → linear. VEGA uses
  a fixed 1280-channel head, whose 1280·C₂ + 1280·classes parameters alone would exceed small budgets (30k–100k);
  scaling the head with the network keeps the width scaling meaningful at every budget.
- Kaiming-normal init from the global RNG (``init_weights``); forward is plain Python loops over fixed lists, so
  the network traces and exports to ONNX (opset 17) as an unrolled graph.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from archkd.errors import ArchkdError
from archkd.models.blocks import ClassifierHead, init_weights
from archkd.models.registry import register_model

NUM_STAGES = 3
HEAD_EXPANSION = 4  # head conv width = HEAD_EXPANSION · channels[2]
HEAD_DROPOUT = 0.2
PATH3: dict[str, Any] = {"nodes": 3, "edges": [[0, 1], [1, 2]]}  # default graph at every level
DEFAULT_CHANNELS = (16, 32, 64)


def normalize_graph(graph: Any, what: str) -> tuple[int, list[tuple[int, int]]]:
    """Validate ``{"nodes": n, "edges": [[u, v], ...]}``; return ``n`` and the sorted DAG edges with ``u < v``.

    Edges are undirected pairs on input and are oriented low → high index (duplicates merged); self-loops and
    out-of-range endpoints are errors.
    """
    fix = f'Pass {what} as {{"nodes": n, "edges": [[u, v], ...]}} with 0 <= u, v < n and u != v.'
    if not isinstance(graph, dict) or set(graph) != {"nodes", "edges"}:
        raise ArchkdError(f"NAGO graph '{what}' must be a dict with keys nodes and edges, got {graph!r}.", fix)
    n, edges = graph["nodes"], graph["edges"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArchkdError(f"NAGO graph '{what}' needs an int node count >= 1, got {n!r}.", fix)
    if not isinstance(edges, (list, tuple)):
        raise ArchkdError(f"NAGO graph '{what}' edges must be a list of pairs, got {edges!r}.", fix)
    out: set[tuple[int, int]] = set()
    for e in edges:
        ok = isinstance(e, (list, tuple)) and len(e) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n for v in e) and e[0] != e[1]
        if not ok:
            raise ArchkdError(f"NAGO graph '{what}' has an invalid edge {e!r}.", fix)
        out.add((min(e), max(e)))
    return n, sorted(out)


def stage_split(n: int) -> list[list[int]]:
    """Top-level node indices of each stage: node ``i`` of ``n`` goes to stage ``⌊3i/n⌋`` (even, in index order)."""
    stages: list[list[int]] = [[] for _ in range(NUM_STAGES)]
    for i in range(n):
        stages[NUM_STAGES * i // n].append(i)
    return stages


def induced_subgraph(nodes: list[int], edges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Edges among ``nodes`` (both ends inside), relabelled to local indices 0..len(nodes)−1 in the same order."""
    local = {v: i for i, v in enumerate(nodes)}
    return [(local[u], local[v]) for u, v in edges if u in local and v in local]


def graph_io(n: int, edges: Sequence[tuple[int, int]]) -> tuple[list[list[int]], list[int]]:
    """Predecessor list of each node and the output nodes (no successors) of a DAG with edges ``u < v``."""
    preds: list[list[int]] = [[] for _ in range(n)]
    has_succ = [False] * n
    for u, v in edges:
        preds[v].append(u)
        has_succ[u] = True
    return [sorted(p) for p in preds], [i for i in range(n) if not has_succ[i]]


class GraphBlock(nn.Module):
    """Run ``make_node()`` modules wired as a DAG: inputs read ``x``, others the SUM of their predecessors,
    output = mean of the nodes without successors."""

    def __init__(self, n: int, edges: Sequence[tuple[int, int]], make_node: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.preds, self.outputs = graph_io(n, edges)
        self.nodes = nn.ModuleList(make_node() for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for node, preds in zip(self.nodes, self.preds):
            h = x
            if preds:
                h = outs[preds[0]]
                for p in preds[1:]:
                    h = h + outs[p]
            outs.append(node(h))
        y = outs[self.outputs[0]]
        for o in self.outputs[1:]:
            y = y + outs[o]
        return y if len(self.outputs) == 1 else y * (1.0 / len(self.outputs))


def relu_conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """ReLU → conv (same padding, no bias) → BN: NAGO's op and transition unit."""
    return nn.Sequential(
        nn.ReLU(),  # not in-place: the input may feed other nodes of the graph
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    )


def sep_conv(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Depthwise 3×3 (stride) then pointwise 1×1, both without bias."""
    return nn.Sequential(
        nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False),
        nn.Conv2d(in_ch, out_ch, 1, bias=False),
    )


class NagoStage(nn.Module):
    """Optional transition (ReLU → conv1×1 stride 2 → BN) followed by the stage's top-level graph of cells."""

    def __init__(self, transition: nn.Module, graph: GraphBlock) -> None:
        super().__init__()
        self.transition = transition
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(self.transition(x))


class NagoNet(nn.Module):
    """Stem → three stages of top-level cells (mid graph of nodes, each a bottom graph of ops) → head."""

    def __init__(self, num_classes: int, in_channels: int, top: dict, mid: dict, bottom: dict,
                 channels: Sequence[int], small_input: bool) -> None:
        super().__init__()
        n_top, top_edges = normalize_graph(top, "top")
        n_mid, mid_edges = normalize_graph(mid, "mid")
        n_bot, bot_edges = normalize_graph(bottom, "bottom")
        if n_top < NUM_STAGES:
            raise ArchkdError(f"NAGO top graph needs >= {NUM_STAGES} nodes (one per stage), got {n_top}.",
                              f"Give the top graph at least {NUM_STAGES} nodes.")
        chans = _check_channels(channels)
        if not isinstance(small_input, bool):
            raise ArchkdError(f"NAGO small_input must be a bool, got {small_input!r}.", "Pass true or false.")
        c0 = chans[0]
        if small_input:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True),
                nn.Conv2d(c0, c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0))
        else:
            self.stem = nn.Sequential(
                sep_conv(in_channels, c0, 2), nn.BatchNorm2d(c0), nn.ReLU(inplace=True),
                sep_conv(c0, c0, 2), nn.BatchNorm2d(c0))

        stages = []
        for s, members in enumerate(stage_split(n_top)):
            c = chans[s]
            make_node = partial(GraphBlock, n_bot, bot_edges, partial(relu_conv_bn, c, c, 3))
            make_cell = partial(GraphBlock, n_mid, mid_edges, make_node)
            transition = nn.Identity() if s == 0 else relu_conv_bn(chans[s - 1], c, 1, stride=2)
            stages.append(NagoStage(transition, GraphBlock(len(members), induced_subgraph(members, top_edges),
                                                           make_cell)))
        self.stages = nn.Sequential(*stages)
        c_head = HEAD_EXPANSION * chans[-1]
        self.head_conv = nn.Sequential(relu_conv_bn(chans[-1], c_head, 1), nn.ReLU(inplace=True))
        self.head = ClassifierHead(c_head, num_classes, dropout=HEAD_DROPOUT)
        self.stage_names = [f"stages.{s}" for s in range(NUM_STAGES)]
        self.feature_channels = list(chans)
        self.stem_name, self.stem_channels = "stem", c0  # ends in BN: already pre-activation
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_conv(self.stages(self.stem(x))))


def _check_channels(channels: Any) -> list[int]:
    ok = isinstance(channels, (list, tuple)) and len(channels) == NUM_STAGES and all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)
    if not ok:
        raise ArchkdError(f"NAGO channels must be {NUM_STAGES} ints >= 1, got {channels!r}.",
                          "Pass e.g. channels=[16, 32, 64] (ratio 1:2:4).")
    return [int(c) for c in channels]


def nago_param_count(top_nodes: int, mid_nodes: int, bottom_nodes: int, channels: Sequence[int], in_channels: int,
                     num_classes: int, small_input: bool) -> int:
    """Exact parameter count of a ``nago`` network, in closed form (edges do not matter, only node counts).

    With ``n_s`` top-level nodes in stage ``s`` (``stage_split``), ``M`` mid and ``B`` bottom nodes, channels
    ``C_0, C_1, C_2``, input channels ``I`` and ``K`` classes (BN contributes 2 parameters per channel)::

        stem     = 9·I·C_0 + 9·C_0² + 4·C_0                        (small input: two conv3×3 + two BN)
                 = 9·I + I·C_0 + 9·C_0 + C_0² + 4·C_0               (large input: two separable convs + two BN)
        ops      = Σ_s n_s·M·B·(9·C_s² + 2·C_s)
        trans    = Σ_{s=1,2} (C_{s−1}·C_s + 2·C_s)
        head     = 4·C_2² + 8·C_2                                   (conv1×1 to 4·C_2 + BN)
        classify = 4·C_2·K + K
    """
    c = [int(v) for v in channels]
    i = int(in_channels)
    stem = 9 * i * c[0] + 9 * c[0] ** 2 + 4 * c[0] if small_input else 9 * i + i * c[0] + 9 * c[0] + c[0] ** 2 + 4 * c[0]
    per_stage = [len(m) for m in stage_split(int(top_nodes))]
    ops = sum(n * mid_nodes * bottom_nodes * (9 * cs * cs + 2 * cs) for n, cs in zip(per_stage, c))
    trans = sum(c[s - 1] * c[s] + 2 * c[s] for s in range(1, NUM_STAGES))
    c_head = HEAD_EXPANSION * c[-1]
    head = c[-1] * c_head + 2 * c_head
    classify = c_head * num_classes + num_classes
    return int(stem + ops + trans + head + classify)


@register_model("nago")
def nago(
    num_classes: int = 10,
    in_channels: int = 3,
    top: dict | None = None,
    mid: dict | None = None,
    bottom: dict | None = None,
    channels: list[int] | None = None,
    small_input: bool = True,
    generator: dict | None = None,
    graph_seed: int | None = None,
) -> nn.Module:
    """NAGO network from explicit graphs; defaults to a 3-node path at every level and channels 16/32/64.

    ``generator`` (the 8 generator values) and ``graph_seed`` record where the graphs came from; they do not affect
    the network.
    """
    del generator, graph_seed  # provenance only
    return NagoNet(num_classes, in_channels, top if top is not None else PATH3, mid if mid is not None else PATH3,
                   bottom if bottom is not None else PATH3,
                   list(channels) if channels is not None else list(DEFAULT_CHANNELS), small_input)
