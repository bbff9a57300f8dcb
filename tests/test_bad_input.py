"""The bad-input suite: every case is a real command line that must end with exit status 2 and one line on stderr,
``archkd: error: <problem> — <fix>``, with no traceback, and leave every file of a finished run and of the caches as
it was. The documentation lists these cases (docs/bad-input.md); add a row to ``CASES`` and to that table for each
new one-line error.

The runs directory holds a finished run named ``kept`` and each case runs under that same name: a failing re-run
must not touch what the earlier run computed.
"""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from archkd.cli import main
from conftest import assert_nothing_lost, cli_error, snapshot


class Ctx:
    """Files the cases point at, made once per module in ``root``."""

    def __init__(self, root: Path, teacher: str) -> None:
        self.root, self.teacher = root, teacher
        self.runs = root / "runs"

    def file(self, name: str, data: bytes | str = b"") -> str:
        p = self.root / "inputs" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(p)

    def npz(self, name: str, **arrays) -> str:
        p = self.root / "inputs" / f"{name}.npz"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez(p, **arrays)
        return str(p)

    def images(self, name: str, corrupt: bool = False) -> str:
        from PIL import Image

        root = self.root / "inputs" / name
        rng = np.random.default_rng(0)
        for c in ("cat", "dog"):
            (root / c).mkdir(parents=True, exist_ok=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
        if corrupt:
            (root / "dog" / "3.png").write_bytes(b"not a png at all")
        return str(root)

    def script(self, name: str, in_channels: int, num_classes: int, size: int, meta: str | None = None) -> str:
        from archkd.models import create_model

        m = create_model("resnet8", num_classes=num_classes, in_channels=in_channels).eval()
        p = self.root / "inputs" / f"{name}.pt"
        p.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.trace(m, torch.zeros(1, in_channels, size, size)).save(str(p))
        if meta:
            p.with_suffix(".json").write_text(meta)
        return str(p)

    def factory(self, body: str) -> str:
        mod = self.root / "inputs" / "factories" / "bad_teachers.py"
        mod.parent.mkdir(parents=True, exist_ok=True)
        mod.write_text(body)
        return "bad_teachers"


FACTORIES = """
from archkd.models import create_model

def raises(**kw):
    raise ValueError('depth must be even')

def resnet(num_classes=10, in_channels=1):
    return create_model('resnet8', num_classes=num_classes, in_channels=in_channels)

def not_a_model():
    return 42
"""


def _digits_like(rng: np.random.Generator, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    return rng.random((n, 8, 8)), rng.integers(0, 2, n)


def _evil_cifar(c: Ctx) -> str:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {c.root / 'pwned'}",))

    folder = c.root / "inputs" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": Evil()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, f)
    return str(folder)


def _rgb_checkpoint(c: Ctx) -> str:
    from archkd.distill.checkpoint import save_checkpoint
    from archkd.models import create_model, model_spec

    m = create_model("resnet8", num_classes=10, in_channels=3)
    p = c.root / "inputs" / "cifar_student.pt"
    save_checkpoint(p, m, spec=model_spec(m), extra={"input_shape": [3, 32, 32], "preprocessing": {
        "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26], "scale": "uint8/255"}})
    return str(p)


def _bad_zip(c: Ctx) -> str:
    return c.file("images.zip", b"PK\x03\x04 this is not a zip")


def _wrong_weights(c: Ctx) -> str:
    from archkd.models import create_model

    p = c.root / "inputs" / "wide.pt"
    torch.save(create_model("resnet8", num_classes=7, in_channels=1).state_dict(), p)
    return str(p)


def _factory_weights(c: Ctx) -> str:
    from archkd.models import create_model

    p = c.root / "inputs" / "fits.pt"
    torch.save(create_model("resnet8", num_classes=10, in_channels=1).state_dict(), p)
    return str(p)


R = np.random.default_rng(0)
X, Y = _digits_like(R)
Case = tuple[str, Callable[[Ctx], list[str]], str]
T = "--teacher"

CASES: list[Case] = [
    # configuration and flags
    ("unknown key", lambda c: ["demo", "serach.n_trials=3"], "did you mean 'search.n_trials'?"),
    ("override without =", lambda c: ["search", T, c.teacher, "epochs3"], "cannot read override"),
    ("value of the wrong type", lambda c: ["distill", T, c.teacher, "train.epochs=abc"], "train.epochs"),
    ("closed choice", lambda c: ["distill", T, c.teacher, "train.optimizer=adamm"], "train.optimizer"),
    ("unknown sampler", lambda c: ["search", T, c.teacher, "--method", "bogus"], "bogus"),
    ("unknown student", lambda c: ["distill", T, c.teacher, "--student", "resnet9000"], "resnet9000"),
    ("missing config file", lambda c: ["distill", "--config", str(c.root / "nope.yaml")], "nope.yaml"),
    ("config file not YAML", lambda c: ["distill", "--config", c.file("bad.yaml", "a: [1, 2\n")], "bad.yaml"),
    ("batch size 0", lambda c: ["distill", T, c.teacher, "--batch-size", "0"], "'train.batch_size' is 0"),
    ("epochs 0", lambda c: ["distill", T, c.teacher, "--epochs", "0"], "'train.epochs' is 0"),
    ("negative learning rate", lambda c: ["distill", T, c.teacher, "train.lr=-1"], "'train.lr' is -1"),
    ("top-k -1", lambda c: ["search", T, c.teacher, "--top-k", "-1"], "'search.top_k' is -1"),
    ("negative params budget", lambda c: ["search", T, c.teacher, "budget.max_params=-5"], "'budget.max_params' is -5"),
    ("negative latency budget", lambda c: ["search", T, c.teacher, "budget.max_latency_ms=-2"],
     "'budget.max_latency_ms' is -2"),
    ("fraction above 1", lambda c: ["search", T, c.teacher, "train.data_fraction=1.5"], "a fraction is at most 1"),
    ("zero trials", lambda c: ["search", T, c.teacher, "--n-trials", "0"], "'search.n_trials' is 0"),
    ("val fraction 0", lambda c: ["distill", T, c.teacher, "data.val_fraction=0"], "'data.val_fraction' is 0"),
    ("run name with ..", lambda c: ["distill", T, c.teacher, "--name", "../escape"], "is not a single folder name"),
    ("absolute run name", lambda c: ["distill", T, c.teacher, "--name", "/tmp/abs"], "is not a single folder name"),
    ("runs dir is a file", lambda c: ["teacher", "train", "--runs-dir", c.file("not_a_dir")],
     "cannot write the run directory"),
    # data
    ("data path missing", lambda c: ["distill", T, c.teacher, "--data", str(c.root / "none")], "data path not found"),
    ("unsupported data format", lambda c: ["distill", T, c.teacher, "--data", c.file("d.csv", "a,b")],
     "unsupported data format"),
    ("npz with NaN", lambda c: ["teacher", "train", "--data", c.npz("nan", x=np.where(
        np.arange(X.size).reshape(X.shape) == 5, np.nan, X), y=Y)], "NaN or infinite"),
    ("npz with too few labels", lambda c: ["teacher", "train", "--data", c.npz("short", x=X, y=Y[:-3])],
     "labels for 40 images"),
    ("npz negative label", lambda c: ["teacher", "train", "--data", c.npz("neg", x=X, y=np.where(
        np.arange(40) == 2, -1, Y))], "negative label -1"),
    ("npz fractional labels", lambda c: ["teacher", "train", "--data", c.npz("frac", x=X, y=Y + 0.5)],
     "non-integer labels"),
    ("npz label beyond its classes", lambda c: ["teacher", "train", "--data", c.npz(
        "beyond", x=X, y=np.where(np.arange(40) == 0, 7, Y), classes=np.array(["a", "b"]))], "names only 2"),
    ("npz too small", lambda c: ["teacher", "train", "--data", c.npz("tiny", x=X[:6], y=Y[:6])],
     "has only"),
    ("corrupt image in a folder", lambda c: ["teacher", "train", "--data", c.images("corrupt", corrupt=True)],
     "cannot decode image"),
    ("folder without images", lambda c: ["teacher", "train", "--data", str((c.root / "inputs" / "empty").mkdir(
        parents=True, exist_ok=True) or c.root / "inputs" / "empty")], "no images found"),
    ("broken zip", lambda c: ["teacher", "train", "--data", _bad_zip(c)], "not a valid zip file"),
    ("CIFAR pickle that runs code", lambda c: ["teacher", "train", "--data", _evil_cifar(c)], "refusing to load"),
    ("grayscale data, RGB normalisation", lambda c: ["teacher", "train", "teacher.mean=[0.5,0.5,0.5]",
                                                     "teacher.std=[0.2,0.2,0.2]"],
     "normalisation is for 3 channels (RGB) but the data has 1 channel (grayscale)"),
    # teachers
    ("no teacher", lambda c: ["distill"], "no teacher given"),
    ("teacher file missing", lambda c: ["distill", T, str(c.root / "missing.pt")], "teacher file not found"),
    ("teacher file unreadable", lambda c: ["distill", T, c.file("garbage.pt", b"garbage")], "cannot load teacher"),
    ("plain state dict as teacher", lambda c: ["distill", T, _factory_weights(c)], "plain state dict"),
    ("factory not importable", lambda c: ["distill", T, "no_such_module:build"], "cannot import teacher factory"),
    ("factory that raises", lambda c: ["distill", T, f"{c.factory(FACTORIES)}:raises", "--teacher-weights",
                                       _factory_weights(c)], "raised ValueError: depth must be even"),
    ("factory without weights", lambda c: ["distill", T, f"{c.factory(FACTORIES)}:resnet"], "needs weights"),
    ("factory returns no model", lambda c: ["distill", T, f"{c.factory(FACTORIES)}:not_a_model", "--teacher-weights",
                                            _factory_weights(c)], "returned int"),
    ("weights that do not fit", lambda c: ["distill", T, f"{c.factory(FACTORIES)}:resnet", "--teacher-weights",
                                           _wrong_weights(c)], "2 of another shape (first: head.fc.weight is (7, 64) in the file but (10, 64)"),
    ("kwargs for a file teacher", lambda c: ["distill", T, c.teacher, "teacher.kwargs={depth: 2}"],
     "teacher.kwargs were given"),
    ("teacher with other classes", lambda c: ["distill", T, c.script("five", 1, 5, 8)],
     "teacher predicts 5 classes but the data has 10"),
    ("teacher for other images", lambda c: ["distill", T, c.script("rgb", 3, 10, 32)],
     "teacher cannot run on the data's 1×8×8 inputs"),
    ("teacher for RGB, data grayscale", lambda c: ["distill", T, c.script(
        "rgbmeta", 3, 10, 8, '{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}')], "3 channels (RGB) but the data has 1"),
    ("feature KD from TorchScript", lambda c: ["distill", T, c.script("ts", 1, 10, 8),
                                               "distill.features=[{loss: fitnet, student: layer1, teacher: layer1}]"],
     "feature losses need the teacher's internals"),
    ("feature loss not a mapping", lambda c: ["distill", T, c.teacher, "distill.features=[fitnet]"],
     "distill.features[0] is 'fitnet', not a mapping"),
    ("feature loss with an unknown key", lambda c: ["distill", T, c.teacher, "distill.features=[{los: fitnet}]"],
     "unknown config key 'distill.features[0].los'"),
    ("unknown flag", lambda c: ["distill", T, c.teacher, "--epohcs", "3"], "unrecognized arguments: --epohcs"),
    # search, export, measure
    ("impossible budget", lambda c: ["search", T, c.teacher, "--max-params", "50"], "can meet the budget"),
    ("unknown latency runtime", lambda c: ["search", T, c.teacher, "budget.latency_runtime=tflite"], "tflite"),
    ("export of a missing checkpoint", lambda c: ["export", str(c.root / "nope.pt")], "checkpoint not found"),
    ("export of a CIFAR student without --data", lambda c: ["export", _rgb_checkpoint(c)],
     "takes 3×32×32 inputs but data 'digits' is 1×8×8"),
    ("measure an unknown model", lambda c: ["measure", "resnet9000"], "resnet9000"),
    ("report of a folder without results", lambda c: ["report", str(c.root / "inputs")], "no results.json in"),
    ("unknown pre-screen proxy", lambda c: ["search", T, c.teacher, "search.prescreen.proxy=bogus"],
     "'search.prescreen.proxy' is 'bogus'"),
    ("DisWOT pre-screen with a TorchScript teacher", lambda c: ["search", T, c.script("pts", 1, 10, 8),
                                                                 "search.prescreen.proxy=diswot"],
     "which this teacher does not expose"),
    # generic teacher (GTN)
    ("generic teacher over a space without a supernet", lambda c: ["teacher", "generic", "--space", "mnas"],
     "declares no largest network"),
    ("generic teacher with an unknown pool source", lambda c: ["teacher", "generic", "--pool", "random8"],
     "is neither random:N, space, nor a file"),
    ("generic teacher pool from another space", lambda c: ["teacher", "generic", "--pool", c.file(
        "nago_results.json", '{"search": {"space": "nago"}, "trials": []}')], "is a search of space 'nago'"),
    ("generic teacher fine-tuned from TorchScript", lambda c: ["teacher", "generic", T, c.script("gts", 1, 10, 8)],
     "needs an archkd checkpoint"),
    # latency predictor
    ("latency predictor file that is not one", lambda c: ["search", T, c.teacher, "--max-latency", "1ms",
                                                          "budget.latency_source=predicted", "budget.latency_predictor="
                                                          + c.file("pred.json", "[1, 2]")],
     "is not an archkd latency predictor"),
    ("latency predictor for another runtime", lambda c: ["search", T, c.teacher, "--max-latency", "1ms",
                                                         "--runtime", "torch", "budget.latency_source=predicted",
                                                         "budget.latency_predictor=" + c.file(
                                                             "ort.json", '{"runtime": "onnxruntime"}')],
     "but the budget measures torch"),
    ("unknown latency source", lambda c: ["search", T, c.teacher, "budget.latency_source=guessed"],
     "'budget.latency_source' is 'guessed'"),
    ("latency predictor from too few samples", lambda c: ["predictor", "--samples", "3"], "at least 5 sampled"),
    ("baseline over the budget", lambda c: ["search", T, c.teacher, "--top-k", "1", "--max-params", "30k",
                                            "--baseline", "resnet20"], "search.baseline=resnet20 is over the budget"),
    ("baseline without finalists", lambda c: ["search", T, c.teacher, "--baseline", "resnet8"], "search.top_k is 0"),
    ("unknown tracker", lambda c: ["distill", T, c.teacher, "train.loggers=[tensorbord]"], "did you mean 'tensorboard'"),
    ("blockwise fidelity over a space without stages", lambda c: ["search", T, c.teacher, "--fidelity", "blockwise",
                                                                   "--space", "nago"], "needs a stage-wise student"),
    ("blockwise fidelity of a CE-guided search", lambda c: ["search", T, c.teacher, "--fidelity", "blockwise",
                                                           "--guide", "ce"], "cannot be combined with search.guide=ce"),
    ("unknown trial fidelity", lambda c: ["search", T, c.teacher, "--fidelity", "blockwize"], "'search.fidelity'"),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, teacher_ckpt) -> Ctx:
    root = tmp_path_factory.mktemp("bad_input")
    c = Ctx(root, teacher_ckpt)
    kept = c.runs / "kept"
    shutil.copytree(Path(teacher_ckpt).parent.parent, kept)  # a finished run: checkpoints, config, log, metrics
    c.factory(FACTORIES)
    return c


@pytest.mark.parametrize("case, args, text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(ctx, capsys, monkeypatch, case, args, text):
    monkeypatch.syspath_prepend(str(ctx.root / "inputs" / "factories"))
    cache = Path(os.environ["ARCHKD_CACHE"])
    argv = args(ctx)
    before = snapshot(ctx.runs, cache)
    if argv[0] not in ("measure", "report"):  # verbs that take no run name
        argv += [] if "--runs-dir" in argv else ["--runs-dir", str(ctx.runs)]
        argv += [] if "--name" in argv else ["--name", "kept"]
    line = cli_error(argv, capsys)
    assert text in line, line
    assert_nothing_lost(before, snapshot(ctx.runs, cache))
    assert not (ctx.root / "pwned").exists()


def test_there_are_at_least_40_cases_and_the_docs_list_them():
    page = (Path(__file__).resolve().parents[1] / "docs" / "bad-input.md").read_text()
    assert len(CASES) >= 40
    missing = [name for name, _, _ in CASES if f"| {name} |" not in page]
    assert not missing, f"the bad-input table of docs/bad-input.md lacks {missing}"


def test_a_corrupt_image_can_be_skipped_with_a_warning(ctx, capsys):
    with pytest.raises(SystemExit) as e:
        main(["teacher", "train", "--data", ctx.images("skip", corrupt=True), "--runs-dir", str(ctx.runs),
              "--name", "skip", "teacher.train.epochs=1", "data.skip_corrupt=true", "teacher.arch=resnet8"])
    err = capsys.readouterr().err
    assert e.value.code == 0, err
    assert err.count("archkd: warning: skipping undecodable image") == 1 and "dog/3.png" in err
    assert "warning: skipping undecodable image" in (ctx.runs / "skip" / "log.txt").read_text()
