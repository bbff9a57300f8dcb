"""Hostile and unusual image data (issue #24): 16-bit PNGs, mixed modes, symlinked folders, zip bombs, huge images."""
import io
import os
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from archkd.config import DataConfig
from archkd.data import load_data, sources
from archkd.errors import ArchkdError, ArchkdWarning

CFG = DataConfig(val_fraction=0.25)


def _encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(i: int, size: int = 8) -> bytes:
    return _encode(Image.new("RGB", (size, size), (20 * i, 100, 200 - 10 * i)))


def _write(root, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _zip(path, files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)


def _plain(n: int = 6, size: int = 8) -> dict[str, bytes]:
    """n RGB images per class in train/, two in test/: enough for a split with every class in the test set."""
    files = {f"train/{c}/{i}.png": _rgb(i, size) for c in "ab" for i in range(n)}
    files.update({f"test/{c}/{i}.png": _rgb(i, size) for c in "ab" for i in range(2)})
    return files


def _archkd_warnings(record) -> list[str]:
    assert all(issubclass(w.category, ArchkdWarning) for w in record), [str(w.message) for w in record]
    return [str(w.message) for w in record]


# 1. 16-bit images are scaled to 8 bits, not clipped to 255


GRADIENT = np.arange(256).reshape(16, 16)


@pytest.mark.parametrize("fmt, dtype, mode", [("PNG", np.uint16, "I;16"), ("TIFF", ">u2", "I;16B"),
                                              ("TIFF", np.int32, "I")])
def test_16bit_gray_images_keep_their_gradient(tmp_path, fmt, dtype, mode):
    im = Image.fromarray((GRADIENT * 257).astype(dtype))
    data = _encode(im, fmt)
    assert Image.open(io.BytesIO(data)).mode == mode
    ext = fmt.lower()
    files = {f"{s}/{c}/{i}.{ext}": data for s, n in (("train", 6), ("test", 2)) for c in "ab" for i in range(n)}
    _write(tmp_path / "d", files)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))
    assert _archkd_warnings(rec) == []  # 16-bit grayscale in a grayscale dataset is only rescaled: nothing to warn
    assert d.input_shape == (1, 16, 16)
    assert torch.equal(d.train.images[0, 0], torch.as_tensor(GRADIENT, dtype=torch.uint8))


# 2. mixed modes: converted, with one warning per load that counts them


def _odd_modes() -> dict[str, bytes]:
    p = Image.new("P", (8, 8), 1)
    p.putpalette([0, 0, 0, 250, 30, 40, 10, 20, 30] + [0] * 759)
    p.putpixel((0, 0), 2)
    return {"train/b/x_cmyk.jpg": _encode(Image.new("CMYK", (8, 8), (0, 255, 0, 0)), "JPEG"),
            "train/b/x_la.png": _encode(Image.new("LA", (8, 8), (100, 0))),
            # tRNS as bytes: PIL warns when such an image is converted to RGB directly
            "train/b/x_p.png": _encode(p, transparency=b"\x00\x80\xff"),
            "train/b/x_rgba.png": _encode(Image.new("RGBA", (8, 8), (1, 2, 3, 0))),
            "train/b/x_1.png": _encode(Image.new("1", (8, 8), 1))}


MIXED_NOTE = "converted 5 of 21 images in {} to RGB (1: 1, CMYK: 1, LA: 1, P with transparency: 1, RGBA: 1)"


def test_mixed_modes_warn_once_per_load(tmp_path):
    files = {**_plain(), **_odd_modes()}
    _write(tmp_path / "d", files)
    _zip(tmp_path / "d.zip", files)
    for src in (tmp_path / "d", tmp_path / "d.zip", tmp_path / "d.zip"):  # the second zip load is a cache hit
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            d = load_data(str(src), CFG, cache_dir=str(tmp_path / "c"))
        assert _archkd_warnings(rec) == [MIXED_NOTE.format(src) + ", as the dataset's first image is RGB; "
                                         "transparency is dropped"]
        assert d.input_shape == (3, 8, 8)


def test_palette_transparency_keeps_the_colour_under_it(tmp_path):
    data = _odd_modes()["train/b/x_p.png"]
    x, converted = sources._decode(data, "RGB", None, "x_p.png")
    assert converted == "P with transparency"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's loader: a direct convert, with PIL's warning
        want = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(x, want)
    assert x[:, 0, 0].tolist() == [10, 20, 30] and x[:, 1, 1].tolist() == [250, 30, 40]


