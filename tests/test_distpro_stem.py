"""DistPro's stem feature (issue #25): every family with a stem declares it as a tap, processes start at the stem
when both networks have one (10 forward pathways for two 3-stage CIFAR ResNets, as in the paper), and process files
written before stems were tapped still replay and transfer."""
import pytest
import torch
import torch.nn as nn

from archkd.config import ProcessConfig, TrainConfig
from archkd.distill import fit
from archkd.distill.checkpoint import atomic_save
from archkd.distill.objective import DistillObjective, Taps
from archkd.errors import ArchkdError
from archkd.models import create_model, list_models
from archkd.process import (load_process, make_pathways, replay_objective, save_process, search_objective,
                            transfer_process)
from archkd.process.search import ProcessSearchResult
from archkd.process.store import FORMAT
from archkd.teacher import load_teacher

FAST_KWARGS = {"mobilenetv2": {"width_mult": 0.5}, "shufflenetv2": {"net_size": 0.5}}
CIFAR = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class NoStem(nn.Module):
    """A wrapper that exposes its network's stages but no stem (as a hand-written user model would)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.stage_names = [f"inner.{n}" for n in inner.stage_names]

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("name", list_models())
def test_every_family_declares_its_stem(name):
    """The stem tap is the module before the first stage: channels as declared, at least the first stage's size."""
    torch.manual_seed(0)
    model = create_model(name, **FAST_KWARGS.get(name, {})).eval()
    assert model.stem_name is not None, f"{name} has a stem but declares none"
    modules = dict(model.named_modules())
    seen = {}
    hooks = [modules[p].register_forward_hook(lambda _m, _i, out, p=p: seen.setdefault(p, out))
             for p in [model.stem_name, model.stage_names[0]]]
    with torch.no_grad():
        model(CIFAR[:2])
    for h in hooks:
        h.remove()
    assert list(seen) == [model.stem_name, model.stage_names[0]]  # the stem runs before the first stage
    stem = seen[model.stem_name]
    assert stem.shape[1] == model.stem_channels
    assert stem.shape[-1] >= seen[model.stage_names[0]].shape[-1]
    assert len(model.stage_names) == len(model.feature_channels)  # the stage contract is unchanged


def test_models_without_a_stem_have_no_stem_tap():
    from archkd.models import register_model, registry

    @register_model("_stemless_test_net")
    def _net(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(4, num_classes))

    try:
        m = create_model("_stemless_test_net")
    finally:
        registry._REGISTRY.pop("_stemless_test_net", None)
    assert m.stem_name is None and m.stem_channels is None
    s = create_model("resnet8")
    obj = search_objective(s, NoStem(create_model("resnet20")), CIFAR, ProcessConfig())
    assert not obj.stem and len(obj.pathways) == 6  # the stem only when both networks have one


def test_resnet20_to_resnet8_pathway_counts():
    """DistPro's CIFAR layout: stem + 3 stages per network, 10 forward pathways (16 with pathways: all)."""
    student, teacher = create_model("resnet8"), create_model("resnet20")
    fwd = search_objective(student, teacher, CIFAR, ProcessConfig())
    assert fwd.stem and len(fwd.pathways) == 10 == len(make_pathways(4, 4))
    assert fwd.student_taps[0] == fwd.teacher_taps[0] == "input:stem.2"  # pre-ReLU, like the stage taps
    assert fwd.student_taps[1:] == ["input:layer1.0.act", "input:layer2.0.act", "input:layer3.0.act"]
    assert len(search_objective(student, teacher, CIFAR, ProcessConfig(pathways="all")).pathways) == 16
    # the layout of process files written before the stem was tapped
    old = search_objective(student, teacher, CIFAR, ProcessConfig(), stem=False)
    assert not old.stem and len(old.pathways) == 6 and old.student_taps == fwd.student_taps[1:]
    # taps given by hand are used as given (no stem on either side unless listed)
    given = search_objective(student, teacher, CIFAR, ProcessConfig(student_stages=["layer2", "layer3"]))
    assert not given.stem and len(given.teacher_taps) == 3 and len(given.pathways) == 3


def _train_step(obj, student, teacher, x):
    s_taps, t_taps = Taps(student, obj.student_taps), Taps(teacher, obj.teacher_taps)
    with torch.no_grad():
        t_logits = teacher(x)
    t_feats = t_taps.pop()
    logits = student(x)
    s_feats = s_taps.pop()
    if not obj.ready:
        obj.setup(s_feats, t_feats)
    loss, parts = obj(logits, torch.zeros(len(x), dtype=torch.long), t_logits, s_feats, t_feats)
    loss.backward()
    s_taps.remove(), t_taps.remove()
    return loss, parts


def _old_style_file(path, student, teacher, x):
    """A process file exactly as store.py wrote it before the stem was tapped: stage taps only, 6 pathways, no
    ``stem`` entry."""
    obj = search_objective(student, teacher, x, ProcessConfig(transform="linear"), stem=False)
    traj = torch.randn(5, len(obj.pathways), generator=torch.Generator().manual_seed(1))
    payload = {"format": FORMAT, "trajectory": traj, "weights": traj.softmax(-1),
               "pathways": [[q.teacher, q.student] for q in obj.pathways], "student_taps": obj.student_taps,
               "teacher_taps": obj.teacher_taps, "transform": "linear", "distance": "hcl",
               "normalization": "softmax", "logit_kd": 0.0, "steps_per_epoch": 5, "epochs": 1, "val_acc": 0.5}
    return atomic_save(payload, path)


