"""Blockwise distillation: rate a stage-wise student by how well each of its stages, trained on its own, reproduces
the teacher's stage — without training the whole student.

Why: a KD trial trains the whole candidate, and at the fidelities a CPU affords those trainings rank students poorly.
DNA (Li et al., CVPR 2020) instead trains each block of a candidate to map the teacher's input of a stage to the
teacher's output of that stage, and DONNA (Moons et al., ICCV 2021) rates architectures by those blockwise losses.
Because a stage-wise space factorises, a stage trained once serves every candidate that contains it.

For a student with stages ``b_1 … b_S`` (``model.blocks()``) and teacher stage outputs ``t_1 … t_S`` at the same
spatial resolutions (``t_0`` is the image)::

    block i        A_i^out ∘ b_i ∘ A_i^in, trained with Adam to minimise  mean ‖A_i^out(b_i(A_i^in(t_{i−1}))) − t_i‖²
    A_i^in         1×1 conv + BN + ReLU from the teacher's channels to the stage's input channels (none for i = 1)
    A_i^out        1×1 conv from the stage's channels to the teacher's
    NSR_i          Σ ‖ŷ_i − t_i‖² / Σ ‖t_i − μ_i‖² on held-out images (μ_i: t_i's per-channel mean) — the share of the
                   teacher's signal the block does not reproduce, comparable across stages of any size
    score          exp(−(1/S) Σ_i NSR_i) ∈ (0, 1]

The score is higher for better students, like an accuracy, so rewards ``ACC × (cost/T)^w``, samplers and the
fidelity check take it unchanged. Teacher stage outputs are computed once per (teacher, data, subset) and kept on
disk as fp16 (``TeacherStages``); a trained block's result is memoised on disk under the hash of (stage index, the
stage's definition, the teacher's input and output shapes, the recipe, the seed) (``BlockLibrary``), written
atomically, so a search killed mid-way keeps every finished block and workers on one machine share them.

The block loop here is not ``fit``: it regresses feature maps from cached inputs, with no labels, augmentation,
teacher forward or validation accuracy, which is all ``fit`` is about.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from archkd.distill.checkpoint import atomic_save, safe_load
from archkd.distill.evaluation import running_bns
from archkd.errors import ArchkdError
from archkd.models.blocks import conv_bn, init_weights
from archkd.models.registry import infer_stage_info

StageFn = Callable[[torch.Tensor], list[torch.Tensor]]


@dataclass(frozen=True)
class BlockRecipe:
    """How each block trains: ``epochs`` over ``data_fraction`` of the training split (the search fidelity), Adam at
    ``lr`` with a cosine decay, scored on ``val_images`` validation images."""

    epochs: int = 1
    data_fraction: float = 1.0
    lr: float = 5e-3
    batch_size: int = 64
    val_images: int = 1000
    seed: int = 0


@dataclass
class BlockwiseScore:
    """A candidate's blockwise rating: its score, each block's NSR, and what it cost."""

    score: float
    nsr: list[float]
    trained: int  # blocks trained for this candidate
    reused: int  # blocks found in the library
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _script_chain(module: torch.jit.ScriptModule) -> list[str] | None:
    """The children a TorchScript ``forward`` calls one after another from its input (``stem → layer1 → …``), or None
    when the forward is not such a chain: then the stage outputs cannot be had without hooks."""
    graph = module.graph
    inputs = list(graph.inputs())
    if len(inputs) != 2:
        return None
    owner = {n.output().unique(): n.s("name") for n in graph.nodes()
             if n.kind() == "prim::GetAttr" and n.inputsAt(0).unique() == inputs[0].unique()}
    chain: list[str] = []
    current = inputs[1].unique()
    for node in graph.nodes():
        if node.kind() != "prim::CallMethod" or node.s("name") != "forward":
            continue
        args = [v.unique() for v in node.inputs()]
        if len(args) == 2 and args[1] == current and args[0] in owner:
            chain.append(owner[args[0]])
            current = node.output().unique()
    return chain or None


def teacher_stages(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[StageFn, list[tuple[int, ...]]]:
    """A function from a normalised batch to the teacher's stage outputs (the last map of each spatial resolution,
    shallow to deep), and their per-sample shapes.

    An eager module is tapped with forward hooks at its ``stage_names`` (inferred when it declares none); a
    TorchScript one, which takes no hooks, is run child by child when its forward is a plain chain of children."""
    if isinstance(module, torch.jit.ScriptModule):
        chain = _script_chain(module)
        if chain is None:
            raise ArchkdError("blockwise distillation needs the teacher's stage outputs, but this TorchScript "
                              "teacher's forward is not a chain of submodules",
                              "give the teacher as an archkd checkpoint or module:factory with weights, or use "
                              "search.fidelity=trained")

        def run_all(x: torch.Tensor) -> list[torch.Tensor]:
            outs, h = [], x
            for name in chain:
                h = getattr(module, name)(h)
                outs.append(h)
            return outs
    else:
        names = getattr(module, "stage_names", None) or infer_stage_info(module, input_shape[0])[0]
        modules = dict(module.named_modules())

        def run_all(x: torch.Tensor) -> list[torch.Tensor]:
            got: dict[str, torch.Tensor] = {}
            handles = [modules[n].register_forward_hook(lambda _m, _i, o, n=n: got.__setitem__(n, o)) for n in names]
            try:
                module(x)
            finally:
                for h in handles:
                    h.remove()
            return [got[n] for n in names]

    with torch.no_grad():
        probe = [o.shape[1:] for o in run_all(torch.zeros(2, *input_shape))]
    keep = [i for i, s in enumerate(probe) if len(s) == 3
            and (i + 1 == len(probe) or len(probe[i + 1]) != 3 or probe[i + 1][1:] != s[1:])]

    def stages(x: torch.Tensor) -> list[torch.Tensor]:
        outs = run_all(x)
        return [outs[i] for i in keep]

    return stages, [tuple(probe[i]) for i in keep]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


class TeacherStages:
    """The teacher's stage outputs (and the normalised images, ``t_0``) on a training subset and a validation sample,
    computed once and kept as fp16 ``.npy`` files under ``root/blockwise/<key>/`` (read memory-mapped)."""

    def __init__(self, module: nn.Module, fingerprint: str, data, root: str | Path, recipe: BlockRecipe,
                 device: torch.device, log: Callable[[str], None] | None = None) -> None:
        self.fn, self.shapes = teacher_stages(module, data.input_shape)
        self.shapes = [tuple(data.input_shape), *self.shapes]
        self.indices = {"train": data.train.subset(recipe.data_fraction, recipe.seed),
                        "val": data.val.sample(recipe.val_images, recipe.seed)}
        key = _digest(fingerprint, data.fingerprint, data.normalize.to_dict(), self.shapes,
                      {k: v.tolist() for k, v in self.indices.items()})
        self.dir = Path(root) / "blockwise" / key
        self.data, self.device, self.log = data, device, log
        self._arrays: dict[str, list[np.ndarray]] = {}

    def arrays(self, split: str) -> list[np.ndarray]:
        """``[t_0, t_1, …, t_S]`` of ``split`` (``train`` | ``val``), shape ``[n, C, H, W]`` each."""
        if split not in self._arrays:
            files = [self.dir / f"{split}{j}.npy" for j in range(len(self.shapes))]
            if not all(f.exists() for f in files):
                self._compute(split, files)
            self._arrays[split] = [np.load(f, mmap_mode="r") for f in files]
        return self._arrays[split]

    @torch.no_grad()
    def _compute(self, split: str, files: list[Path]) -> None:
        idx = self.indices[split]
        if self.log:
            self.log(f"blockwise: the teacher's stage outputs on {len(idx)} {split} images (once, cached)")
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = [f.with_suffix(f".tmp{os.getpid()}.npy") for f in files]
        out = [np.lib.format.open_memmap(t, mode="w+", dtype=np.float16, shape=(len(idx), *s))
               for t, s in zip(tmp, self.shapes)]
        pos = 0
        for x8, _y, _i in getattr(self.data, split).batches(256, device=self.device, indices=idx):
            x = self.data.normalize(x8)
            for arr, t in zip(out, [x, *self.fn(x)]):
                arr[pos:pos + len(x)] = t.float().cpu().numpy()
            pos += len(x)
        for arr, t, f in zip(out, tmp, files):
            arr.flush()
            os.replace(t, f)


class _Adapted(nn.Module):
    """A student stage between adapters to the teacher's channels: the module a block trains as."""

    def __init__(self, block: nn.Module, t_in: int | None, s_in: int, s_out: int, t_out: int) -> None:
        super().__init__()
        self.inp = nn.Identity() if t_in is None else conv_bn(t_in, s_in, 1, 1)
        self.block = block
        self.out = nn.Conv2d(s_out, t_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(self.inp(x)))


