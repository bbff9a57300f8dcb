"""``hf:<folder>`` teachers (issue #30): a tiny ``transformers`` image classifier saved with ``save_pretrained`` in a
temporary folder, loaded with its normalisation and class names from the saved config, distilled from."""
from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from archkd.errors import ArchkdError  # noqa: E402
from archkd.teacher import check_teacher, load_teacher  # noqa: E402


def _save(folder, channels: int, size: int, classes: list[str], mean: list[float], std: list[float],
          processor_size: int | None = None) -> str:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=size, patch_size=4, num_channels=channels, hidden_size=16, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=32, num_labels=len(classes),
                       id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)})
    ViTForImageClassification(config).save_pretrained(folder)
    side = processor_size or size
    ViTImageProcessor(image_mean=mean, image_std=std, size={"height": side, "width": side}).save_pretrained(folder)
    return f"hf:{folder}"


def test_an_hf_teacher_brings_its_normalisation_and_class_names(tmp_path, digits):
    ref = _save(tmp_path / "vit", 1, 8, digits.classes, [0.3], [0.4])
    t = load_teacher(ref)
    assert t.mean == [0.3] and t.std == [0.4] and t.classes == digits.classes and t.name == "hf-vit"
    assert not t.supports_features and not t.module.training
    check_teacher(t, digits)
    assert load_teacher(ref).fingerprint == t.fingerprint  # same files, same teacher-cache key


def test_distill_from_an_hf_teacher_on_digits(tmp_path):
    from conftest import small_config

    from archkd import api

    digits_classes = [str(i) for i in range(10)]
    ref = _save(tmp_path / "vit", 1, 8, digits_classes, [0.25], [0.5])
    cfg = small_config(tmp_path, **{"teacher.path": ref, "student.arch": "resnet8", "train.epochs": 1})
    teacher, data = api.prepare(cfg, log=None)
    assert data.normalize.mean == [0.25] and data.normalize.std == [0.5]  # the teacher's, not estimated
    r = api.distill(cfg, log=None, teacher=teacher, data=data, write=True)
    assert 0.0 <= r["test_acc"] <= 1.0 and (cfg.run_dir / "student" / "best.pt").is_file()


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_distill_from_an_hf_teacher_on_cifar10_that_resizes_as_its_processor_does(tmp_path):
    """A ViT saved at 64 px (its processor resizes to 64) as the teacher of a CIFAR-10-format folder (32 px): the
    teacher sees its inputs at 64 px, its normalisation and class names come from the saved config, and a student
    distils from it."""
    from conftest import cifar_python_folder, small_config

    from archkd import api

    ref = _save(tmp_path / "vit64", 3, 64, CIFAR10, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], processor_size=64)
    t = load_teacher(ref)
    assert t.info["resizes_to"] == [64, 64] and t.module(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    cfg = small_config(tmp_path, **{"teacher.path": ref, "data.source": str(cifar_python_folder(tmp_path, CIFAR10)),
                                    "student.arch": "resnet8", "train.epochs": 1, "train.batch_size": 16})
    teacher, data = api.prepare(cfg, log=None)
    assert data.input_shape == (3, 32, 32) and teacher.classes == data.classes == CIFAR10
    assert data.normalize.mean == [0.49, 0.48, 0.45]
    r = api.distill(cfg, log=None, teacher=teacher, data=data)
    assert 0.0 <= r["test_acc"] <= 1.0


def test_a_missing_hf_teacher_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(ArchkdError, match="cannot load the Hugging Face image classifier") as e:
        load_teacher(f"hf:{tmp_path / 'nothing-here'}")
    assert "save_pretrained" in e.value.fix and "\n" not in str(e.value)
