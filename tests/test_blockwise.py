"""Blockwise distillation (issue #29): stages trained alone against the teacher's stages, memoised, resumable,
deterministic, and ``--fidelity blockwise`` end to end."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from archkd.distill import BlockRecipe, BlockwiseScorer
from archkd.distill.blockwise import teacher_stages
from archkd.models import build_from_spec, create_model
from archkd.spaces import create_space

from conftest import cli_error

RECIPE = BlockRecipe(epochs=1, val_images=64)


def _student(data, depths=(1, 1, 1), widths=(8, 16, 16)):
    space = create_space("stages", widths=[8, 16], depths=[1, 2])
    config = {f"{k}_{i}": v for i in range(3) for k, v in (("depth", depths[i]), ("width", widths[i]), ("kernel", 3))}
    return build_from_spec(space.spec(config, data.input_shape, data.num_classes))


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return create_model("resnet8", num_classes=10, in_channels=1)


def test_two_candidates_sharing_a_stage_train_it_once(digits, teacher, tmp_path):
    scorer = BlockwiseScorer(teacher, "t", digits, tmp_path, RECIPE)
    a = scorer.score(_student(digits, widths=(8, 16, 16)))
    b = scorer.score(_student(digits, widths=(8, 16, 8)))  # the same first two stages, another last one
    assert (a.trained, a.reused) == (3, 0) and (b.trained, b.reused) == (1, 2)
    assert b.nsr[:2] == a.nsr[:2] and b.nsr[2] != a.nsr[2]
    assert len(list(scorer.library.glob("*.pt"))) == 4
    again = scorer.score(_student(digits, widths=(8, 16, 16)))
    assert (again.trained, again.score) == (0, a.score) and 0 < a.score <= 1


def test_the_score_is_a_function_of_the_seed(digits, teacher, tmp_path):
    scores = [BlockwiseScorer(teacher, "t", digits, tmp_path / str(i), RECIPE).score(_student(digits)) for i in range(2)]
    other = BlockwiseScorer(teacher, "t", digits, tmp_path / "s1", BlockRecipe(epochs=1, val_images=64, seed=1))
    assert scores[0].nsr == scores[1].nsr
    assert other.score(_student(digits)).nsr != scores[0].nsr


def test_a_torchscript_teacher_gives_the_same_stage_outputs_as_its_module(digits, teacher):
    x = torch.randn(4, *digits.input_shape)
    eager, shapes = teacher_stages(teacher, digits.input_shape)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(teacher, x), buf)  # as a TorchScript teacher arrives: loaded from a file
    buf.seek(0)
    script, script_shapes = teacher_stages(torch.jit.load(buf), digits.input_shape)
    assert shapes == script_shapes and len(shapes) == 3
    for a, b in zip(eager(x), script(x)):
        torch.testing.assert_close(a, b)


SCORE_ALL = """
import json, sys, torch
from archkd.data import load_data
from archkd.distill import BlockRecipe, BlockwiseScorer
from archkd.models import build_from_spec, create_model
from archkd.spaces import create_space

def score_all(root):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_data("digits", seed=0)
    scorer = BlockwiseScorer(create_model("resnet8", num_classes=10, in_channels=1), "t", data, root,
                             BlockRecipe(epochs=1, val_images=64))
    space = create_space("stages", widths=[8, 16], depths=[1, 2])
    out = []
    for w in ([8, 8, 8], [16, 8, 8], [16, 16, 8], [16, 16, 16]):
        c = {f"{k}_{i}": v for i in range(3) for k, v in (("depth", 1), ("width", w[i]), ("kernel", 3))}
        s = scorer.score(build_from_spec(space.spec(c, data.input_shape, 10)))
        out.append([s.score, s.trained])
    return out

if __name__ == "__main__":
    print(json.dumps(score_all(sys.argv[1])))
"""


def test_the_block_library_survives_sigkill(tmp_path):
    """Killed once its first block is saved, a re-run trains only what was missing and scores as an uninterrupted
    run does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-c", SCORE_ALL, str(killed)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline and not list(killed.glob("blockwise/*/blocks/*.pt")):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    kept = {f: f.stat().st_mtime_ns for f in killed.glob("blockwise/*/blocks/*.pt")}
    assert 1 <= len(kept) < 8
    resumed = json.loads(subprocess.run([sys.executable, "-c", SCORE_ALL, str(killed)], env=env, check=True,
                                        capture_output=True, text=True).stdout)
    scope: dict = {}
    exec(SCORE_ALL, scope)  # the uninterrupted run, in this process
    fresh = scope["score_all"](tmp_path / "fresh")
    assert [s for s, _ in resumed] == [s for s, _ in fresh]
    # 8 distinct stages (a stage is its configuration after a given width), of which the killed run finished some
    assert sum(n for _, n in fresh) == 8 and sum(n for _, n in resumed) == 8 - len(kept)
    assert all(f.stat().st_mtime_ns == t for f, t in kept.items())  # finished blocks were read, not redone


def test_search_with_blockwise_fidelity_end_to_end(tmp_path, teacher_ckpt, capsys):
    from archkd.cli import main

    runs = tmp_path / "runs"
    args = ["search", "--data", "digits", "--teacher", teacher_ckpt, "--runs-dir", str(runs), "--name", "bw",
            "--fidelity", "blockwise", "--n-trials", "4", "--trial-epochs", "1", "--top-k", "1", "--epochs", "1",
            "--max-params", "20k", "search.check_fidelity=0", "search.space_kwargs={widths: [8, 16], depths: [1, 2]}"]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0, capsys.readouterr().err
    res = json.loads((runs / "bw" / "results.json").read_text())
    trials = [t for t in res["trials"] if t["state"] == "COMPLETE"]
    assert res["search"]["fidelity"]["scored"] == "blockwise" and len(trials) == 4
    assert all(len(t["blockwise"]["nsr"]) == 3 and t["val_acc"] == t["blockwise"]["score"] and 0 < t["val_acc"] <= 1
               and t["params"] <= 20_000 for t in trials)
    assert sum(t["blockwise"]["reused"] for t in trials) > 0  # the space is small: later candidates share stages
    assert not (runs / "bw" / "trials").exists()  # no trial trained a whole student
    assert list((runs / "bw" / "final").glob("01_trial*/best.pt"))  # the finalist is distilled with the full recipe
    assert 0 <= res["top_k"][0]["test_acc"] <= 1
    out = capsys.readouterr().out
    assert "blockwise KD" in out
    # the same study continues rather than repeat; a trained-fidelity run under its name is refused
    line = cli_error([*args[:-2], "search.fidelity=trained"], capsys)
    assert "search.fidelity" in line or "definition" in line
