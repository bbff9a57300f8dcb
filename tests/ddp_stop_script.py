"""Run under torchrun by test_ddp: rank 0's on_epoch stops training after epoch 1; every rank must stop with it."""
import torch

from archkd.config import TrainConfig
from archkd.data import load_data
from archkd.device import close_distributed, exit_process, init_distributed, world
from archkd.distill import StopTraining, fit
from archkd.models import create_model


class Pruned(Exception):
    pass


def stop(epoch, row):
    raise Pruned


distributed = init_distributed()
rank, n = world()
torch.set_num_threads(1)
data = load_data("digits", seed=0)
try:
    fit(create_model("resnet8", num_classes=10, in_channels=1), data, TrainConfig(epochs=5, batch_size=64),
        seed=0, device="cpu", log=None, on_epoch=stop)
    outcome = "finished"
except Pruned:
    outcome = "pruned"
except StopTraining:
    outcome = "stopped"
print(f"rank {rank}/{n}: {outcome}", flush=True)
close_distributed(wait=True)
exit_process(0, distributed)
