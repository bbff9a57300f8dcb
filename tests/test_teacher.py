import json

import pytest
import torch

from archkd.config import DataConfig
from archkd.data import load_data
from archkd.errors import ArchkdError
from archkd.models import create_model
from archkd.teacher import check_teacher, load_teacher


def _script(tmp_path, num_classes=10, in_ch=1, meta=None, name="t.torchscript.pt"):
    m = create_model("resnet8", num_classes=num_classes, in_channels=in_ch).eval()
    p = tmp_path / name
    torch.jit.trace(m, torch.randn(1, in_ch, 8, 8)).save(str(p))
    if meta is not None:
        (tmp_path / (name.split(".")[0] + ".json")).write_text(json.dumps(meta))
    return p


def test_torchscript_teacher_with_sidecar(tmp_path, digits):
    p = _script(tmp_path, meta={"normalize_mean": [0.3], "normalize_std": [0.4], "input": "float32 N,1,8,8",
                                "classes": [str(i) for i in range(10)]})
    t = load_teacher(str(p))
    assert t.mean == [0.3] and t.input_shape == (1, 8, 8) and not t.supports_features
    assert not t.module.training and all(not q.requires_grad for q in t.module.parameters())
    check_teacher(t, digits)


def test_archkd_checkpoint_teacher(teacher_ckpt, digits):
    t = load_teacher(teacher_ckpt)
    assert t.spec["name"] == "resnet8" and t.classes == digits.classes and t.supports_features
    check_teacher(t, digits)


def test_class_count_mismatch(tmp_path, digits):
    t = load_teacher(str(_script(tmp_path, num_classes=7)))
    with pytest.raises(ArchkdError, match="teacher predicts 7 classes but the data has 10"):
        check_teacher(t, digits)


def test_input_shape_mismatch(tmp_path, digits):
    p = _script(tmp_path, in_ch=3, meta={"input": "float32 N,3,32,32"})
    with pytest.raises(ArchkdError, match="teacher expects 3 input channels but the data has 1"):
        check_teacher(load_teacher(str(p)), digits)
    p2 = _script(tmp_path, in_ch=3, name="u.pt")  # no sidecar: found by running it
    with pytest.raises(ArchkdError, match="teacher cannot run on the data's 1×8×8 inputs"):
        check_teacher(load_teacher(str(p2)), digits)


def test_unloadable_and_missing_teacher(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ArchkdError, match="cannot load teacher"):
        load_teacher(str(bad))
    with pytest.raises(ArchkdError, match="teacher file not found"):
        load_teacher(str(tmp_path / "missing.pt"))
    sd = tmp_path / "sd.pt"
    torch.save(create_model("resnet8").state_dict(), sd)
    with pytest.raises(ArchkdError, match="plain state dict"):
        load_teacher(str(sd))


def test_factory_teacher_with_state_dict(tmp_path, monkeypatch):
    mod = tmp_path / "myteacher.py"
    mod.write_text("from archkd.models import create_model\n"
                   "def build():\n    return create_model('resnet8', num_classes=10, in_channels=1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(3)
    ref = create_model("resnet8", num_classes=10, in_channels=1)
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    t = load_teacher("myteacher:build", weights=str(tmp_path / "w.pt"))
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(t.module(x), ref.eval()(x))
    with pytest.raises(ArchkdError, match="needs weights"):
        load_teacher("myteacher:build")


def test_normalisation_channel_mismatch(tmp_path):
    with pytest.raises(ArchkdError, match=r"normalisation is for 3 channels \(RGB\) but the data has 1 channel \(grayscale\)"):
        load_data("digits", DataConfig(), mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])


def test_an_exported_student_loads_back_as_a_teacher_with_its_preprocessing(tmp_path, teacher_ckpt, digits):
    """archkd's export writes ``student.json`` with the preprocessing nested (``preprocessing.mean``): loading the
    exported TorchScript as a teacher must use that normalisation, input shape, class names and architecture name,
    not estimate the normalisation from the data."""
    from conftest import small_config

    from archkd import api
    from archkd.distill import load_checkpoint

    files = api.export(small_config(tmp_path), checkpoint=teacher_ckpt, out_dir=tmp_path / "export", data=digits,
                       log=None)
    ck = load_checkpoint(teacher_ckpt)
    t = load_teacher(files["torchscript"])
    assert t.mean == ck["preprocessing"]["mean"] and t.std == ck["preprocessing"]["std"]
    assert t.input_shape == tuple(ck["input_shape"]) and t.classes == ck["classes"] and t.name == "resnet8"
    check_teacher(t, digits)
    again = load_teacher(teacher_ckpt)  # the same network either way: same outputs on the same batch
    x = digits.normalize(next(digits.val.batches(8, device=torch.device("cpu")))[0])
    assert torch.allclose(t.module(x), again.module(x), atol=1e-4)


def test_a_timm_teacher_builds_where_timm_can_load():
    """timm imports torchvision, which needs a build matched to the installed torch; where it cannot load (a CPU-only
    torch from another index, as on the project's machines) timm teachers cannot either, and this test says so."""
    try:
        import timm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or torchvision's own failure to load its operators
        pytest.skip(f"timm cannot load here ({type(e).__name__}: {e}); timm needs a torchvision built for this torch")
    t = load_teacher("timm:resnet18", kwargs={"num_classes": 10, "in_chans": 1})
    assert t.name == "resnet18" and t.module(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
