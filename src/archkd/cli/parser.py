"""The ``archkd`` command line: every verb's flags (shorthands for config keys) and their parsing."""
from __future__ import annotations

import argparse

from archkd.errors import ArchkdError


# flag dest -> config key
FLAG_KEYS = {
    "name": "name", "seed": "seed", "device": "device", "runs_dir": "runs_dir", "data": "data.source",
    "teacher": "teacher.path", "teacher_weights": "teacher.weights", "arch": "teacher.arch",
    "student": "student.arch", "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "method": "search.method", "space": "search.space", "n_trials": "search.n_trials",
    "trial_epochs": "search.epochs", "fidelity": "search.fidelity", "storage": "search.storage", "study": "search.study_name", "max_params": "budget.max_params",
    "max_flops": "budget.max_flops", "max_latency": "budget.max_latency_ms", "runtime": "budget.latency_runtime",
    "latency_target": "search.reward_target", "guide": "search.guide", "top_k": "search.top_k",
    "baseline": "search.baseline",
    "checkpoint": "export.checkpoint", "process": "distill.process", "replay": "process.replay", "tau": "process.tau",
    "transform": "process.transform", "quantize": "export.quantize", "student_init": "student.init", "pool": "generic.pool",
    "generic_space": "generic.space", "condition_weight": "generic.condition_weight",
    "samples": "budget.latency_predictor_samples", "predictor_out": "budget.latency_predictor",
    "latency_threads": "budget.latency_threads", "threads": "threads",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (every option; see 'archkd config')")
    p.add_argument("--name", help="run name: outputs go to <runs_dir>/<name>/")
    p.add_argument("--runs-dir", dest="runs_dir", help="parent directory of runs (default: runs)")
    p.add_argument("--seed", type=int, help="seed of data splits, initialisation and sampling (seed; default 0)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--data", help="digits | CIFAR python folder | ImageFolder dir or .zip | .npz")
    p.add_argument("--threads", type=int, help="torch CPU threads of this process (threads; default $OMP_NUM_THREADS "
                   "if set, else the idle cores)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.epochs=5")


def _teacher_student(p: argparse.ArgumentParser, teacher_help: str) -> None:
    p.add_argument("--teacher", help=teacher_help)
    p.add_argument("--teacher-weights", dest="teacher_weights", help="state dict for a module:factory teacher")
    p.add_argument("--student", help="registry architecture (e.g. resnet8x4)")
    p.add_argument("--student-checkpoint", dest="student_checkpoint",
                   help="take the architecture from a checkpoint (e.g. a search trial's best.pt)")
    p.add_argument("--student-init", dest="student_init",
                   help="scratch (default: fresh weights) or checkpoint (start from --student-checkpoint's weights)")


def _count(v: str) -> int:
    """A count with an optional SI suffix: 30000, 30k, 1.5M, 2G."""
    t = v.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    try:
        return int(round(float(t[:-1] if scale > 1 else t) * scale))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read count '{v}' (use e.g. 30000, 30k or 1M)") from None


def _latency(v: str) -> float:
    v = v.strip().lower()
    try:
        return float(v[:-2]) if v.endswith("ms") else float(v[:-1]) * 1000 if v.endswith("s") else float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read latency '{v}' (use e.g. 5ms)") from None


class _Parser(argparse.ArgumentParser):
    """argparse with archkd's one-line errors: ``archkd: error: <problem> — <fix>``, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        verb = self.prog.removeprefix("archkd").strip()  # the CLI prints "archkd: error:" itself
        raise ArchkdError(f"{verb}: {message}" if verb else message, f"see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="archkd", description="Architecture-aware knowledge distillation: find, "
                                 "distill and export the best small student for a teacher and a budget.")
    from archkd import __version__

    ap.add_argument("--version", action="version", version=f"archkd {__version__}")
    sub = ap.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("demo", help="teacher → KD search → distill → export → report on digits (about a minute on 2 CPU cores)")
    _common(p)
    p.add_argument("--teacher", help="use this teacher instead of training one")
    p.add_argument("--n-trials", dest="n_trials", type=int, help="students the search trains (search.n_trials)")
    p.add_argument("--max-params", dest="max_params", type=_count, help="e.g. 30k, 1M")

    p = sub.add_parser("teacher", help="teacher operations")
    tsub = p.add_subparsers(dest="teacher_verb", metavar="ACTION")
    t = tsub.add_parser("train", help="train a registry architecture as a teacher")
    _common(t)
    t.add_argument("--arch", help="registry architecture, e.g. resnet56")
    t.add_argument("--epochs", dest="teacher_epochs", type=int, help="teacher training epochs (teacher.train.epochs)")
    t = tsub.add_parser("generic", help="GTN: train one generic teacher against a weight-sharing supernet of a pool "
                        "of students (resumes when re-run)")
    _common(t)
    t.add_argument("--arch", help="teacher architecture trained from scratch (default resnet20)")
    t.add_argument("--teacher", help="fine-tune this teacher (an archkd checkpoint) instead")
    t.add_argument("--epochs", dest="teacher_epochs", type=int, help="teacher training epochs (teacher.train.epochs)")
    t.add_argument("--space", dest="generic_space", help="space of the pool's students (default stages)")
    t.add_argument("--pool", action="append", help="random:N (default random:8), space (all of it), or a search's "
                   "results.json[:K] / YAML list of configurations; repeat to combine")
    t.add_argument("--condition-weight", dest="condition_weight", type=float,
                   help="λ of the teacher's conditioning term (default 0.1)")
    t.add_argument("--max-params", dest="max_params", type=_count, help="random pool students within this size")

    p = sub.add_parser("distill", help="distill a student from a teacher and report its test accuracy")
    _common(p)
    _teacher_student(p, "TorchScript file, archkd checkpoint, module:factory, hf:<folder or hub id> or timm:name")
    p.add_argument("--epochs", type=int, help="epochs of the student's distillation (train.epochs)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="training batch size (train.batch_size)")
    p.add_argument("--lr", type=float, help="peak learning rate (train.lr)")

    p.add_argument("--process", help="replay a searched process (runs/<name>/process.pt) instead of vanilla KD")
    p.add_argument("--replay", help="searched (default), final (constant α_T) or equal (all weights 1)")
    p.add_argument("--tau", type=float, help="skip pathways whose replay weight is below τ")

    p = sub.add_parser("process", help="DistPro: search a distillation process (pathway weights over time)")
    psub = p.add_subparsers(dest="process_verb", metavar="ACTION")
    ps = psub.add_parser("search", help="learn the pathway-weight process for a teacher and a student")
    _common(ps)
    _teacher_student(ps, "archkd checkpoint or module:factory (stage features are needed)")
    ps.add_argument("--epochs", dest="process_epochs", type=int, help="search epochs (default 2)")
    ps.add_argument("--transform", help="attention (default), conv1x1 or linear")

    p = sub.add_parser("search", help="KD-guided student search under a budget (resumes when re-run)")
    _common(p)
    p.add_argument("--teacher", help="TorchScript file, archkd checkpoint, module:factory, hf:<folder or hub id> or timm:name (teacher.path)")
    p.add_argument("--teacher-weights", dest="teacher_weights", help="state dict for a module:factory teacher")
    p.add_argument("--method", help="random, akd (LSTM controller, PPO/REINFORCE), tpe or gp (Optuna, constraint-aware), "
                   "autokd (NAGO family + KD recipe, TPE with Hyperband), autokd-gp (GP-based BO) or trade (TuRBO over "
                   "several families)")
    p.add_argument("--guide", help="kd (KD-trained accuracy, default) or ce (NAS-then-KD baseline)")
    p.add_argument("--top-k", dest="top_k", type=int, help="re-train the top-k with the full recipe and test them")
    p.add_argument("--baseline", help="with --top-k: also distil this hand-designed model (e.g. resnet8) the same way "
                   "and report what the search gained over it")
    p.add_argument("--epochs", type=int, help="epochs of the full recipe (train.epochs) for the top-k re-training")
    p.add_argument("--space", help="search space (default: stages)")
    p.add_argument("--n-trials", dest="n_trials", type=int,
                   help="students trained within budget, whoever trains them (search.n_trials; default 8)")
    p.add_argument("--trial-epochs", dest="trial_epochs", type=int,
                   help="epochs each trial trains its student (search.epochs; the full recipe is --epochs)")
    p.add_argument("--fidelity", help="trained (default: each trial KD-trains its student) or blockwise (each stage "
                   "trained alone against the teacher's stage, memoised across candidates; search.fidelity)")
    p.add_argument("--storage", help="Optuna storage shared by the workers: sqlite:///f.db (default: in the run "
                   "directory), journal:f.log (processes on one machine), postgresql://user@host/db (many machines)")
    p.add_argument("--study", help="study name in the storage (default: the run name); workers with the same join it")
    p.add_argument("--max-params", dest="max_params", type=_count, help="e.g. 30k, 1M")
    p.add_argument("--max-flops", dest="max_flops", type=_count, help="e.g. 5M, 1G")
    p.add_argument("--latency-target", dest="latency_target", type=_latency,
                   help="reward target T, e.g. 5ms: score = acc × (latency/T)^w (soft; hard with search.reward_mode=hard)")
    p.add_argument("--max-latency", dest="max_latency", type=_latency, help="hard latency budget, e.g. 5ms")
    p.add_argument("--runtime", help="latency runtime: onnxruntime (default) or torch")

    p = sub.add_parser("family", help="AutoKD: draw new students from a search's winning generator")
    fsub = p.add_subparsers(dest="family_verb", metavar="ACTION")
    f = fsub.add_parser("sample", help="draw N new members of the best trial's generator family (new graph seeds, the "
                        "search's width target); --train distills and tests each with the run's recipe")
    f.add_argument("run_dir", help="the run directory of a search over a generator space (runs/<name>)")
    f.add_argument("--n", type=int, default=5, help="members to draw (default 5)")
    f.add_argument("--train", action="store_true", help="distill and test each member with the run's recipe")
    f.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. train.epochs=20")

    p = sub.add_parser("measure", help="parameters, FLOPs/MACs, latency and peak memory of a model or checkpoint")
    p.add_argument("model", help="registry name or checkpoint path")
    p.add_argument("--input-shape", dest="input_shape", help="C,H,W (default 3,32,32 or the checkpoint's)")
    p.add_argument("--runtime", action="append", help="torch and/or onnxruntime (default both)")
    p.add_argument("--threads", type=int, help="intra-op threads of each runtime (measure.threads; default 1)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="batch of the timed input (measure.batch_size)")
    p.add_argument("--repeats", type=int, help="timed calls after warm-up; the median is reported (measure.repeats)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--device", help="cpu (default) or cuda[:N]")
    p.add_argument("--config", help="YAML config file (its measure.* keys)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. measure.repeats=100")

    p = sub.add_parser("predictor", help="fit this machine's latency predictor for a search space and report its "
                       "held-out accuracy (a search with budget.latency_source=predicted then uses it)")
    _common(p)
    p.add_argument("--space", help="search space (default stages); input shape and classes come from --data")
    p.add_argument("--runtime", help="onnxruntime (default) or torch")
    p.add_argument("--latency-threads", dest="latency_threads", type=int,
                   help="intra-op threads of the runtime being timed (budget.latency_threads; default 1)")
    p.add_argument("--samples", type=int, help="random architectures measured (default 100; 20%% held out)")
    p.add_argument("--out", dest="predictor_out", help="predictor file (default: this machine's cache entry)")

    p = sub.add_parser("export", help="export a checkpoint to ONNX + TorchScript with a parity check")
    _common(p)
    p.add_argument("checkpoint", nargs="?", help="checkpoint (default runs/<name>/student/best.pt)")
    p.add_argument("--out", help="output directory (default runs/<name>/export)")
    p.add_argument("--quantize", help="int8: also write an int8 ONNX model (static, calibrated on training images) "
                   "and compare it with fp32")
    p.add_argument("--force", action="store_true", help="replace an export of another checkpoint in the output folder")

    p = sub.add_parser("report", help="regenerate the self-contained HTML report of a run directory")
    p.add_argument("run_dir", help="a run directory (runs/<name>) holding results.json")
    p.add_argument("--config", help="YAML config file (threads=...; the report itself is the run's own)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. threads=1")

    p = sub.add_parser("config", help="print the resolved config (or --keys: every valid key)")
    _common(p)
    p.add_argument("--keys", action="store_true",
                   help="list every settable key with its type, default, range and help, instead of the config")
    return ap
