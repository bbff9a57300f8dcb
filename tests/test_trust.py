"""Trust (issue 10, first items): safe loading of CIFAR pickles, run names that stay inside the runs directory, and
`archkd export <checkpoint>` as the README writes it."""
import os
import pickle

import numpy as np
import pytest

from archkd.cli import main
from archkd.data.sources import load_cifar_python
from archkd.errors import ArchkdError


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickles_cannot_run_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": _Evil(marker)}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(ArchkdError, match="refusing to load .*posix.system|refusing to load .*os.system"):
        load_cifar_python(folder)
    assert not marker.exists()  # the payload never ran


def test_export_takes_the_checkpoint_as_a_positional_path(tmp_path, capsys, teacher_ckpt):
    out = tmp_path / "exported"
    with pytest.raises(SystemExit) as e:
        main(["export", teacher_ckpt, "--runs-dir", str(tmp_path), "--out", str(out)])
    assert e.value.code == 0, capsys.readouterr().err
    assert {p.suffix for p in out.iterdir()} >= {".onnx", ".json"}


def test_rerunning_a_killed_distill_resumes_and_a_finished_one_is_kept(tmp_path, teacher_ckpt):
    import subprocess
    import sys

    import torch

    from conftest import kill_after_checkpoint

    def args(name):
        return [sys.executable, "-m", "archkd", "distill", "--teacher", teacher_ckpt, "--student", "resnet8",
                "--epochs", "4", "--name", name, "--runs-dir", str(tmp_path), "threads=1",
                f"cache_dir={tmp_path / 'cache'}"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(args("ref"), capture_output=True, text=True, env=env, timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]
    last = tmp_path / "killed" / "student" / "last.pt"
    epoch = kill_after_checkpoint(args("killed"), last, env)
    again = subprocess.run(args("killed"), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and f"resumed from {last} at epoch {epoch + 2}" in again.stdout
    a = torch.load(tmp_path / "ref" / "student" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["val_acc"] == b["val_acc"] and all(torch.equal(a["state_dict"][k], b["state_dict"][k])
                                                for k in a["state_dict"])
    mtime = last.stat().st_mtime
    done = subprocess.run(args("killed"), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "already finished" in done.stdout and last.stat().st_mtime == mtime


def test_every_training_verb_writes_results_and_report(tmp_path, capsys, teacher_ckpt):
    import json

    for args, key in ((["teacher", "train", "--epochs", "1"], "teacher"),
                      (["distill", "--teacher", teacher_ckpt, "--epochs", "1"], "final")):
        name = args[0]
        with pytest.raises(SystemExit) as e:
            main(args + ["--runs-dir", str(tmp_path), "--name", name, "threads=1"])
        assert e.value.code == 0, capsys.readouterr().err
        capsys.readouterr()
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert results["command"].startswith("archkd ") and results[key]["val_acc"] > 0
        assert [r["epoch"] for r in results["metrics"]] == [1]
        assert (tmp_path / name / "report.html").stat().st_size > 1000


def _folder(root, n_per_class=6, classes=("a", "b", "c"), test_classes=None, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for c in names:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_an_image_replaced_in_place_is_decoded_again(tmp_path):
    """The decoded-image cache used to be keyed by the first 1,000 training files' mtimes: test/ was never looked at."""
    from PIL import Image

    from archkd.data import load_data

    root = _folder(tmp_path / "imgs")
    first = load_data(str(root), cache_dir=str(tmp_path / "cache"))
    target = root / "test" / "b" / "2.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(target)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))  # an old mtime: a copy that keeps the original's date
    again = load_data(str(root), cache_dir=str(tmp_path / "cache"))
    changed = [i for i in range(len(again.test)) if not np.array_equal(again.test.images[i].numpy(),
                                                                       first.test.images[i].numpy())]
    assert len(changed) == 1 and (again.test.images[changed[0]].numpy() == 7).all()


def test_normalisation_is_estimated_from_a_random_sample_and_said(tmp_path, capsys, monkeypatch):
    """Class-sorted folders: the first N images used to be the first classes only."""
    import archkd.data as data_mod
    from archkd.data import load_data

    from PIL import Image

    root = tmp_path / "sorted"
    for c, value in (("a", 0), ("b", 0), ("c", 250)):  # a dark first half, a bright last class
        (root / c).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(np.full((8, 8), value, np.uint8)).save(root / c / f"{i}.png")
    monkeypatch.setattr(data_mod, "STATS_SAMPLE", 20)  # fewer than the training images, as with real data
    d = load_data(str(root), cache_dir=str(tmp_path / "cache"))
    whole = d.train.images.float().mean().item() / 255
    assert abs(d.normalize.mean[0] - whole) < 0.15, (d.normalize.mean, whole)  # the first 20 would give 0.0
    assert "seeded random sample of 20 of" in d.normalize_note and "teacher.mean=" in d.normalize_note
    with pytest.raises(SystemExit) as e:
        main(["teacher", "train", "--data", str(root), "--runs-dir", str(tmp_path), "--name", "n",
              "teacher.train.epochs=1", "teacher.arch=resnet8"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.count("normalisation estimated from a seeded random sample") == 1


def test_a_test_split_missing_a_class_is_a_warning(tmp_path, capsys):
    root = _folder(tmp_path / "imgs", test_classes=("a", "b"))
    with pytest.raises(SystemExit) as e:
        main(["teacher", "train", "--data", str(root), "--runs-dir", str(tmp_path), "--name", "n",
              "teacher.train.epochs=1", "teacher.arch=resnet8", "teacher.train.bn_recalibration=64"])  # no BN warning
    err = capsys.readouterr().err
    assert e.value.code == 0
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "archkd: warning: the test split has no images of 1 of 3 classes ('c'); test accuracy does not cover them — "
        "add test images of every class"]
    assert "no images of 1 of 3 classes" in (tmp_path / "n" / "log.txt").read_text()


def test_distill_reports_the_teacher_on_both_splits(tmp_path, capsys, teacher_ckpt):
    import json

    with pytest.raises(SystemExit) as e:
        main(["distill", "--teacher", teacher_ckpt, "--epochs", "1", "--runs-dir", str(tmp_path), "--name", "d"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "d" / "results.json").read_text())
    t = r["teacher"]
    assert 0 < t["val_acc"] <= 1 and 0 < t["test_acc"] <= 1 and r["final"]["teacher_test_acc"] == t["test_acc"]
    assert f"val acc {t['val_acc']:.4f} (val: held out of the training images" in out
    assert f"test acc {t['test_acc']:.4f} (test split)" in out
    assert "Teacher test acc" in (tmp_path / "d" / "report.html").read_text()


def test_a_damaged_teacher_cache_is_one_warning_line(tmp_path, capsys, teacher_ckpt):
    import torch

    args = ["distill", "--teacher", teacher_ckpt, "--epochs", "1", "--runs-dir", str(tmp_path),
            f"cache_dir={tmp_path / 'cache'}", "train.bn_recalibration=64"]  # no short-training BN warning
    with pytest.raises(SystemExit):
        main(args + ["--name", "a"])
    capsys.readouterr()
    f = next((tmp_path / "cache").rglob("val.pt"))
    d = torch.load(f, weights_only=True)
    d["logits"][0, 0] += 1
    torch.save(d, f)
    with pytest.raises(SystemExit) as e:
        main(args + ["--name", "b"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 0 and len(err) == 1
    assert err[0] == f"archkd: warning: teacher cache {f} failed its integrity check; recomputing its logits"


def test_a_factory_teacher_takes_kwargs(tmp_path, monkeypatch):
    import torch

    from archkd.models import create_model
    from archkd.teacher import load_teacher

    (tmp_path / "kw_teacher.py").write_text(
        "from archkd.models import create_model\n"
        "def build(num_classes, in_channels=3):\n    return create_model('resnet8', num_classes=num_classes, "
        "in_channels=in_channels)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.manual_seed(0)
    ref = create_model("resnet8", num_classes=10, in_channels=1).eval()
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, tmp_path / "w.pt")  # saved from DDP
    t = load_teacher("kw_teacher:build", weights=str(tmp_path / "w.pt"), kwargs={"num_classes": 10, "in_channels": 1})
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(t.module(x), ref(x)) and t.info["kwargs"] == {"num_classes": 10, "in_channels": 1}
