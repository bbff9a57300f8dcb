"""Tests for the NAGO generator space (archkd.spaces.nago) and its network (archkd.models.nago)."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from archkd.errors import ArchkdError
from archkd.models import build_from_spec, create_model, model_spec
from archkd.models.nago import GraphBlock, graph_io, nago_param_count, stage_split
from archkd.spaces import FloatDim, IntDim, create_space
from archkd.spaces.nago import GENERATOR_KEYS, channels_for, sample_graph

SHAPES = [(1, 8, 8), (3, 32, 32), (3, 64, 64)]
LEVELS = ("top", "mid", "bottom")

configs = st.fixed_dictionaries({
    "top_nodes": st.integers(3, 10), "top_k": st.integers(2, 5), "top_p": st.floats(0.1, 1.0),
    "mid_nodes": st.integers(3, 10), "mid_p": st.floats(0.2, 1.0),
    "bottom_nodes": st.integers(3, 10), "bottom_k": st.integers(2, 5), "bottom_p": st.floats(0.1, 1.0),
})
seeds = st.integers(0, 10_000)
LARGEST = dict(zip(GENERATOR_KEYS, (10, 5, 0.5, 10, 0.5, 10, 5, 0.5)))  # 10 x 10 x 10 nodes: 1000 conv ops


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def spec_count(spec: dict) -> int:
    kw = spec["kwargs"]
    return nago_param_count(kw["top"]["nodes"], kw["mid"]["nodes"], kw["bottom"]["nodes"], kw["channels"],
                            spec["in_channels"], spec["num_classes"], kw["small_input"])


def assert_dag(graph: dict, nodes: int) -> None:
    """Edges sorted, unique, u < v in range; undirected-connected; every node between an input and an output."""
    n, edges = graph["nodes"], [tuple(e) for e in graph["edges"]]
    assert n == nodes
    assert edges == sorted(set(edges)) and all(0 <= u < v < n for u, v in edges)
    preds, outputs = graph_io(n, edges)
    succs: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        succs[u].append(v)
    reach_in = {i for i in range(n) if not preds[i]}  # nodes reachable from some input node
    for i in range(n):
        if any(p in reach_in for p in preds[i]):
            reach_in.add(i)
    reach_out = set(outputs)  # nodes from which some output node is reachable
    for i in reversed(range(n)):
        if any(s in reach_out for s in succs[i]):
            reach_out.add(i)
    assert reach_in == set(range(n)) and reach_out == set(range(n))
    seen, frontier = {0}, [0]  # the sampled graphs are connected (as undirected graphs)
    while frontier:
        u = frontier.pop()
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                if x == u and y not in seen:
                    seen.add(y)
                    frontier.append(y)
    assert seen == set(range(n))


def next_channels(ch: list[int]) -> list[int]:
    """The channel step right after ``ch`` as the multiplier grows (steps sit at multiples of 1/8)."""
    j = 8
    while channels_for(j / 8) != ch or channels_for((j + 1) / 8) == ch:
        j += 1
    return channels_for((j + 1) / 8)


# --- space ---------------------------------------------------------------------------------------------------------

def test_space_dims_and_smallest() -> None:
    space = create_space("nago", recipe={"distill.temperature": [2.0, 4.0]})
    arch = space.arch_dims()
    assert [d.name for d in arch] == list(GENERATOR_KEYS)
    assert all(isinstance(d, IntDim) for d in arch if not d.name.endswith("_p"))
    assert all(isinstance(d, FloatDim) for d in arch if d.name.endswith("_p"))
    assert {d.name: (d.low, d.high) for d in arch} == {
        "top_nodes": (3, 10), "top_k": (2, 5), "top_p": (0.1, 1.0), "mid_nodes": (3, 10), "mid_p": (0.2, 1.0),
        "bottom_nodes": (3, 10), "bottom_k": (2, 5), "bottom_p": (0.1, 1.0)}
    assert space.smallest() == {"top_nodes": 3, "top_k": 2, "top_p": 0.1, "mid_nodes": 3, "mid_p": 0.2,
                                "bottom_nodes": 3, "bottom_k": 2, "bottom_p": 0.1, "distill.temperature": 2.0}
    assert space.validate(space.smallest()) == space.smallest()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(config=configs, graph_seed=seeds)
def test_sampled_graphs_are_connected_dags(config: dict, graph_seed: int) -> None:
    graphs = create_space("nago").graphs(config, graph_seed)
    for level in LEVELS:
        assert_dag(graphs[level], config[f"{level}_nodes"])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(config=configs)
def test_smallest_has_fewest_params(config: dict) -> None:
    smallest = create_space("nago").smallest()
    for ch in ([1, 2, 4], [16, 32, 64]):
        for shape in SHAPES:
            args = (ch, shape[0], 10, shape[1] < 40)
            assert nago_param_count(smallest["top_nodes"], smallest["mid_nodes"], smallest["bottom_nodes"], *args) \
                <= nago_param_count(config["top_nodes"], config["mid_nodes"], config["bottom_nodes"], *args)


def test_fallback_to_path_graph_and_distinct_levels() -> None:
    assert sample_graph("er", 5, None, 0.0, 7) == {"nodes": 5, "edges": [[0, 1], [1, 2], [2, 3], [3, 4]]}
    assert sample_graph("ws", 1, 2, 0.5, 0) == {"nodes": 1, "edges": []}
    # K is clipped to nodes - 1 (and at least 2): no error from networkx
    assert_dag(sample_graph("ws", 3, 5, 0.5, 0), 3)
    # same generator values at all levels still give different graphs per level (derived seeds)
    g = create_space("nago").graphs(dict(zip(GENERATOR_KEYS, (8, 4, 0.5, 8, 0.5, 8, 4, 0.5))), 0)
    assert g["top"] != g["bottom"]


def test_members_differ_and_are_deterministic() -> None:
    space = create_space("nago", family_size=3, seed=5)
    for values in ((8, 4, 0.5, 8, 0.5, 8, 4, 0.5), (10, 2, 0.3, 6, 0.4, 5, 3, 0.7), (4, 3, 0.9, 10, 0.2, 10, 5, 1.0)):
        config = dict(zip(GENERATOR_KEYS, values))
        members = space.members(config, (3, 32, 32), 10)
        assert len(members) == 3 and [m["kwargs"]["graph_seed"] for m in members] == [5, 6, 7]
        wirings = [json.dumps([m["kwargs"][level] for level in LEVELS]) for m in members]
        assert len(set(wirings)) == 3
        assert members[0] == space.spec(config, (3, 32, 32), 10)
        assert members == create_space("nago", family_size=3, seed=5).members(config, (3, 32, 32), 10)
        assert all(m["kwargs"]["channels"] == [16, 32, 64] for m in members)  # width 16, no budget
        assert members[0]["kwargs"]["generator"] == config


@settings(max_examples=40, deadline=None, derandomize=True)
@given(config=configs, seed=st.integers(0, 1000), k=st.integers(1, 3))
def test_members_are_reproducible(config: dict, seed: int, k: int) -> None:
    space = create_space("nago", family_size=k, seed=seed).scale_to(50_000)
    members = space.members(config, (1, 8, 8), 10)
    assert len(members) == k and members[0] == space.spec(config, (1, 8, 8), 10)
    assert members == space.members(config, (1, 8, 8), 10)
    assert json.loads(json.dumps(members)) == members


@pytest.mark.parametrize("budget", [30_000, 100_000, 1_000_000])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_width_scaling_meets_budget(budget: int, shape: tuple) -> None:
    space = create_space("nago").scale_to(budget)
    ratios: list[float] = []

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(config=configs, classes=st.sampled_from([10, 100]))
    def check(config: dict, classes: int) -> None:
        spec = space.spec(config, shape, classes)
        ch, count = spec["kwargs"]["channels"], spec_count(spec)
        if count > budget:  # even the narrowest network is over budget: it is kept (and marked infeasible)
            assert ch == [1, 2, 4]
            return
        ratios.append(count / budget)
        if count < 0.9 * budget:  # rounding: the next channel step must overshoot the budget
            bigger = spec_count({**spec, "kwargs": {**spec["kwargs"], "channels": next_channels(ch)}})
            assert bigger > budget

    check()
    assert ratios and max(ratios) <= 1.0
    in_window = sum(r >= 0.9 for r in ratios) / len(ratios)
    # at 1M the channels are wide enough (C_2 >= 16) that one channel step adds < 10 %; at smaller budgets, mostly
    assert (in_window == 1.0) if budget >= 1_000_000 else (in_window >= 0.4)


def test_no_budget_uses_width_and_scale_to_none_resets() -> None:
    config = create_space("nago").smallest()
    space = create_space("nago", width=8)
    assert space.spec(config, (3, 32, 32), 10)["kwargs"]["channels"] == [8, 16, 32]
    assert space.scale_to(10_000).spec(config, (3, 32, 32), 10)["kwargs"]["channels"] != [8, 16, 32]
    assert space.scale_to(None).spec(config, (3, 32, 32), 10)["kwargs"]["channels"] == [8, 16, 32]
    for bad in ({"family_size": 0}, {"seed": -1}, {"width": 0.5}):
        with pytest.raises(ArchkdError):
            create_space("nago", **bad)


# --- model ---------------------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, derandomize=True)
@given(config=configs, graph_seed=seeds, width=st.floats(1.0, 3.0), shape=st.sampled_from(SHAPES),
       classes=st.integers(2, 12))
@example(config=LARGEST, graph_seed=0, width=3.0, shape=(1, 8, 8), classes=10)
@example(config=LARGEST, graph_seed=1, width=2.0, shape=(3, 64, 64), classes=5)
def test_forward_shape_and_analytic_param_count(config: dict, graph_seed: int, width: float, shape: tuple,
                                                classes: int) -> None:
    space = create_space("nago", seed=graph_seed, width=max(1.0, width))
    spec = space.spec(config, shape, classes)
    assert spec["kwargs"]["small_input"] == (shape[1] < 40)
    torch.manual_seed(0)
    model = build_from_spec(spec).eval()
    assert n_params(model) == spec_count(spec)
    assert model.feature_channels == spec["kwargs"]["channels"]
    with torch.no_grad():
        y = model(torch.randn(2, *shape))
    assert y.shape == (2, classes) and torch.isfinite(y).all()


def test_stage_hooks_and_resolution() -> None:
    spec = create_space("nago", width=4).spec(create_space("nago").smallest(), (3, 32, 32), 10)
    model = build_from_spec(spec).eval()
    modules = dict(model.named_modules())
    assert model.stage_names == ["stages.0", "stages.1", "stages.2"]
    seen: dict[str, torch.Size] = {}
    for s in model.stage_names:
        modules[s].register_forward_hook(lambda _m, _i, out, s=s: seen.__setitem__(s, out.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert [tuple(seen[s][1:]) for s in model.stage_names] == [(4, 32, 32), (8, 16, 16), (16, 8, 8)]
    big = build_from_spec({**spec, "kwargs": {**spec["kwargs"], "small_input": False}}).eval()
    with torch.no_grad():
        assert big(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_graph_block_semantics() -> None:
    # 0 -> 2 <- 1, node 3 isolated: inputs 0, 1, 3 read x; node 2 = x + x; output = mean(node 2, node 3) = 1.5 x
    block = GraphBlock(4, [(0, 2), (1, 2)], nn.Identity)
    assert block.preds == [[], [], [0, 1], []] and block.outputs == [2, 3]
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(block(x), 1.5 * x)


def test_stage_split_and_induced_subgraph() -> None:
    assert stage_split(3) == [[0], [1], [2]]
    assert stage_split(4) == [[0, 1], [2], [3]]
    assert stage_split(10) == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert all(min(len(s) for s in stage_split(n)) >= 1 for n in range(3, 50))
    path = {"nodes": 3, "edges": [[0, 1], [1, 2]]}
    top = {"nodes": 6, "edges": [[0, 1], [0, 5], [1, 2], [2, 3], [4, 5]]}  # cross-stage edges 0-5, 1-2 are dropped
    model = create_model("nago", top=top, mid=path, bottom=path, channels=[2, 4, 8])
    assert [st_.graph.preds for st_ in model.stages] == [[[], [0]], [[], [0]], [[], [0]]]


def test_spec_json_roundtrip_rebuilds_identical_network() -> None:
    config = dict(zip(GENERATOR_KEYS, (7, 3, 0.4, 5, 0.5, 4, 2, 0.6)))
    spec = create_space("nago", seed=3).scale_to(60_000).spec(config, (1, 8, 8), 10)
    torch.manual_seed(11)
    model = build_from_spec(spec).eval()
    assert model_spec(model) == spec
    restored = json.loads(json.dumps(spec))
    assert restored == spec
    torch.manual_seed(11)
    rebuilt = build_from_spec(restored).eval()
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [
    {"top": {"nodes": 2, "edges": [[0, 1]]}},
    {"top": {"nodes": 3, "edges": [[0, 0]]}},
    {"mid": {"nodes": 3, "edges": [[0, 3]]}},
    {"bottom": {"nodes": 3}},
    {"channels": [8, 16]},
    {"channels": [8, 0, 32]},
    {"small_input": 1},
])
def test_invalid_graphs_and_channels_are_user_errors(bad: dict) -> None:
    with pytest.raises(ArchkdError):
        create_model("nago", **bad)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_trace_and_onnx_export(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from archkd.measure.onnx_export import to_onnx

    config = dict(zip(GENERATOR_KEYS, (5, 4, 0.5, 4, 0.6, 3, 2, 0.5)))
    model = create_space("nago", width=4).build(config, (3, 32, 32), 10).eval()
    x = torch.randn(1, 3, 16, 16)
    traced = torch.jit.trace(model, x)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
        assert traced(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    path = to_onnx(model, x, tmp_path / "nago.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xb = torch.randn(4, 3, 16, 16)
    (out,) = session.run(None, {session.get_inputs()[0].name: xb.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), model(xb), rtol=1e-4, atol=1e-5)