def _output_shape(block: nn.Module, x: torch.Tensor) -> torch.Size:
    was = block.training
    block.eval()
    with torch.no_grad():
        shape = block(x).shape
    block.train(was)
    return shape


class BlockwiseScorer:
    """Scores stage-wise students blockwise against one teacher, memoising every trained block under
    ``root/blockwise/<teacher-and-data key>/blocks/``."""

    def __init__(self, teacher: nn.Module, fingerprint: str, data, root: str | Path, recipe: BlockRecipe,
                 device: torch.device | str = "cpu", log: Callable[[str], None] | None = None) -> None:
        self.recipe, self.device = recipe, torch.device(device)
        self.stages = TeacherStages(teacher, fingerprint, data, root, recipe, self.device, log)
        self.library = self.stages.dir / "blocks"

    def score(self, model: nn.Module) -> BlockwiseScore:
        """Train (or find) each of ``model``'s blocks and rate the model; ``model`` itself is not changed."""
        t0, nsr, trained = time.perf_counter(), [], 0
        for i, (key, block, t_in, t_out) in enumerate(self.check(model)):
            record = self._block(i, key, block, t_in, t_out)
            trained += record["trained"]
            nsr.append(float(record["nsr"]))
        score = math.exp(-sum(nsr) / len(nsr))
        return BlockwiseScore(score, nsr, trained, len(nsr) - trained, time.perf_counter() - t0)

    def check(self, model: nn.Module) -> list[tuple[dict, nn.Module, int, int]]:
        """Each of ``model``'s blocks with the teacher arrays it maps from and to (same spatial size, in order); a
        one-line error when ``model`` is not stage-wise or its stages do not line up with the teacher's."""
        if not callable(getattr(model, "blocks", None)):
            raise ArchkdError(f"search.fidelity=blockwise needs a stage-wise student, and {type(model).__name__} "
                              "declares no blocks()", "search a stage-wise space (search.space=stages) or use "
                                                      "search.fidelity=trained")
        blocks = model.blocks()
        shapes = self.stages.shapes
        x = torch.zeros(2, *shapes[0])
        out, t_prev = [], 0
        for i, (key, block) in enumerate(blocks):
            x = torch.zeros(2, *_output_shape(block, x)[1:])
            hits = [j for j in range(t_prev + 1, len(shapes)) if shapes[j][1:] == tuple(x.shape[2:])]
            if not hits:
                raise ArchkdError(f"blockwise distillation: the student's stage {i} outputs {tuple(x.shape[2:])} maps, "
                                  f"and no later teacher stage has that size (teacher stages: "
                                  f"{[s[1:] for s in shapes[1:]]})",
                                  "use a student space whose stages halve the resolution as the teacher's do, or "
                                  "search.fidelity=trained")
            out.append((key, block, t_prev, hits[0]))
            t_prev = hits[0]
        return out

    def _block(self, i: int, key: dict, block: nn.Module, t_in: int, t_out: int) -> dict:
        shapes, r = self.stages.shapes, self.recipe
        ident = _digest(i, key, shapes[t_in], shapes[t_out], asdict(r))
        path = self.library / f"{ident}.pt"
        if path.exists():
            return {**safe_load(path, "blockwise block record", "delete it; it is recomputed"), "trained": 0}
        torch.manual_seed(int(ident[:8], 16))  # the block's initial weights depend on what it is, not where it came
        net = _Adapted(copy.deepcopy(block), None if t_in == 0 else shapes[t_in][0], key["in_channels"],
                       key["width"], shapes[t_out][0])
        init_weights(net)
        record = {"key": key, "stage": i, "nsr": self._train(net, t_in, t_out)}
        atomic_save(record, path)
        return {**record, "trained": 1}

    def _train(self, net: _Adapted, t_in: int, t_out: int) -> float:
        """Adam on the per-channel standardised squared error (the NSR's own weighting), starting from the constant
        prediction of the target's channel means (output adapter zero, bias the means: NSR 1), so a block that
        learns nothing scores 1 rather than whatever its random output adds."""
        r, dev = self.recipe, self.device
        x_all, y_all = (self.stages.arrays("train")[j] for j in (t_in, t_out))
        n = len(x_all)
        bs = min(r.batch_size, n)
        steps = r.epochs * max(1, n // bs)
        sample = torch.from_numpy(np.asarray(y_all[:1024], dtype=np.float32))
        mean, var = sample.mean(dim=(0, 2, 3)), sample.var(dim=(0, 2, 3)).clamp_min(1e-8)
        with torch.no_grad():
            net.out.weight.zero_()
            net.out.bias.copy_(mean)
        weight = (1.0 / var).view(1, -1, 1, 1).to(dev)
        net.to(dev).train()
        opt = torch.optim.Adam(net.parameters(), lr=r.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        for epoch in range(r.epochs):
            order = np.random.default_rng([r.seed, epoch, 13]).permutation(n)
            for s in range(0, n - bs + 1, bs):
                idx = np.sort(order[s:s + bs])
                x = torch.from_numpy(np.asarray(x_all[idx], dtype=np.float32)).to(dev)
                y = torch.from_numpy(np.asarray(y_all[idx], dtype=np.float32)).to(dev)
                loss = ((net(x) - y) ** 2 * weight).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        self._recalibrate(net, x_all, bs)
        return self._nsr(net, t_in, t_out)

    @torch.no_grad()
    def _recalibrate(self, net: nn.Module, x_all: np.ndarray, bs: int, n: int = 1024) -> None:
        """BatchNorm statistics of the final weights (equal-weight mean over batches), as ``recalibrate_bn`` does for
        trials: after a few hundred steps the running averages still trail the weights and inflate the NSR."""
        bns = running_bns(net)
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        net.train()
        for s in range(0, min(n, len(x_all)) - bs + 1, bs):
            net(torch.from_numpy(np.asarray(x_all[s:s + bs], dtype=np.float32)).to(self.device))

    @torch.no_grad()
    def _nsr(self, net: nn.Module, t_in: int, t_out: int) -> float:
        net.eval()
        x_all, y_all = (self.stages.arrays("val")[j] for j in (t_in, t_out))
        y = torch.from_numpy(np.asarray(y_all, dtype=np.float32))
        signal = float(((y - y.mean(dim=(0, 2, 3), keepdim=True)) ** 2).sum())
        err = 0.0
        for s in range(0, len(x_all), 256):
            x = torch.from_numpy(np.asarray(x_all[s:s + 256], dtype=np.float32)).to(self.device)
            err += float(((net(x).float().cpu() - y[s:s + 256]) ** 2).sum())
        return err / max(signal, 1e-12)
