"""Evaluation: top-1 accuracy of a student or a teacher, and BatchNorm statistics re-estimated before it."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from archkd.data import DataBundle, ImageSet, Normalize
from archkd.distill.cache import TeacherCache


def running_bns(model: nn.Module) -> list[nn.Module]:
    """The model's BatchNorm layers that keep running statistics (those eval mode depends on)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


# Below this many optimizer steps a run without BN recalibration is warned: BN's running averages (momentum 0.1)
# trail the weights by tens of steps, and a CIFAR-10 student trained 18 steps predicted one class in eval mode (10.00 %
# test; 17.3 % with train.bn_recalibration=2048). Digits' DistPro trials at 52 steps showed the same (12 % vs 53 %).
SHORT_RUN_STEPS = 100


@torch.no_grad()
def recalibrate_bn(model: nn.Module, images: ImageSet, normalize: Normalize, device: torch.device | str = "cpu", *,
                   indices: np.ndarray, n: int, batch_size: int, channels_last: bool = False) -> int:
    """Re-estimate BatchNorm running statistics from ``n`` of ``indices`` (a fixed random sample, the same for every
    run seed: image folders are sorted by class, so the first ``n`` would describe a few classes only).

    Why: BN's running averages (momentum 0.1) trail the weights by tens of steps. After a few epochs, as in search
    trials, the weights still move fast and eval-mode accuracy can sit far below what the model has learned (on digits
    a 4-epoch DistPro trial scored 12 % in eval mode and 51 % in train mode; recalibrated, 53 %). Train-mode forwards
    without gradients re-estimate the statistics of the current weights as the equal-weight mean of per-batch
    statistics (a last partial batch is dropped). Weights and optimizer state are untouched; the only side effects
    are BN buffers and, for models with dropout, draws from torch's global RNG. Images are un-augmented, as
    ``evaluate`` sees them. Returns the number of images used (0 when the model has no BatchNorm with running
    statistics or fewer than 2 images are available).
    """
    bns = running_bns(model)
    indices = np.asarray(indices)
    sel = indices[np.sort(np.random.default_rng(0).permutation(len(indices))[:max(0, n)])]
    if not bns or len(sel) < 2:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    was = model.training
    model.train()
    seen = 0
    try:
        for x8, _, idx in images.batches(min(batch_size, len(sel)), device=torch.device(device), indices=sel,
                                         drop_last=len(sel) > batch_size):
            x = normalize(x8)
            model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
            seen += len(idx)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was)
    return seen


@torch.no_grad()
def evaluate(model: nn.Module, images: ImageSet, normalize: Normalize, device: torch.device | str = "cpu",
             batch_size: int = 512, channels_last: bool = False) -> float:
    """Top-1 accuracy on an un-augmented split; restores the model's train/eval mode afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    correct = 0
    for x8, y, _ in images.batches(batch_size, device=device):
        x = normalize(x8)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return correct / max(1, len(images))


@torch.no_grad()
def teacher_accuracy(teacher: nn.Module, data: DataBundle, cache: TeacherCache | None = None,
                     device: torch.device | str = "cpu", batch_size: int = 512) -> float:
    """The teacher's validation accuracy; its un-augmented validation logits come from (and fill) the cache."""
    device = torch.device(device)
    teacher.to(device).eval()
    correct = 0
    for x8, y, idx in data.val.batches(batch_size, device=device):
        x = data.normalize(x8)
        logits = cache.lookup("val", idx, lambda m: teacher(x[m]).float()) if cache else teacher(x)
        correct += int((logits.argmax(1) == y).sum())
    if cache:
        cache.flush()
    return correct / max(1, len(data.val))

