"""Run configuration: one typed tree that a YAML file, dotted overrides and CLI flags all set.

Why one tree: every verb (``teacher train``, ``distill``, ``search``, ``demo`` ...) reads the same sections, so a
YAML written for ``search`` also drives ``distill``, and the resolved tree saved in the run directory says exactly what
ran. Precedence, lowest first: defaults < YAML file < CLI flags < ``key.sub=value`` overrides. An unknown key is a user
error that names the closest valid key.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import yaml

from archkd.errors import ArchkdError


# α normalisations of DistPro pathway weights (archkd.process.normalize implements each)
Normalization = Literal["softmax", "softmax_bias", "sigmoid", "scaled_biased_softmax", "none"]


@dataclass
class AugmentConfig:
    """Batched, seeded augmentation. ``None`` means "pick per dataset" (digits: pad 1, no flip)."""

    # pixels of zero padding before a random crop back to size (null: the dataset's default)
    crop_padding: int | None = None
    flip: bool | None = None  # random horizontal flips (null: the dataset's default; off for digits)
    cutout: int = 0  # side in pixels of a random square zeroed per image (0: off)


@dataclass
class DataConfig:
    source: str = "digits"  # digits | a CIFAR python folder | an ImageFolder directory or .zip | an .npz file
    # share of the training images held out for validation (what searches and early stopping read)
    val_fraction: float = 0.1
    test_fraction: float = 0.2  # share held out as the test split when the source has none of its own
    image_size: int | None = None  # resize images to this side in pixels (null: keep the source's size)
    num_workers: int = 2  # background processes decoding images for a streamed dataset
    # decoded datasets up to this size are kept in memory; larger ones are streamed from disk
    max_in_memory_mb: int = 4096
    skip_corrupt: bool = False  # an image that does not decode: error (default) or skip it with a warning
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainConfig:
    """One training recipe; used for teachers, search trials (with fewer epochs) and final distillation."""

    epochs: int = 20  # passes over the (data_fraction of the) training images
    batch_size: int = 128  # images per optimisation step
    optimizer: Literal["sgd", "adamw"] = "sgd"  # sgd (with momentum) or adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD momentum (adamw keeps its own betas)
    nesterov: bool = True  # Nesterov momentum for SGD
    weight_decay: float = 5e-4  # L2 penalty (decoupled for adamw)
    # learning-rate schedule after warm-up: cosine to 0, step (milestones), or constant
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    # fractions of the run where the step schedule multiplies the rate by step_gamma
    step_milestones: list = field(default_factory=lambda: [0.5, 0.75])
    step_gamma: float = 0.1  # factor of each step-schedule decay
    warmup_epochs: float = 0.0  # linear learning-rate warm-up length in epochs (may be fractional)
    label_smoothing: float = 0.0  # label smoothing of the cross-entropy term
    grad_clip: float | None = None  # clip the global gradient norm to this value (null: no clipping)
    eval_every: int = 1  # validate every N epochs (the last epoch always)
    # share of the training images used (a seeded subset, the same for every run with this seed)
    data_fraction: float = 1.0
    # time a few steps of the student under fp32/bf16 × contiguous/channels_last and train with the fastest (cached
    # per machine and model); false: the fixed default below
    autotune: bool = True
    # bf16 autocast (null: the tuner decides for the student; the teacher and the fixed default: on for CUDA only)
    amp: bool | None = None
    channels_last: bool | None = None  # channels-last memory format (null: the tuner decides; fixed default: CUDA)
    # training images that re-estimate BatchNorm statistics before each validation pass (0: off); see recalibrate_bn
    bn_recalibration: int = 0
    # also log each epoch's scalars to TensorBoard under runs/<name>/tensorboard/<run> (extra: tensorboard)
    tensorboard: bool = False


@dataclass
class TeacherConfig:
    """Where the teacher comes from: a file (archkd checkpoint, TorchScript), ``module:factory``, ``timm:name``,
    or a registry architecture to train with ``archkd teacher train``."""

    # the teacher: archkd checkpoint, TorchScript file, module:factory or timm:name (null: none given)
    path: str | None = None
    arch: str = "resnet20"  # registry architecture that 'archkd teacher train' trains
    weights: str | None = None  # state dict loaded into a module:factory or timm: teacher
    kwargs: dict = field(default_factory=dict)  # constructor arguments of a module:factory or timm: teacher
    # per-channel input mean the teacher was trained with (null: from its checkpoint or estimated)
    mean: list | None = None
    # per-channel input std the teacher was trained with (null: from its checkpoint or estimated)
    std: list | None = None
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=0.1))


@dataclass
class StudentConfig:
    """The student: a registry ``arch`` (with ``kwargs``), or the architecture of ``checkpoint``; ``init``: start
    from fresh weights (scratch) or from the checkpoint's own (checkpoint, e.g. a GTN pool member's supernet weights)."""

    arch: str = "resnet8"  # registry architecture of the student (see 'archkd config --keys' for the names)
    kwargs: dict = field(default_factory=dict)  # constructor arguments of the student architecture
    # take the student's architecture (and with init=checkpoint its weights) from this checkpoint
    checkpoint: str | None = None
    init: Literal["scratch", "checkpoint"] = "scratch"  # fresh weights, or the student checkpoint's own


@dataclass
class GenericConfig:
    """GTN: a generic teacher trained once against a weight-sharing supernet of a space's students.

    ``pool``: the students it is conditioned on, a list of sources: ``random:N`` (N distinct configurations of the
    space, within ``budget.max_params`` when set), ``space`` (the whole space) or a file (a search's
    ``results.json``, its completed trials best first, optionally ``<file>:K`` for the top K; or a YAML/JSON list of
    configurations). The teacher trains with ``teacher.train``; the supernet with ``train`` (its epochs are the
    teacher's) and the KD loss of ``distill``. ``condition``: the conditioning term of the teacher's loss,
    ``standardized`` (a KL between per-sample standardised logits, blind to the teacher's logit scale) or ``kd``
    (SFTN's form: the KD loss toward the sampled student), weighed by ``condition_weight`` λ (defaults: the best
    measured by ``bench/gtn.py`` on digits); the path distribution learns at ``arch_lr`` with entropy bonus
    ``entropy_weight``. Pool members are extracted with BatchNorm recalibrated on ``bn_recalibration`` training images.
    """

    space: str = "stages"  # search space whose supernet the generic teacher is trained against
    space_kwargs: dict = field(default_factory=dict)  # arguments of that space (e.g. widths, depths)
    # students the teacher is conditioned on: random:N | space | results.json[:K] | a YAML/JSON list
    pool: list = field(default_factory=lambda: ["random:8"])
    # conditioning term: standardized (scale-blind KL) or kd (SFTN's KD toward the sampled student)
    condition: Literal["standardized", "kd"] = "standardized"
    condition_weight: float = 0.1  # λ of the conditioning term in the teacher's loss
    arch_lr: float = 0.05  # learning rate of the path distribution (REINFORCE)
    entropy_weight: float = 0.1  # entropy bonus that keeps the path distribution from collapsing
    bn_recalibration: int = 2048  # training images that recalibrate an extracted pool student's BatchNorm


@dataclass
class FeatureLossConfig:
    loss: str = "fitnet"
    student: str = ""
    teacher: str = ""
    weight: float | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass
class DistillConfig:
    """Hinton KD (``alpha`` weighs KD, ``1 - alpha`` weighs CE) plus optional feature losses on tap points."""

    loss: str = "kd"  # logit loss: kd (Hinton), dkd, ... (registry names in 'archkd config --keys')
    alpha: float = 0.9  # weight of the KD term; the cross-entropy term gets 1 - alpha
    temperature: float = 4.0  # softmax temperature of the KD term
    # feature losses on tap points: a list of {loss, student, teacher, weight, kwargs}
    features: list = field(default_factory=list)
    cache: bool = True  # reuse teacher outputs across epochs and trials (TeacherCache) where the loss needs only logits
    process: str | None = None  # a DistPro process.pt to replay (weighted teacher->student pathways over time)


@dataclass
class ProcessConfig:
    """DistPro: pathways (forward: student stage ≥ teacher stage, or all), transform, distance, α normalisation
    during the search and at replay, meta-optimiser, τ-clipping and the replay mode (searched | final | equal)."""

    # forward (student stage >= teacher stage) or all teacher->student stage pairs
    pathways: Literal["forward", "all"] = "forward"
    transform: str = "attention"  # how a student feature is mapped to the teacher's shape on each pathway
    # candidate transforms of every pathway: each pathway × transform gets its own α and the search chooses (DistPro's
    # candidate set); empty: every pathway uses process.transform
    transforms: list = field(default_factory=list)
    distance: str = "hcl"  # distance between transformed student and teacher features (hcl: hierarchical context loss)
    normalization: Normalization = "softmax"  # how pathway weights α are normalised during the search
    replay_normalization: Normalization = "scaled_biased_softmax"  # how α are normalised when the process is replayed
    search_epochs: int = 2  # epochs of the bi-level process search
    meta_val_fraction: float = 0.2  # share of the training images the meta (α) step validates on
    alpha_lr: float = 0.1  # Adam learning rate of the pathway weights α
    alpha_betas: list = field(default_factory=lambda: [0.5, 0.999])  # Adam betas of the pathway weights α
    logit_kd: float = 0.0  # weight of a logit KD term added to the pathway losses (0: off)
    tau: float | None = None  # τ-clipping at replay: pathways whose weight falls below τ are dropped (null: off)
    # searched (α over time), final (the last α throughout) or equal weights
    replay: Literal["searched", "final", "equal"] = "searched"
    student_stages: list | None = None  # student stages with pathways (null: all)
    teacher_stages: list | None = None  # teacher stages with pathways (null: all)


@dataclass
class BudgetConfig:
    max_params: int | None = None  # hard limit on parameters (null: none)
    max_flops: int | None = None  # hard limit on FLOPs of one forward, a multiply-add counted as 2 (null: none)
    max_latency_ms: float | None = None  # hard limit on the median latency on latency_runtime (null: none)
    max_memory_mb: float | None = None  # hard limit on peak activation memory (null: none)
    latency_runtime: Literal["onnxruntime", "torch"] = "onnxruntime"  # runtime latency is measured (or predicted) on
    latency_threads: int = 1  # intra-op threads of that runtime
    latency_batch_size: int = 1  # batch size of the latency measurement
    # measured: every candidate is timed on the runtime; predicted: a per-block latency predictor for this machine,
    # runtime and space (latency_predictor, or the cached one, fitted on latency_predictor_samples architectures when
    # missing) stands in, and the search's Pareto set is re-measured at the end
    latency_source: Literal["measured", "predicted"] = "measured"
    latency_predictor: str | None = None  # predictor file (null: this machine's cached one)
    latency_predictor_samples: int = 100  # random architectures measured to fit a predictor when none is cached
    # constraint: an over-budget candidate is never trained (reward 0, an Optuna constraint); penalty: it is trained
    # and its value is reward − penalty · Σ relative excess over each limit (a soft budget the optimiser can cross)
    mode: Literal["constraint", "penalty"] = "constraint"
    penalty: float = 1.0  # penalty mode: value lost per unit of relative excess over a limit


@dataclass
class PrescreenConfig:
    """Rank many candidates by a zero-cost proxy before training any (``archkd.proxies``).

    With ``proxy`` set, ``factor × n_trials`` distinct candidates within budget are drawn at random and scored at
    initialisation on ``batches`` training batches against the ``teacher`` (``random``: a freshly initialised copy of
    the teacher's architecture, DisWOT's protocol; ``trained``: the teacher itself); the best ``keep`` (default
    ``n_trials``) are queued as the study's first trials. With the random method and the default ``keep`` the search
    trains only those; a learning sampler (tpe, gp, akd, trade, ...) starts from them and proposes the rest.
    """

    proxy: str | None = None  # zero-cost proxy that ranks candidates before any training (null: no pre-screen)
    factor: int = 10  # candidates scored per trial to run (factor × n_trials in all)
    keep: int | None = None  # best-scored candidates queued as the first trials (null: n_trials)
    # reference network of the proxy: random (DisWOT's protocol) or the trained teacher
    teacher: Literal["random", "trained"] = "random"
    batches: int = 2  # training batches each candidate is scored on


@dataclass
class SearchConfig:
    """A KD-guided search: every trial trains at a low fidelity (``epochs``, ``data_fraction``).

    ``method``: random | akd (LSTM controller) | tpe | gp (Optuna's, constraint-aware) | autokd | autokd-gp | trade
    (methods with a preset in ``METHOD_PRESETS`` also set space, recipe, pruner); ``sampler_options`` go to
    the sampler (e.g. the akd controller's ``algorithm``/``batch_size``, TPE's ``n_startup_trials``). ``guide``: kd
    (KD-trained accuracy, AKD) or ce (CE-trained accuracy: the NAS-then-KD baseline). With ``reward_target`` (T) the
    trial value is ``ACC × (cost/T)^w``. ``recipe``: training-recipe dimensions searched beside the architecture,
    ``{dotted key: [choices] | {low, high, log}}`` (e.g. ``distill.temperature``, ``distill.alpha``, ``train.lr``).
    ``process``: score each candidate by a short DistPro process search inside the trial (joint student + process
    search). ``bn_recalibration``: training images that re-estimate each trial's BatchNorm statistics before it is
    validated (``train.bn_recalibration`` for the trials; 0 turns it off): at a few epochs the running averages lag the
    weights.

    Many workers: ``storage`` (sqlite:///..., journal:<file>, postgresql://...) and ``study_name`` name a shared
    study; ``n_trials`` is the study's total. Each worker renews a lease on its running trial every
    ``heartbeat_seconds``; a trial whose lease is older than ``stale_after_seconds`` (or whose process on this host is
    gone) is re-queued, up to ``max_retries`` times, and continues from its last epoch checkpoint.
    """

    method: str = "random"  # sampler: random | akd | tpe | gp | autokd | autokd-gp | trade
    # options of the sampler (e.g. akd batch_size, TPE n_startup_trials)
    sampler_options: dict = field(default_factory=dict)
    # kd: score candidates by KD-trained accuracy (AKD); ce: by CE-trained accuracy (NAS-then-KD)
    guide: Literal["kd", "ce"] = "kd"
    space: str = "stages"  # search space of the students
    space_kwargs: dict = field(default_factory=dict)  # arguments of the space (e.g. widths, depths, num_stages)
    # training-recipe dimensions searched beside the architecture, {dotted key: choices or range}
    recipe: dict = field(default_factory=dict)
    n_trials: int = 8  # trials within budget in the study (its total, across all workers)
    epochs: int = 3  # training epochs of each trial (the search fidelity)
    data_fraction: float = 1.0  # share of the training images each trial trains on
    # study storage: sqlite:///file.db, journal:file.log or postgresql://... (null: the run's sqlite)
    storage: str | None = None
    study_name: str | None = None  # name of the shared study (null: the run name)
    max_attempts_factor: int = 20  # over-budget draws allowed in a row, per trial, before the search gives up
    # stop weak trials early on their validation curve: none, median or hyperband
    pruner: Literal["none", "median", "hyperband"] = "none"
    pruner_options: dict = field(default_factory=dict)  # options of the Optuna pruner
    reward_target: float | None = None  # target T of the reward ACC × (cost/T)^w (null: the reward is the accuracy)
    # without reward_target: T = budget.max_latency_ms, else this quantile of the latencies of 20 random networks of
    # the space measured on the budget's runtime (null: no target; AKD's preset sets 0.5)
    reward_target_quantile: float | None = None
    # width-scaled spaces (nago) scale every network to budget.max_params, else to this fraction of the teacher's
    # parameters (null: no scaling; AutoKD's preset sets 0.1, NAGO's equal-size premise)
    size_target: float | None = None
    reward_metric: str = "latency_ms"  # cost in the reward: latency_ms, flops or params
    # soft: w = reward_alpha/beta; hard: w = 0 at or below T, -1 above
    reward_mode: Literal["soft", "hard"] = "soft"
    reward_alpha: float = -0.07  # exponent w when the cost is at or below T
    reward_beta: float = -0.07  # exponent w when the cost is above T
    top_k: int = 0  # re-train the k best trials with the full recipe and test them (0: off)
    # score each candidate by a short DistPro process search in its trial (joint student + process)
    process: bool = False
    bn_recalibration: int = 2048  # training images that re-estimate a trial's BatchNorm statistics before validation
    heartbeat_seconds: float = 10.0  # how often a worker renews the lease on its running trial
    stale_after_seconds: float = 60.0  # a lease older than this is taken over by another worker
    max_retries: int = 3  # times an interrupted trial is re-queued
    prescreen: PrescreenConfig = field(default_factory=PrescreenConfig)


@dataclass
class ExportConfig:
    """Deployable files; ``quantize=int8`` adds an int8 ONNX model calibrated on ``calibration_images`` training
    images, reported against fp32 (accuracy on the test split, size, latency)."""

    formats: list = field(default_factory=lambda: ["onnx", "torchscript"])  # files to write: onnx and/or torchscript
    atol: float = 1e-4  # largest absolute output difference allowed between an export and the eager model
    checkpoint: str | None = None  # checkpoint to export (null: the run's student/best.pt)
    # torchscript: the tracing exporter (fast, no extra dependency); dynamo: torch.export + the dynamo exporter
    # (PyTorch's current path; needs onnxscript, the 'dynamo' extra)
    onnx_exporter: Literal["torchscript", "dynamo"] = "torchscript"
    quantize: Literal["none", "int8"] = "none"  # int8: also a static-quantised ONNX model, vs fp32
    calibration_images: int = 512  # training images that calibrate the int8 activation ranges


@dataclass
class MeasureConfig:
    model: str | None = None  # registry name or checkpoint to measure
    input_shape: list | None = None  # per-sample input shape C,H,W (null: the checkpoint's, or 3,32,32)
    # runtimes to time: torch and/or onnxruntime
    runtimes: list = field(default_factory=lambda: ["torch", "onnxruntime"])
    threads: int = 1  # intra-op threads of the runtimes
    batch_size: int = 1  # batch size of the measurement
    warmup: int = 10  # untimed calls before timing (archkd.measure.WARMUP, the protocol every latency uses)
    repeats: int = 50  # timed calls; the median is reported (archkd.measure.REPEATS)


@dataclass
class Config:
    name: str = "run"  # run name: outputs go to <runs_dir>/<name>/
    runs_dir: str = "runs"  # parent directory of runs
    seed: int = 0  # seed of data splits, subsets, initialisation and samplers
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    threads: int | None = None  # torch CPU threads (null: $OMP_NUM_THREADS if set, else the idle cores)
    # teacher-output caches, decoded datasets and latency predictors (null: ~/.cache/archkd or $ARCHKD_CACHE)
    cache_dir: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    generic: GenericConfig = field(default_factory=GenericConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    process: ProcessConfig = field(default_factory=ProcessConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key the config accepts (used for suggestions and docs)."""
    keys = []
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        sub = _hints(cls)[f.name]
        keys.append(key)
        if dataclasses.is_dataclass(sub):
            keys.extend(all_keys(sub, key + "."))
    return keys


def _unknown(key: str) -> ArchkdError:
    close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.5)
    fix = f"did you mean '{close[0]}'?" if close else "run 'archkd config' to list the valid keys"
    return ArchkdError(f"unknown config key '{key}'", fix)


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (from YAML or a CLI string) to the field's declared type."""
    if isinstance(value, str) and tp is not str:
        value = load_yaml(value, f"the value of config key '{key}'") if value.strip() else None
    args = typing.get_args(tp) if typing.get_origin(tp) is not Literal else ()
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), tp) if args else tp
    if value is None:
        if optional:
            return None
        raise ArchkdError(f"config key '{key}' cannot be empty", f"give it a {getattr(base, '__name__', base)} value")
    if typing.get_origin(base) is Literal:
        choices = [str(c) for c in typing.get_args(base)]
        if str(value) not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            raise ArchkdError(f"config key '{key}' is {value!r}", f"choose one of {', '.join(choices)}"
                              + (f" (did you mean '{close[0]}'?)" if close else ""))
        return str(value)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if base is list:
            return list(value) if isinstance(value, (list, tuple)) else [value]
        if base is dict:
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ArchkdError(
            f"config key '{key}' got {value!r}", f"expected a {getattr(base, '__name__', base)}"
        ) from None
    return value


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ArchkdError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping", "check the YAML indentation")
    hints = _hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in data.items():
        key = prefix + str(k)
        if k not in names:
            raise _unknown(key)
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            _apply(getattr(obj, k), v, key + ".")
        else:
            setattr(obj, k, _coerce(key, tp, v))


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set one dotted key (``train.epochs``) with type checking; an unknown key names the closest valid one."""
    parts = key.split(".")
    obj = cfg
    for i, p in enumerate(parts):
        if not dataclasses.is_dataclass(obj) or p not in {f.name for f in dataclasses.fields(obj)}:
            raise _unknown(key)
        tp = _hints(type(obj))[p]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(tp):
                _apply(getattr(obj, p), load_yaml(value, f"the value of config key '{key}'")
                       if isinstance(value, str) else value, key + ".")
            else:
                setattr(obj, p, _coerce(key, tp, value))
        else:
            obj = getattr(obj, p)


# Aliases (``*name``) may add at most this many values to a YAML document beyond those written in it. archkd's files
# need a few aliases at most, while nested ones grow exponentially: a 1 KB "billion laughs" file of 9 levels of 9
# aliases stands for 9⁹ values, and reading the config value by value ran past 120 s and 4 GB on it.
YAML_ALIAS_EXPANSION = 10_000


class _CheckedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses, before anything is constructed, a mapping that repeats a key (YAML keeps the
    last silently, so one of the user's two settings would be lost) and aliases that expand the document by more
    than ``YAML_ALIAS_EXPANSION`` values or refer to themselves."""

    where = "YAML"

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            self._check_expansion(node)
        return node

    def _check_expansion(self, root: yaml.Node) -> None:
        """Count the values the document stands for with every alias expanded, per distinct node (so the count costs
        what the file holds, not what it expands to) and stop as soon as the aliases add too many."""
        written: set[int] = set()
        stack = [root]
        while stack:  # the nodes written in the file: each composed node once, however many aliases point at it
            node = stack.pop()
            if id(node) not in written:
                written.add(id(node))
                stack.extend(_children(node))
        limit = len(written) + YAML_ALIAS_EXPANSION
        sizes: dict[int, int] = {}
        open_: set[int] = set()

        def size(node: yaml.Node) -> int:
            if id(node) in sizes:
                return sizes[id(node)]
            if id(node) in open_:
                raise ArchkdError(f"{self.where} has an alias inside the value it names "
                                  f"(line {node.start_mark.line + 1})",
                                  "write the value out: a value that contains itself has no end")
            open_.add(id(node))
            total = 1 + sum(size(child) for child in _children(node))
            open_.discard(id(node))
            if total > limit:
                raise ArchkdError(f"{self.where} uses aliases that stand for more than {YAML_ALIAS_EXPANSION:,} "
                                  f"values beyond those written (line {node.start_mark.line + 1})",
                                  "write the values out, or use fewer aliases")
            sizes[id(node)] = total
            return total

        size(root)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue  # a '<<' merge may be overridden by design; a non-scalar key is refused by PyYAML itself
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ArchkdError(f"{self.where} repeats key '{key}' (lines {seen[key]} and {line})",
                                  "keep one of them: YAML would silently use the last")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML from a user (a config file, an override's value, a pool file) with ``_CheckedLoader``; ``where``
    names it in the one-line error a bad document gives (invalid syntax, repeated key, runaway aliases, nesting too
    deep for the parser)."""
    loader = _CheckedLoader(text)
    loader.where = where
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ArchkdError(f"{where} is not valid YAML ({str(e).splitlines()[0]})", "fix the YAML syntax") from None
    except RecursionError:
        raise ArchkdError(f"{where} nests its values too deeply for the YAML parser",
                          "flatten it: archkd's files need a few levels") from None
    finally:
        loader.dispose()


def parse_overrides(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if "=" not in item:
            raise ArchkdError(f"cannot read override '{item}'", "write overrides as key.sub=value, e.g. train.epochs=5")
        k, v = item.split("=", 1)
        out.append((k.strip(), v))
    return out


def read_yaml(path: Path, what: str) -> Any:
    """``load_yaml`` of a user's file, named ``<what> <path>`` in its errors (a file that is not UTF-8 text too)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ArchkdError(f"{what} {path} is not UTF-8 text", "give a YAML file") from None
    return load_yaml(text, f"{what} {path}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                flags: dict[str, Any] | None = None, base: Config | None = None) -> Config:
    """Resolve a config: defaults (or ``base``) < YAML ``path`` < ``flags`` (dotted keys) < ``overrides``."""
    data = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ArchkdError(f"config file not found: {p}", "check the --config path")
        data = read_yaml(p, "config file") or {}

    def resolve(start: Config, preset: dict) -> Config:
        cfg = copy.deepcopy(start)
        for k, v in preset.items():
            set_key(cfg, k, copy.deepcopy(v))
        if data is not None:
            _apply(cfg, data)
        for k, v in (flags or {}).items():
            if v is not None:
                set_key(cfg, k, v)
        for k, v in parse_overrides(overrides or []):
            set_key(cfg, k, v)
        return cfg

    start = base if base is not None else Config()
    cfg = resolve(start, {})
    if cfg.search.method in METHOD_PRESETS:  # the method's defaults go under everything the user set
        cfg = resolve(start, METHOD_PRESETS[cfg.search.method])
    if not cfg.name or cfg.name in (".", "..") or any(c in cfg.name for c in "/\\"):
        raise ArchkdError(f"run name '{cfg.name}' is not a single folder name",
                          "give --name a plain name (no '/', '..'); choose the parent folder with --runs-dir")
    check_ranges(cfg)
    check_choices(cfg)
    cfg.distill.features = [_feature(i, f) for i, f in enumerate(cfg.distill.features)]
    return cfg


def _feature(i: int, item: Any) -> dict:
    """One ``distill.features`` entry, checked against ``FeatureLossConfig`` (keys and types) when the config loads."""
    key = f"distill.features[{i}]"
    if isinstance(item, FeatureLossConfig):
        item = dataclasses.asdict(item)
    if not isinstance(item, dict):
        raise ArchkdError(f"{key} is {item!r}, not a mapping",
                          "write each feature loss as {loss: fitnet, student: <module>, teacher: <module>}")
    f = FeatureLossConfig()
    _apply(f, item, key + ".")
    return dataclasses.asdict(f)


# A search method that is more than a sampler brings its defaults: what its paper searches and how. Each method
# registers its preset beside its sampler (``register_sampler(name, preset=...)``); presets sit above the built-in
# defaults and below the YAML file, flags and overrides, so `--method autokd --space stages` still works.
METHOD_PRESETS: dict[str, dict[str, Any]] = {}


def register_preset(method: str, preset: dict[str, Any]) -> None:
    """Defaults (dotted key -> value) that ``search.method=method`` brings; checked as keys when the config loads."""
    METHOD_PRESETS[method] = dict(preset)


# (dotted key, lowest allowed value, whether the bound itself is allowed): checked when the config loads, so a bad
# number is a one-line error before any data is read, never a silently clamped value or a misleading later failure
RANGES = [("threads", 1, True), ("train.epochs", 1, True), ("train.batch_size", 1, True), ("train.lr", 0, False),
          ("train.weight_decay", 0, True), ("train.momentum", 0, True), ("train.label_smoothing", 0, True),
          ("train.data_fraction", 0, False), ("train.eval_every", 1, True),
          ("teacher.train.epochs", 1, True), ("teacher.train.batch_size", 1, True), ("teacher.train.lr", 0, False),
          ("search.n_trials", 1, True), ("search.epochs", 1, True), ("search.top_k", 0, True),
          ("search.data_fraction", 0, False), ("search.bn_recalibration", 0, True),
          ("search.reward_target_quantile", 0, False), ("search.size_target", 0, False),
          ("search.heartbeat_seconds", 0, False), ("search.stale_after_seconds", 0, False),
          ("search.max_retries", 0, True), ("search.prescreen.factor", 1, True), ("search.prescreen.keep", 1, True),
          ("search.prescreen.batches", 1, True), ("budget.max_params", 0, False), ("budget.max_flops", 0, False),
          ("budget.max_latency_ms", 0, False), ("budget.max_memory_mb", 0, False), ("budget.latency_threads", 1, True),
          ("budget.latency_batch_size", 1, True), ("budget.penalty", 0, True),
          ("generic.condition_weight", 0, True), ("generic.arch_lr", 0, True), ("generic.entropy_weight", 0, True),
          ("generic.bn_recalibration", 0, True), ("export.calibration_images", 1, True), ("data.val_fraction", 0, False), ("data.test_fraction", 0, True)]


# Keys whose choices live in a registry (a new sampler, space, model, loss, transform or proxy is a registry entry, not
# a Literal here): the package owning the registry registers it, and a loaded config is checked against every
# registry imported by then (the CLI imports them all) before any data is read.
REGISTRY_CHOICES: dict[str, Callable[[], Iterable[str]]] = {}


def register_choices(key: str, names: Callable[[], Iterable[str]]) -> None:
    """Check config key ``key`` against ``names()`` (a registry's current entries) whenever a config loads."""
    REGISTRY_CHOICES[key] = names


def check_choices(cfg: Config) -> None:
    for key, names in REGISTRY_CHOICES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        choices = sorted(names())
        for v in value if isinstance(value, list) else [value]:  # a list key: each of its entries is a choice
            if v is not None and v not in choices:
                close = difflib.get_close_matches(str(v), choices, n=1, cutoff=0.5)
                raise ArchkdError(f"config key '{key}' is {value!r}", f"choose from {', '.join(choices)}"
                                  + (f" (did you mean '{close[0]}'?)" if close else ""))


def check_ranges(cfg: Config) -> None:
    """Refuse numbers outside their meaningful range (``RANGES``), naming the key and the bound."""
    for key, low, inclusive in RANGES:
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        if obj is None:
            continue
        if obj < low or (obj == low and not inclusive):
            bound = f"≥ {low}" if inclusive else f"> {low}"
            raise ArchkdError(f"config key '{key}' is {obj}", f"it must be {bound}")
    for key in ("train.data_fraction", "search.data_fraction", "data.val_fraction", "data.test_fraction",
                "search.reward_target_quantile", "search.size_target"):
        obj = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        if obj is not None and obj > 1:
            raise ArchkdError(f"config key '{key}' is {obj}", "a fraction is at most 1")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Save the resolved config (what actually ran) next to the run's results."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return p


def describe_keys() -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` for every settable key, for ``archkd config --keys``: the type as a user writes
    it (closed choices spelled out, registry-backed ones listed from the registries imported so far), the default of
    a fresh ``Config``, and the field's comment in this file when it has one (the line above it or at its end)."""
    import ast
    import io
    import tokenize

    source = Path(__file__).read_text(encoding="utf-8")
    trailing: dict[int, str] = {}  # a comment at the end of a line of code
    above: dict[int, str] = {}  # a comment alone on its line
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            alone = not lines[tok.start[0] - 1][:tok.start[1]].strip()
            (above if alone else trailing)[tok.start[0]] = tok.string.lstrip("#").strip()
    field_help: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    block, n = [], item.lineno - 1  # the comment block right above the field, if any
                    while n in above:
                        block.insert(0, above[n])
                        n -= 1
                    text = trailing.get(item.lineno) or " ".join(block)
                    if text:
                        field_help[(node.name, item.target.id)] = text

    def spell(key: str, tp: Any) -> str:
        if key in REGISTRY_CHOICES:
            names = " | ".join(sorted(REGISTRY_CHOICES[key]()))
            return f"list of ({names})" if tp is list else names
        args = typing.get_args(tp)
        if typing.get_origin(tp) is Literal:
            return " | ".join(str(a) for a in args)
        if args:
            return " | ".join(spell(key, a) for a in args)
        return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))

    rows: list[tuple[str, str, str, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            key, tp, value = prefix + f.name, _hints(type(obj))[f.name], getattr(obj, f.name)
            if dataclasses.is_dataclass(tp):
                walk(value, key + ".")
            else:
                rows.append((key, spell(key, tp), yaml.safe_dump(value, default_flow_style=True).strip()
                             .removesuffix("...").strip(), field_help.get((type(obj).__name__, f.name), "")))

    walk(Config(), "")
    return rows