def test_old_process_file_replays(tmp_path, digits, teacher_ckpt):
    """A 6-pathway stages-only file replays through the ordinary trainer on networks that now declare stems."""
    teacher = load_teacher(teacher_ckpt).module
    torch.manual_seed(0)
    student = create_model("resnet8", in_channels=1)
    x = digits.normalize(next(digits.train.batches(4, device=torch.device("cpu")))[0])
    path = _old_style_file(tmp_path / "old.pt", student, teacher, x)
    proc = load_process(path)
    assert proc["stem"] is False and len(proc["pathways"]) == 6
    assert not any("stem" in t for t in proc["student_taps"] + proc["teacher_taps"])
    cfg = TrainConfig(epochs=1, batch_size=256, lr=0.1)
    total = len(digits.train) // 256
    rep = replay_objective(proc, total)
    assert len(rep.pathways) == 6 and not rep.stem
    res = fit(student, digits, cfg, objective=rep, teacher=teacher, log=None)
    assert int(rep.step) == total and res.history[-1]["loss_pathways"] > 0


def test_old_process_file_transfers(tmp_path):
    """transfer_process moves a stages-only file to another student as stages only; a stem file needs a stem."""
    x = CIFAR
    teacher = create_model("resnet20")
    old = _old_style_file(tmp_path / "old.pt", create_model("resnet14"), teacher, x)
    torch.manual_seed(0)
    student = create_model("resnet8")
    moved = transfer_process(old, student, x)
    assert moved["student_taps"] == ["input:layer1.0.act", "input:layer2.0.act", "input:layer3.0.act"]
    assert moved["transferred_from"] == str(old) and not moved["stem"]
    rep = replay_objective(moved, 10)
    loss, parts = _train_step(rep, student.train(), teacher.eval(), x)
    assert torch.isfinite(loss) and parts["pathways"] > 0
    two_stages = create_model("stagenet", stages=[{"depth": 1, "width": 8, "kernel": 3},
                                                  {"depth": 1, "width": 16, "kernel": 3}])
    with pytest.raises(ArchkdError, match="old.pt has 3 student features"):
        transfer_process(old, two_stages, x)


def _saved(path, obj, steps=4):
    traj = torch.randn(steps, len(obj.pathways), generator=torch.Generator().manual_seed(2))
    res = ProcessSearchResult(traj, traj.softmax(-1), obj.pathways, obj.student_taps, obj.teacher_taps, steps, 1,
                              0.5, 1.0, 0.5)
    return save_process(path, res, obj, {})


def test_stem_process_file_round_trip_and_transfer(tmp_path):
    teacher = create_model("resnet20").eval()
    obj = search_objective(create_model("resnet14"), teacher, CIFAR, ProcessConfig(transform="linear"))
    path = _saved(tmp_path / "p.pt", obj)
    proc = load_process(path)
    assert proc["stem"] is True and len(proc["pathways"]) == 10
    torch.manual_seed(0)
    student = create_model("resnet8")
    moved = transfer_process(path, student, CIFAR)
    assert moved["student_taps"][0] == "input:stem.2" and len(moved["student_taps"]) == 4
    rep = replay_objective(moved, 20, mode="equal")
    assert rep.stem and rep.pathways[0].teacher == rep.pathways[0].student == 0
    _train_step(rep, student.train(), teacher, CIFAR)
    assert student.stem[0].weight.grad is not None and student.stem[0].weight.grad.abs().sum() > 0
    with pytest.raises(ArchkdError, match=r"p\.pt starts at the stem"):
        transfer_process(path, NoStem(create_model("resnet8")), CIFAR)


def test_damaged_process_file_is_refused_in_one_line(tmp_path):
    obj = search_objective(create_model("resnet8"), create_model("resnet8"), CIFAR, ProcessConfig(), stem=False)
    path = _saved(tmp_path / "p.pt", obj)
    payload = torch.load(path, weights_only=True)
    payload["student_taps"] = payload["student_taps"][:2]  # pathways now point past the taps
    atomic_save(payload, path)
    with pytest.raises(ArchkdError, match="do not match its taps") as e:
        load_process(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_feature_losses_still_take_taps_by_stage_name():
    """distill.features name module paths: stage names work as before, and the stem is now one more such path."""
    torch.manual_seed(0)
    student, teacher = create_model("resnet8"), create_model("resnet20").eval()
    obj = DistillObjective(ce_weight=1.0, features=[
        {"loss": "at", "student": "layer2", "teacher": "layer2"},
        {"loss": "fitnet", "student": "layer3", "teacher": "layer3"},
        {"loss": "fitnet", "student": student.stem_name, "teacher": teacher.stem_name},
        {"loss": "reviewkd", "student": student.stage_names, "teacher": teacher.stage_names}])
    assert obj.student_taps == ["layer2", "layer3", "stem", "layer1", "layer2", "layer3"]
    loss, parts = _train_step(obj, student.train(), teacher, CIFAR)
    assert torch.isfinite(loss) and {"at:layer2", "fitnet:layer3", "fitnet:stem"} <= set(parts)