def test_grayscale_dataset_warns_about_colour_images(tmp_path):
    gray = {f"{s}/{c}/{i}.png": _encode(Image.new("L", (8, 8), 10 * i)) for s, n in (("train", 6), ("test", 2))
            for c in "ab" for i in range(n)}
    gray["train/b/z.png"] = _rgb(3)
    _write(tmp_path / "d", gray)
    with pytest.warns(ArchkdWarning, match=r"converted 1 of 17 images in .* to grayscale \(L\) \(RGB: 1\)"):
        d = load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))
    assert d.input_shape == (1, 8, 8)


def test_streamed_mixed_modes_decode_identically_and_warn_from_a_sample(tmp_path, monkeypatch):
    _zip(tmp_path / "d.zip", {**_plain(), **_odd_modes()})
    with pytest.warns(ArchkdWarning, match=r"converted 5 of 21 images in "):
        mem = load_data(str(tmp_path / "d.zip"), CFG, cache_dir=str(tmp_path / "c"))
    monkeypatch.setattr(sources, "MODE_SAMPLE", 10)  # every other training image, in zip order: x_cmyk, x_p, x_1
    with pytest.warns(ArchkdWarning, match=r"converted 3 of a sample of 10 of 21 images \(streamed\) in .* to RGB "
                                           r"\(1: 1, CMYK: 1, P with transparency: 1\)"):
        stream = load_data(str(tmp_path / "d.zip"), DataConfig(val_fraction=0.25, max_in_memory_mb=0, num_workers=0),
                           cache_dir=str(tmp_path / "c2"))
    dev = torch.device("cpu")
    for split in ("train", "val", "test"):
        a = list(getattr(mem, split).batches(4, device=dev))
        b = list(getattr(stream, split).batches(4, device=dev))
        assert len(a) == len(b) and all(torch.equal(xa, xb) for (xa, _, _), (xb, _, _) in zip(a, b))


# 3. symlinked class folders and images are followed; symlink loops are not


def test_symlinked_class_folder_and_image_are_followed(tmp_path):
    root = tmp_path / "d"
    _write(root, _plain())
    _write(tmp_path / "elsewhere", {f"c/{i}.png": _rgb(i) for i in range(6)})
    _write(tmp_path / "elsewhere", {f"ctest/{i}.png": _rgb(i) for i in range(2)})
    os.symlink(tmp_path / "elsewhere" / "c", root / "train" / "c")
    os.symlink(tmp_path / "elsewhere" / "ctest", root / "test" / "c")
    os.symlink(tmp_path / "elsewhere" / "c" / "0.png", root / "train" / "a" / "linked.png")
    os.symlink(root / "train", root / "train" / "a" / "loop")  # a loop back to an ancestor
    os.symlink(root, tmp_path / "elsewhere" / "c" / "loop")  # a loop through the linked folder
    d = load_data(str(root), CFG, cache_dir=str(tmp_path / "cache"))
    assert d.classes == ["a", "b", "c"]
    assert len(d.train) + len(d.val) == 19 and len(d.test) == 6
    # a file changed inside the linked folder changes the cache key: the decoded cache is not served stale
    (tmp_path / "elsewhere" / "c" / "5.png").write_bytes(_rgb(1, size=9))
    again = load_data(str(root), CFG, cache_dir=str(tmp_path / "cache"))
    assert again.fingerprint != d.fingerprint


def test_unlistable_folder_is_an_error_not_a_missing_class(tmp_path, monkeypatch):
    _write(tmp_path / "d", _plain())
    real = os.scandir

    def scandir(path):
        if str(path).endswith(os.path.join("train", "b")):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # chmod does not stop root, who may run the tests
    with pytest.raises(ArchkdError, match=r"cannot list folder .*train/b \(Permission denied\) — make it readable"):
        load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))


def test_broken_symlink_is_left_out(tmp_path):
    _write(tmp_path / "d", _plain())
    os.symlink(tmp_path / "missing", tmp_path / "d" / "train" / "a" / "broken.png")
    d = load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))
    assert len(d.train) + len(d.val) == 12


# 4. zip members: sizes checked from the header before anything is inflated


