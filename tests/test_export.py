"""Tests for archkd.export: parity, JSON sidecar, files runnable without archkd, parity failures."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import archkd.export.exporter as exporter
from archkd.errors import ArchkdError
from archkd.export import ExportResult, export_model


class ResidualBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn(self.conv(x)))


# Pretend the class lives inside archkd: the exported files must still load without archkd.
ResidualBlock.__module__ = "archkd.models.fake_blocks"


def tiny_student() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        ResidualBlock(8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():  # non-trivial BN statistics so eval vs train mode would differ
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


METADATA = {
    "architecture": {"family": "tiny", "widths": [8]},
    "preprocessing": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "class_names": ["a", "b", "c", "d", "e"],
    "input_shape": [3, 16, 16],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportResult, nn.Module, torch.Tensor]:
    model = tiny_student().train()
    example = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = export_model(model, tmp_path_factory.mktemp("export"), example, METADATA)
    return result, model, example


def test_export_writes_files_with_parity(exported) -> None:
    result, model, _ = exported
    assert result.paths["onnx"].name == "student.onnx" and result.paths["onnx"].exists()
    assert result.paths["torchscript"].name == "student.torchscript.pt" and result.paths["torchscript"].exists()
    assert set(result.max_abs_diff) == {"onnx", "torchscript"}
    assert all(0 <= d <= 1e-4 for d in result.max_abs_diff.values())
    assert model.training  # caller's model untouched
    json.dumps(result.to_dict())


def test_export_metadata_json(exported) -> None:
    result, _, _ = exported
    meta = json.loads(result.metadata_path.read_text())
    assert result.metadata_path.name == "student.json"
    for key, value in METADATA.items():
        assert meta[key] == value
    assert meta["files"] == {"onnx": "student.onnx", "torchscript": "student.torchscript.pt"}
    assert meta["parity"]["onnx"]["n_samples"] == 16 and meta["parity"]["onnx"]["atol"] == 1e-4
    assert meta["parity"]["torchscript"]["method"] in ("trace", "script")
    assert meta["torch_version"] == torch.__version__ and meta["onnx_opset"] == 17


def test_exported_files_run_without_archkd(exported, tmp_path: Path) -> None:
    result, model, example = exported
    np.save(tmp_path / "x.npy", example.numpy())
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        class BlockArchkd(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "archkd" or name.startswith("archkd."):
                    raise ImportError("archkd is blocked in this test: " + name)
                return None

        sys.meta_path.insert(0, BlockArchkd())
        try:
            import archkd
            blocked = False
        except ImportError:
            blocked = True

        import warnings
        warnings.simplefilter("ignore")
        import numpy as np
        import onnxruntime as ort
        import torch

        x = np.load({str(tmp_path / "x.npy")!r})
        sess = ort.InferenceSession({str(result.paths["onnx"])!r}, providers=["CPUExecutionProvider"])
        onnx_out = sess.run(None, {{"input": x}})[0]
        ts = torch.jit.load({str(result.paths["torchscript"])!r})
        with torch.no_grad():
            ts_out = ts(torch.from_numpy(x)).numpy()
        print(json.dumps({{"blocked": blocked, "archkd_loaded": any(m.startswith("archkd") for m in sys.modules),
                          "onnx": onnx_out.tolist(), "torchscript": ts_out.tolist()}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked"] and not out["archkd_loaded"]
    ref_model = copy.deepcopy(model).eval()  # keep the shared fixture model in train mode
    with torch.no_grad():
        ref = ref_model(example).numpy()
    for fmt in ("onnx", "torchscript"):
        assert np.max(np.abs(np.asarray(out[fmt], dtype=np.float32) - ref)) <= 1e-4, fmt


def test_parity_failure_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = exporter._run_onnx
    monkeypatch.setattr(exporter, "_run_onnx", lambda path, x: real(path, x) + 1e-2)
    with pytest.raises(ArchkdError, match=r"onnx export does not match.*0\.01"):
        export_model(tiny_student(), tmp_path, torch.randn(4, 3, 16, 16), METADATA)
    assert not (tmp_path / "student.json").exists()  # no sidecar vouching for a bad file


def test_only_torchscript_and_basename(tmp_path: Path) -> None:
    result = export_model(tiny_student(), tmp_path, torch.randn(2, 3, 16, 16), {}, formats=("torchscript",),
                          basename="tiny")
    assert set(result.paths) == {"torchscript"} and result.paths["torchscript"].name == "tiny.torchscript.pt"
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["onnx_opset"] is None and list(meta["files"]) == ["torchscript"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"formats": ("tflite",)},
        {"metadata": {"files": 1}},
        {"metadata": {"bad": object()}},
        {"example": torch.empty(0, 3, 16, 16)},
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    args = {"example": torch.randn(2, 3, 16, 16), "metadata": {}, **kwargs}
    with pytest.raises(ArchkdError):
        export_model(tiny_student(), tmp_path, **args)


def test_int8_export_is_smaller_and_about_as_accurate(tmp_path: Path, teacher_ckpt: str) -> None:
    """``export.quantize=int8`` on a digits resnet8: a QDQ int8 ONNX file beside fp32, compared on the test split."""
    import onnx
    import onnxruntime as ort

    from archkd import api
    from archkd.config import load_config

    cfg = load_config(overrides=[f"runs_dir={tmp_path}", "name=q", "export.quantize=int8",
                                 "export.calibration_images=256", "export.formats=[torchscript]"])
    out = api.export(cfg, checkpoint=teacher_ckpt, log=None)
    q = out["int8"]
    assert q["split"] == "test" and q["calibration_images"] == 256
    assert q["int8_bytes"] < 0.5 * q["fp32_bytes"]  # int8 weights: about a quarter of the fp32 size
    assert q["fp32_acc"] > 0.6 and abs(q["int8_acc"] - q["fp32_acc"]) <= 0.03  # the 3-epoch test teacher: ~77 %
    assert q["int8_latency_ms"] > 0 and q["fp32_latency_ms"] > 0
    path = Path(out["onnx"]).with_name("student.int8.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})[0].shape == (2, 10)
    sidecar = json.loads((path.parent / "student.json").read_text())
    assert sidecar["int8"]["path"] == "student.int8.onnx" and sidecar["int8"]["int8_acc"] == q["int8_acc"]


def test_dynamo_exporter_route(tmp_path: Path, teacher_ckpt: str) -> None:
    """``export.onnx_exporter=dynamo``: torch.export + the dynamo ONNX exporter, with the same parity check and a
    dynamic batch axis; the sidecar names the route."""
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript (the 'dynamo' extra)")
    import onnxruntime as ort

    from archkd import api
    from archkd.config import load_config

    cfg = load_config(overrides=[f"runs_dir={tmp_path}", "name=d", "export.onnx_exporter=dynamo",
                                 "export.formats=[onnx]"])
    out = api.export(cfg, checkpoint=teacher_ckpt, log=None)
    sidecar = json.loads((Path(out["onnx"]).parent / "student.json").read_text())
    assert sidecar["onnx_exporter"] == "dynamo" and sidecar["onnx_opset"] >= 18
    assert sidecar["parity"]["onnx"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(out["onnx"], providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((5, 1, 8, 8), np.float32)})[0].shape == (5, 10)
