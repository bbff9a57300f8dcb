"""int8 ONNX: static post-training quantisation with ONNX Runtime, calibrated on training images, then measured.

Why static and QDQ: the student is a CNN whose activations have stable ranges, so calibrating them once on real
images (min/max over a sample) avoids the per-call range computation of dynamic quantisation; the QDQ format
(QuantizeLinear/DequantizeLinear pairs around each quantised op) is what ONNX Runtime's CPU kernels fuse into int8
convolutions and what other runtimes read. Weights are int8 per output channel, activations uint8.

A quantised model is not trusted on its word: ``compare_int8`` reports its accuracy next to the fp32 model's on the
same split, the two file sizes and the two latencies under one protocol.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

from archkd.errors import ArchkdError
from archkd.measure.latency import REPEATS, time_onnx_file
from archkd.measure.onnx_export import INPUT_NAME


class _Calibration(CalibrationDataReader):
    """ONNX Runtime's calibration reader over a fixed array of normalised images, one small batch at a time."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        self.batches = iter([images[i:i + batch_size] for i in range(0, len(images), batch_size)])

    def get_next(self) -> dict | None:
        batch = next(self.batches, None)
        return None if batch is None else {INPUT_NAME: batch.astype(np.float32)}


def quantize_int8(fp32: str | Path, out: str | Path, calibration: np.ndarray) -> Path:
    """Write the int8 (QDQ, per-channel weights) version of the ONNX model ``fp32`` to ``out``, with activation
    ranges calibrated (min/max) on ``calibration`` — normalised training images, ``(N, C, H, W)`` float32."""
    if len(calibration) < 1:
        raise ArchkdError("int8 quantisation needs calibration images", "give export.calibration_images ≥ 1")
    reader = _Calibration(calibration)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="archkd-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # shape inference + graph optimisation
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def onnx_accuracy(path: str | Path, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of an ONNX classifier on normalised images (CPU, one session)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct = 0
    for i in range(0, len(images), batch_size):
        logits = session.run(None, {INPUT_NAME: images[i:i + batch_size].astype(np.float32)})[0]
        correct += int((logits.argmax(1) == labels[i:i + batch_size]).sum())
    return correct / max(1, len(images))


@dataclass(frozen=True)
class Int8Report:
    """fp32 against int8 on the same split, files and latency protocol."""

    path: str
    split: str
    fp32_acc: float
    int8_acc: float
    fp32_bytes: int
    int8_bytes: int
    fp32_latency_ms: float
    int8_latency_ms: float
    calibration_images: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare_int8(fp32: Path, int8: Path, images: np.ndarray, labels: np.ndarray, split: str, calibration_images: int,
                 threads: int = 1, repeats: int = REPEATS) -> Int8Report:
    shape = tuple(images.shape[1:])
    return Int8Report(str(int8), split, onnx_accuracy(fp32, images, labels), onnx_accuracy(int8, images, labels),
                      fp32.stat().st_size, int8.stat().st_size,
                      time_onnx_file(fp32, shape, threads=threads, repeats=repeats).median_ms,
                      time_onnx_file(int8, shape, threads=threads, repeats=repeats).median_ms, calibration_images)
