"""Device, precision and seeding choices shared by training and measurement.

Why here: "auto" must mean the same thing everywhere (CUDA when present, else CPU), and the fixed precision defaults
(AMP / channels_last on CUDA only) are the same for every caller; a student's own setting is measured
(``archkd.distill.autotune``).
"""
from __future__ import annotations

import os
import random
from typing import NoReturn

import numpy as np
import torch

from archkd.errors import ArchkdError


def resolve_device(name: str = "auto") -> torch.device:
    if name in (None, "auto"):  # under torchrun each process takes the GPU of its local rank
        return torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ArchkdError(f"device '{name}' requested but CUDA is not available", "use device=cpu or device=auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ArchkdError(f"unknown device '{name}'", "use auto, cpu, cuda or cuda:N") from None


def use_amp(device: torch.device, flag: bool | None) -> bool:
    """bf16 autocast as set (``flag``), else the fixed default: on for CUDA, off on CPU. Whether it pays depends on
    the model and the processor (on an AVX-512-BF16 CPU ResNets train 2× faster in bf16, a ViT 0.6× as fast), which
    is why a training's student is timed under both by ``archkd.distill.autotune``; this default is for the
    teacher, and for a student when ``train.autotune=false``."""
    return device.type == "cuda" if flag is None else bool(flag)


def use_channels_last(device: torch.device, flag: bool | None) -> bool:
    return device.type == "cuda" if flag is None else bool(flag)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; enable deterministic cuDNN so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count; ``None`` takes ``$OMP_NUM_THREADS`` when set, else the cores not already busy
    (1-minute load average).

    Why: two OpenMP thread pools competing for the same cores slow small-model training by an order of magnitude
    (measured: the demo took 31 s alone and 11 min beside three other 2-thread jobs), so the CLI never asks for
    more threads than there are idle cores. The load average only sees jobs already running, so a user who starts
    several at once says how many threads each gets with the variable every OpenMP program honours (a run started on
    an idle machine took 2 threads and trained at 56 img/s once other jobs joined, 470 img/s after they ended).
    A set but invalid ``$OMP_NUM_THREADS`` (``0``, ``-3``, ``four``) is a user error rather than silently ignored: the
    user meant to limit the threads, and the other OpenMP libraries of the process read it too. Returns the count
    set (``threads_in_use`` reads it back later).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            from_env = int(env)
        except ValueError:
            from_env = 0
        if from_env < 1:
            raise ArchkdError(f"environment variable OMP_NUM_THREADS is '{env}', not a positive number of threads",
                              "unset it or give a positive integer, e.g. OMP_NUM_THREADS=2")
        threads = from_env if threads is None else threads
    if threads is None:
        cores = os.cpu_count() or 1
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = max(1, min(cores, int(cores - busy + 0.5)))
    torch.set_num_threads(int(threads))
    return int(threads)


def threads_in_use() -> int:
    """The CPU threads torch computes with now (what ``configure_threads`` set): results record it, since throughput
    and latency depend on it."""
    return torch.get_num_threads()


def default_cache_dir() -> str:
    return os.environ.get("ARCHKD_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "archkd"))


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a ``torch.distributed`` process group is running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_rank0() -> bool:
    return world()[0] == 0


def init_distributed() -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1 in the environment): NCCL on CUDA, gloo on CPU.

    Each process then trains one shard of every batch of the same model; only rank 0 writes files. Returns whether
    a group was started.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def close_distributed(wait: bool = False) -> None:
    """Leave the process group; ``wait`` first lets every process arrive (after a normal end: a process that tears
    its connections down while another still finishes its part can make gloo abort the group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int, distributed: bool) -> NoReturn:
    """End the process with ``code``; a torchrun process (``distributed``) skips interpreter finalization.

    Why: after a clean ``close_distributed`` gloo's worker threads can still hold finished work whose tensors are
    released while the interpreter is torn down, and the process aborts (SIGABRT, "terminate called without an active
    exception"; seen in one fresh-clone CI run and in 1 of 47 runs of the stop test here, every result already
    written). Everything the run
    writes is flushed or closed by now, so ``os._exit`` after flushing loses nothing.
    """
    if distributed:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


def broadcast_object(obj: object = None) -> object:
    """Rank 0's ``obj`` on every process of the group (what rank 0 decided: the next trial, the next finalist)."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
