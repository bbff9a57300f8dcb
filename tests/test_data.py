import io
import zipfile

import numpy as np
import pytest
import torch

from archkd.config import DataConfig
from archkd.data import Augment, load_data
from archkd.errors import ArchkdError, ArchkdWarning


def test_digits_splits_are_disjoint_and_complete(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    n = len(digits.train) + len(digits.val) + len(digits.test)
    assert n == 1797
    tr = {tuple(x.flatten().tolist()) for x in digits.train.images[:200]}
    te = {tuple(x.flatten().tolist()) for x in digits.test.images}
    assert len(tr & te) < 5  # only exact duplicate images may coincide
    assert digits.augment == Augment(1, False, 0)  # no flips for digits


def test_augmentation_is_pure_function_of_seed_epoch_index():
    aug = Augment(crop_padding=2, flip=True, cutout=2)
    x = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    idx = torch.arange(100, 116)
    full = aug(x, idx, epoch=3, seed=5)
    perm = torch.randperm(16)
    part = aug(x[perm], idx[perm], epoch=3, seed=5)  # different batch order/composition
    assert torch.equal(full[perm], part)
    assert torch.equal(aug(x[:4], idx[:4], 3, 5), full[:4])
    assert not torch.equal(aug(x, idx, 4, 5), full)  # next epoch: another view
    assert not torch.equal(aug(x, idx, 3, 6), full)  # another seed: another view


def test_crop_shifts_content():
    aug = Augment(crop_padding=1)
    x = torch.zeros(64, 1, 4, 4, dtype=torch.uint8)
    x[:, :, 1:3, 1:3] = 255
    out = aug(x, torch.arange(64), 0, 0)
    assert out.shape == x.shape and out.dtype == torch.uint8
    prm = aug.params(0, 0, np.arange(64), 4, 4)
    assert set(np.unique(prm["dx"])) <= {0, 1, 2} and len(np.unique(prm["dx"])) == 3
    for i in range(64):
        dy, dx = prm["dy"][i] - 1, prm["dx"][i] - 1
        assert torch.equal(out[i], torch.roll(x[i], shifts=(-dy, -dx), dims=(1, 2)))  # content fits inside


def test_npz_source(tmp_path):
    p = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(p, x_train=rng.random((60, 12, 12, 3)).astype(np.float32), y_train=rng.integers(0, 3, 60),
             x_test=rng.random((20, 12, 12, 3)).astype(np.float32), y_test=rng.integers(0, 3, 20))
    d = load_data(str(p), cache_dir=str(tmp_path))
    assert d.input_shape == (3, 12, 12) and d.num_classes == 3 and len(d.test) == 20
    assert d.train.images.dtype == torch.uint8


def _png(color, size=10):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def test_image_folder_zip_and_streaming_agree(tmp_path):
    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w") as f:
        for split, n in (("train", 12), ("test", 4)):
            for c, col in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
                for i in range(n):
                    f.writestr(f"{split}/{c}/{i}.png", _png(tuple(v + i for v in col)))
    mem = load_data(str(z), DataConfig(val_fraction=0.25), cache_dir=str(tmp_path / "c"))
    assert mem.classes == ["cat", "dog"] and mem.input_shape == (3, 10, 10) and len(mem.test) == 8
    again = load_data(str(z), DataConfig(val_fraction=0.25), cache_dir=str(tmp_path / "c"))  # decoded cache hit
    assert torch.equal(again.train.images, mem.train.images)
    stream = load_data(str(z), DataConfig(val_fraction=0.25, max_in_memory_mb=0, num_workers=0),
                       cache_dir=str(tmp_path / "c2"))
    assert type(stream.train).__name__ == "StreamingImageSet"
    dev = torch.device("cpu")
    a = list(mem.train.batches(5, device=dev, shuffle=True, epoch=2, seed=1))
    b = list(stream.train.batches(5, device=dev, shuffle=True, epoch=2, seed=1))
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert torch.equal(ia.cpu(), ib.cpu()) and torch.equal(ya, yb) and torch.equal(xa, xb)


def test_torch_dataset_source():
    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 30

        def __getitem__(self, i):
            return torch.full((1, 6, 6), i / 30.0), i % 3

    with pytest.warns(ArchkdWarning, match="the test split has no images of 1 of 3 classes"):  # 6 held-out images
        d = load_data(DS())
    assert d.num_classes == 3 and d.input_shape == (1, 6, 6)


def test_bad_sources(tmp_path):
    with pytest.raises(ArchkdError, match="data path not found"):
        load_data(str(tmp_path / "nope"))
    bad = tmp_path / "x.csv"
    bad.write_text("1,2,3")
    with pytest.raises(ArchkdError, match="unsupported data format"):
        load_data(str(bad))
    with pytest.raises(ArchkdError, match="val_fraction"):
        load_data("digits", DataConfig(val_fraction=1.5))


def test_cifar_python_folder(tmp_path):
    from conftest import cifar_python_folder

    root = cifar_python_folder(tmp_path)
    d = load_data(str(root))
    assert d.input_shape == (3, 32, 32) and d.classes[0] == "c0"
    assert len(d.train) + len(d.val) == 100 and len(d.test) == 10
    assert d.augment == Augment(4, True, 0)