@pytest.fixture
def opened(monkeypatch):
    """Names of the zip members that were opened for reading at all."""
    names: list[str] = []
    real = zipfile.ZipFile.open

    def spy(self, name, mode="r", *a, **kw):
        if mode == "r":
            names.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real(self, name, mode, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


@pytest.mark.parametrize("skip_corrupt", [False, True])
def test_oversized_zip_member_is_refused_before_it_is_read(tmp_path, monkeypatch, opened, skip_corrupt):
    monkeypatch.setattr(sources, "MAX_IMAGE_BYTES", 2**20)
    _zip(tmp_path / "d.zip", {**_plain(), "train/b/zz.png": bytes(3 * 2**20)})
    with pytest.raises(ArchkdError) as e:
        load_data(str(tmp_path / "d.zip"), DataConfig(val_fraction=0.25, skip_corrupt=skip_corrupt),
                  cache_dir=str(tmp_path / "c"))
    assert str(e.value) == (f"image {tmp_path / 'd.zip'} member train/b/zz.png is 3,145,728 bytes uncompressed, over "
                            "the limit of 1,048,576 bytes per image — remove it, or resize it first (archkd shrinks "
                            "images to data.image_size anyway)")
    assert "train/b/zz.png" not in opened and "train/a/0.png" in opened


def test_zip_bomb_member_is_refused_by_its_ratio(tmp_path, opened):
    _zip(tmp_path / "d.zip", {**_plain(), "train/b/zz.png": bytes(2 * 2**20)}, zipfile.ZIP_BZIP2)
    with pytest.raises(ArchkdError, match=r"member train/b/zz.png inflates \d+ → 2,097,152 bytes, over 1000:1"):
        load_data(str(tmp_path / "d.zip"), CFG, cache_dir=str(tmp_path / "c"))
    assert "train/b/zz.png" not in opened


def test_oversized_file_in_a_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_IMAGE_BYTES", 2**20)
    _write(tmp_path / "d", {**_plain(), "train/b/zz.png": bytes(2**20 + 1)})
    with pytest.raises(ArchkdError, match=r"zz.png is 1,048,577 bytes, over the limit of 1,048,576 bytes"):
        load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))


# 5. images with too many pixels are refused from their header, in one line


def test_image_over_the_pixel_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_IMAGE_PIXELS", 100)
    _write(tmp_path / "d", {**_plain(size=10), "train/b/zz.png": _rgb(1, size=20)})
    with pytest.raises(ArchkdError) as e:
        load_data(str(tmp_path / "d"), DataConfig(val_fraction=0.25, skip_corrupt=True), cache_dir=str(tmp_path / "c"))
    assert str(e.value) == (f"image {tmp_path / 'd' / 'train/b/zz.png'} is 20×20 = 400 pixels, over the limit of 100 "
                            "pixels — resize the images first (archkd shrinks them to data.image_size anyway), or "
                            "remove this one")


@pytest.mark.parametrize("pil_limit, how_big", [(300, "20×20 = 400 pixels"), (150, "over 300 pixels")])
def test_pil_decompression_bomb_never_reaches_the_user_raw(tmp_path, monkeypatch, pil_limit, how_big):
    monkeypatch.setattr(sources, "MAX_IMAGE_PIXELS", 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pil_limit)  # PIL warns over 300, raises over 2 × 150
    _write(tmp_path / "d", _plain(size=20))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(ArchkdError, match=f"is {how_big}, over the limit of 100 pixels"):
            load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))
    assert [str(w.message) for w in rec] == []


def test_streamed_image_over_the_pixel_limit_is_one_line(tmp_path, monkeypatch):
    _write(tmp_path / "d", {**_plain(size=10), "train/b/zz.png": _rgb(1, size=20)})
    d = load_data(str(tmp_path / "d"), DataConfig(val_fraction=0.25, max_in_memory_mb=0, num_workers=1),
                  cache_dir=str(tmp_path / "c"))
    monkeypatch.setattr(sources, "MAX_IMAGE_PIXELS", 100)  # after the load: found by a worker, when streamed
    with pytest.raises(ArchkdError) as e:
        for _ in d.train.batches(32, device=torch.device("cpu")):
            pass
    assert "\n" not in str(e.value) and str(e.value).startswith(f"image {tmp_path / 'd' / 'train/b/zz.png'} is 20×20")


# 6. the normalisation note without a teacher


def test_normalisation_note_without_a_teacher():
    assert "give the teacher's own with teacher.mean=[...] teacher.std=[...]" in load_data("digits").normalize_note
    note = load_data("digits", teacher=False).normalize_note
    assert "teacher's own" not in note
    assert note.endswith("— the trained model's checkpoint records it; set it with teacher.mean=[...] "
                         "teacher.std=[...]")


# corrupt images: still an error naming the file, or skipped with a warning


def test_corrupt_image_is_an_error_or_skipped(tmp_path):
    _write(tmp_path / "d", {**_plain(), "train/b/zz.png": b"\x89PNG\r\n\x1a\n garbage"})
    with pytest.raises(ArchkdError, match=r"cannot decode image .*zz.png .*data.skip_corrupt=true"):
        load_data(str(tmp_path / "d"), CFG, cache_dir=str(tmp_path / "c"))
    with pytest.warns(ArchkdWarning, match=r"skipping undecodable image .*zz.png"):
        d = load_data(str(tmp_path / "d"), DataConfig(val_fraction=0.25, skip_corrupt=True),
                      cache_dir=str(tmp_path / "c"))
    assert len(d.train) + len(d.val) == 12
