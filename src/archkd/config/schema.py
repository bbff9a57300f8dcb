"""The config schema: one dataclass per section, each field declared with ``opt`` (default, help, range, registry).

A closed choice is a ``Literal`` here, checked when the config loads; the aliases below are the one list of their
values (``archkd.process``, ``archkd.export``, ``archkd.measure`` and ``archkd.search`` read them). A key whose
choices are a registry's names (models, spaces, samplers, losses, transforms, proxies, runtimes, budget kinds) is a
``str`` with ``registry=``: the registry is the one source of truth, and the package owning it connects the key with
``register_choices`` so a loaded config is checked against it before any data is read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from archkd.config.fields import opt

# α normalisations of DistPro pathway weights (archkd.process.normalize implements each)
Normalization = Literal["softmax", "softmax_bias", "sigmoid", "scaled_biased_softmax", "none"]
# deployable file formats (archkd.export.export_model writes each)
ExportFormat = Literal["onnx", "torchscript"]
# routes to an ONNX file (archkd.measure.to_onnx)
OnnxExporter = Literal["torchscript", "dynamo"]
# costs the search reward can weigh (archkd.search.reward.Reward)
RewardMetric = Literal["latency_ms", "params", "flops"]
# objectives of a multi-objective search (archkd.search.pareto.OBJECTIVES)
ObjectiveName = Literal["accuracy", "latency", "params", "flops", "memory"]
# Optuna pruners a search can stop weak trials with (archkd.search.storage.PRUNERS)
Pruner = Literal["none", "median", "hyperband"]


@dataclass
class AugmentConfig:
    """Batched, seeded augmentation. ``None`` means "pick per dataset" (digits: pad 1, no flip)."""

    crop_padding: int | None = opt(
        None, ge=0, help="pixels of zero padding before a random crop back to size (null: the dataset's default)")
    flip: bool | None = opt(None, help="random horizontal flips (null: the dataset's default; off for digits)")
    cutout: int = opt(0, ge=0, help="side in pixels of a random square zeroed per image (0: off)")
    randaug_ops: int = opt(0, ge=0, le=4, help="RandAugment-style policy: ops applied per image, drawn from autocontrast, "
                                               "brightness, contrast, solarize, posterize, translate, rotate, identity "
                                               "(0: off; e.g. 2)")
    randaug_magnitude: int = opt(9, ge=0, le=30, help="the policy's one magnitude, of 30")


@dataclass
class DataConfig:
    source: str = opt("digits", help="digits | a CIFAR python folder | an ImageFolder directory or .zip | an .npz file")
    val_fraction: float = opt(0.1, gt=0, le=1, help="share of the training images held out for validation (what "
                                                     "searches and early stopping read)")
    test_fraction: float = opt(0.2, ge=0, le=1,
                               help="share held out as the test split when the source has none of its own")
    image_size: int | None = opt(None, ge=1, help="resize images to this side in pixels (null: keep the source's size)")
    num_workers: int = opt(2, ge=0, help="background processes decoding images for a streamed dataset")
    max_in_memory_mb: int = opt(4096, ge=0, help="decoded datasets up to this size are kept in memory; larger ones "
                                                  "are streamed from disk")
    skip_corrupt: bool = opt(False, help="an image that does not decode: error (default) or skip it with a warning")
    augment: AugmentConfig = opt(factory=AugmentConfig, help="augmentation of the training images")


@dataclass
class TrainConfig:
    """One training recipe; used for teachers, search trials (with fewer epochs) and final distillation."""

    epochs: int = opt(20, ge=1, help="passes over the (data_fraction of the) training images")
    batch_size: int = opt(128, ge=1, help="images per optimisation step")
    optimizer: Literal["sgd", "adamw"] = opt("sgd", help="sgd (with momentum) or adamw")
    lr: float = opt(0.05, gt=0, help="peak learning rate")
    momentum: float = opt(0.9, ge=0, help="SGD momentum (adamw keeps its own betas)")
    nesterov: bool = opt(True, help="Nesterov momentum for SGD")
    weight_decay: float = opt(5e-4, ge=0, help="L2 penalty (decoupled for adamw)")
    schedule: Literal["cosine", "step", "constant"] = opt(
        "cosine", help="learning-rate schedule after warm-up: cosine to 0, step (milestones), or constant")
    step_milestones: list = opt([0.5, 0.75], help="fractions of the run where the step schedule multiplies the rate "
                                                   "by step_gamma")
    step_gamma: float = opt(0.1, gt=0, help="factor of each step-schedule decay")
    warmup_epochs: float = opt(0.0, ge=0, help="linear learning-rate warm-up length in epochs (may be fractional)")
    label_smoothing: float = opt(0.0, ge=0, le=1, help="label smoothing of the cross-entropy term")
    grad_clip: float | None = opt(None, gt=0, help="clip the global gradient norm to this value (null: no clipping)")
    eval_every: int = opt(1, ge=1, help="validate every N epochs (the last epoch always)")
    data_fraction: float = opt(1.0, gt=0, le=1, help="share of the training images used (a seeded subset, the same "
                                                      "for every run with this seed)")
    autotune: bool = opt(True, help="time a few steps of the student under fp32/bf16 × contiguous/channels_last and "
                                    "train with the fastest (cached per machine and model); false: the fixed default "
                                    "of amp and channels_last")
    amp: bool | None = opt(None, help="bf16 autocast (null: the tuner decides for the student; the teacher and the "
                                      "fixed default: on for CUDA only)")
    channels_last: bool | None = opt(None, help="channels-last memory format (null: the tuner decides; fixed "
                                                "default: CUDA)")
    bn_recalibration: int = opt(0, ge=0, help="training images that re-estimate BatchNorm statistics before each "
                                              "validation pass (0: off); see recalibrate_bn")
    mixup: float = opt(0.0, ge=0, help="mixup: α of the Beta(α, α) mixing weight (0: off; e.g. 0.2); a mixing step "
                                       "runs the teacher on the mixed images (no teacher-output cache)")
    cutmix: float = opt(0.0, ge=0, help="CutMix: α of the Beta(α, α) kept area (0: off; e.g. 1.0); with mixup too, "
                                        "each step picks one")
    ema: float | None = opt(None, gt=0, lt=1, help="decay of a moving average of the weights that validation, the best "
                                                   "checkpoint and the export use (e.g. 0.999; null: off)")
    tensorboard: bool = opt(False, help="shorthand for tensorboard in train.loggers")
    loggers: list[str] = opt([], registry="tracker", help="experiment trackers for every training run: tensorboard "
                                                          "(runs/<name>/tensorboard), mlflow (runs/<name>/mlflow.db), "
                                                          "wandb (offline: runs/<name>/wandb); per-epoch metrics, each "
                                                          "trial's parameters as hyper-parameters (extras of the same "
                                                          "names)")


# TrainConfig fields added after runs and studies were first keyed by their recipe, with their defaults: such a field
# counts in a run's or a study's identity only when set, so a run or study made before it existed continues
TRAIN_KEYS_ADDED_LATER: dict[str, object] = {"mixup": 0.0, "cutmix": 0.0, "ema": None}
# TrainConfig fields that change what is logged, not what is trained
TRAIN_OUTPUT_ONLY = ("tensorboard", "loggers")


def recipe_identity(cfg: "TrainConfig") -> dict:
    """The fields of a training recipe that define what is trained (``TRAIN_OUTPUT_ONLY`` left out, fields added
    later only when set): what a checkpoint's resumption and a study's definition compare."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in TRAIN_OUTPUT_ONLY
            and not (f.name in TRAIN_KEYS_ADDED_LATER and getattr(cfg, f.name) == TRAIN_KEYS_ADDED_LATER[f.name])}


@dataclass
class TeacherConfig:
    """Where the teacher comes from: a file (archkd checkpoint, TorchScript), ``module:factory``, ``timm:name``,
    or a registry architecture to train with ``archkd teacher train``."""

    path: str | None = opt(None, help="the teacher: archkd checkpoint, TorchScript file, module:factory, "
                                      "hf:<folder or hub id> or timm:name (null: none given)")
    arch: str = opt("resnet20", registry="model", help="registry architecture that 'archkd teacher train' trains")
    weights: str | None = opt(None, help="state dict loaded into a module:factory or timm: teacher")
    kwargs: dict = opt({}, help="constructor arguments of a module:factory or timm: teacher (from_pretrained's for hf:)")
    mean: list | None = opt(None, help="per-channel input mean the teacher was trained with (null: from its "
                                       "checkpoint or estimated)")
    std: list | None = opt(None, help="per-channel input std the teacher was trained with (null: from its checkpoint "
                                      "or estimated)")
    train: TrainConfig = opt(factory=lambda: TrainConfig(epochs=30, lr=0.1),
                             help="the teacher's training recipe ('archkd teacher train', GTN)")


@dataclass
class StudentConfig:
    """The student: a registry ``arch`` (with ``kwargs``), or the architecture of ``checkpoint``; ``init``: start
    from fresh weights (scratch) or from the checkpoint's own (checkpoint, e.g. a GTN pool member's supernet weights)."""

    arch: str = opt("resnet8", registry="model", help="registry architecture of the student")
    kwargs: dict = opt({}, help="constructor arguments of the student architecture")
    checkpoint: str | None = opt(None, help="take the student's architecture (and with init=checkpoint its weights) "
                                            "from this checkpoint")
    init: Literal["scratch", "checkpoint"] = opt("scratch", help="fresh weights, or the student checkpoint's own")


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

    space: str = opt("stages", registry="search space",
                     help="search space whose supernet the generic teacher is trained against")
    space_kwargs: dict = opt({}, help="arguments of that space (e.g. widths, depths)")
    pool: list = opt(["random:8"], help="students the teacher is conditioned on: random:N | space | "
                                        "results.json[:K] | a YAML/JSON list")
    condition: Literal["standardized", "kd"] = opt(
        "standardized", help="conditioning term: standardized (scale-blind KL) or kd (SFTN's KD toward the sampled "
                             "student)")
    condition_weight: float = opt(0.1, ge=0, help="λ of the conditioning term in the teacher's loss")
    arch_lr: float = opt(0.05, ge=0, help="learning rate of the path distribution (REINFORCE)")
    entropy_weight: float = opt(0.1, ge=0, help="entropy bonus that keeps the path distribution from collapsing")
    bn_recalibration: int = opt(2048, ge=0, help="training images that recalibrate an extracted pool student's "
                                                 "BatchNorm")


@dataclass
class FeatureLossConfig:
    """One ``distill.features`` entry: a feature loss between a student and a teacher tap point."""

    loss: str = opt("fitnet", registry="feature loss", help="feature loss between the two tap points")
    student: str = opt("", help="student module whose output is tapped (a dotted module name)")
    teacher: str = opt("", help="teacher module whose output is tapped (a dotted module name)")
    weight: float | None = opt(None, ge=0, help="weight of this loss (null: the loss's own default)")
    kwargs: dict = opt({}, help="options of the loss")


@dataclass
class DistillConfig:
    """Hinton KD (``alpha`` weighs KD, ``1 - alpha`` weighs CE) plus optional feature losses on tap points."""

    loss: str = opt("kd", registry="logit loss", help="logit loss: kd (Hinton), dkd, ...")
    alpha: float = opt(0.9, ge=0, le=1, help="weight of the KD term; the cross-entropy term gets 1 - alpha")
    temperature: float = opt(4.0, gt=0, help="softmax temperature of the KD term")
    features: list = opt([], help="feature losses on tap points: a list of {loss, student, teacher, weight, kwargs}")
    cache: bool = opt(True, help="reuse teacher outputs across epochs and trials (TeacherCache) where the loss needs "
                                 "only logits")
    process: str | None = opt(None, help="a DistPro process.pt to replay (weighted teacher->student pathways over "
                                         "time)")


@dataclass
class ProcessConfig:
    """DistPro: pathways (forward: student stage ≥ teacher stage, or all), transform, distance, α normalisation
    during the search and at replay, meta-optimiser, τ-clipping and the replay mode (searched | final | equal)."""

    pathways: Literal["forward", "all"] = opt("forward", help="forward (student stage >= teacher stage) or all "
                                                              "teacher->student stage pairs")
    transform: str = opt("attention", registry="pathway transform",
                         help="how a student feature is mapped to the teacher's shape on each pathway")
    transforms: list = opt([], registry="pathway transform",
                           help="candidate transforms of every pathway: each pathway × transform gets its own α and "
                                "the search chooses (DistPro's candidate set); empty: every pathway uses "
                                "process.transform")
    distance: str = opt("hcl", registry="pathway distance", help="distance between transformed student and teacher "
                                                                 "features (hcl: hierarchical context loss)")
    normalization: Normalization = opt("softmax", help="how pathway weights α are normalised during the search")
    replay_normalization: Normalization = opt("scaled_biased_softmax",
                                              help="how α are normalised when the process is replayed")
    search_epochs: int = opt(2, ge=1, help="epochs of the bi-level process search")
    meta_val_fraction: float = opt(0.2, gt=0, lt=1, help="share of the training images the meta (α) step validates on")
    alpha_lr: float = opt(0.1, gt=0, help="Adam learning rate of the pathway weights α")
    alpha_betas: list = opt([0.5, 0.999], help="Adam betas of the pathway weights α")
    logit_kd: float = opt(0.0, ge=0, help="weight of a logit KD term added to the pathway losses (0: off)")
    tau: float | None = opt(None, ge=0, help="τ-clipping at replay: pathways whose weight falls below τ are dropped "
                                             "(null: off)")
    replay: Literal["searched", "final", "equal"] = opt(
        "searched", help="searched (α over time), final (the last α throughout) or equal weights")
    student_stages: list | None = opt(None, help="student stages with pathways (null: all)")
    teacher_stages: list | None = opt(None, help="teacher stages with pathways (null: all)")


@dataclass
class BudgetConfig:
    """Hard (or, in penalty mode, soft) limits on a candidate student, and how its latency is obtained."""

    max_params: int | None = opt(None, gt=0, help="hard limit on parameters (null: none)")
    max_flops: int | None = opt(None, gt=0, help="hard limit on FLOPs of one forward, a multiply-add counted as 2 "
                                                 "(null: none)")
    max_latency_ms: float | None = opt(None, gt=0, help="hard limit on the median latency on latency_runtime "
                                                        "(null: none)")
    max_memory_mb: float | None = opt(None, gt=0, help="hard limit on peak activation memory (null: none)")
    limits: dict | None = opt(None, registry="budget kind", help="{kind: limit}: hard limits by budget kind, e.g. a "
                                                                 "plugin's (register_budget_kind)")
    latency_runtime: str = opt("onnxruntime", registry="runtime",
                               help="runtime latency is measured (or predicted) on")
    latency_threads: int = opt(1, ge=1, help="intra-op threads of that runtime")
    latency_batch_size: int = opt(1, ge=1, help="batch size of the latency measurement")
    latency_source: Literal["measured", "predicted"] = opt(
        "measured", help="measured: every candidate is timed on the runtime; predicted: a per-block latency predictor "
                         "for this machine, runtime and space (latency_predictor, or the cached one, fitted on "
                         "latency_predictor_samples architectures when missing) stands in, and the search's Pareto "
                         "set is re-measured at the end")
    latency_predictor: str | None = opt(None, help="predictor file (null: this machine's cached one)")
    latency_predictor_samples: int = opt(100, ge=1, help="random architectures measured to fit a predictor when none "
                                                         "is cached")
    mode: Literal["constraint", "penalty"] = opt(
        "constraint", help="constraint: an over-budget candidate is never trained (reward 0, an Optuna constraint); "
                           "penalty: it is trained and its value is reward − penalty · Σ relative excess over each "
                           "limit (a soft budget the optimiser can cross)")
    penalty: float = opt(1.0, ge=0, help="penalty mode: value lost per unit of relative excess over a limit")


@dataclass
class PrescreenConfig:
    """Rank many candidates by a zero-cost proxy before training any (``archkd.proxies``).

    With ``proxy`` set, ``factor × n_trials`` distinct candidates within budget are drawn at random and scored at
    initialisation on ``batches`` training batches against the ``teacher`` (``random``: a freshly initialised copy of
    the teacher's architecture, DisWOT's protocol; ``trained``: the teacher itself); the best ``keep`` (default
    ``n_trials``) are queued as the study's first trials. With the random method and the default ``keep`` the search
    trains only those; a learning sampler (tpe, gp, akd, trade, ...) starts from them and proposes the rest.
    """

    proxy: str | None = opt(None, registry="proxy", help="zero-cost proxy that ranks candidates before any training "
                                                         "(null: no pre-screen)")
    factor: int = opt(10, ge=1, help="candidates scored per trial to run (factor × n_trials in all)")
    keep: int | None = opt(None, ge=1, help="best-scored candidates queued as the first trials (null: n_trials)")
    teacher: Literal["random", "trained"] = opt("random", help="reference network of the proxy: random (DisWOT's "
                                                               "protocol) or the trained teacher")
    batches: int = opt(2, ge=1, help="training batches each candidate is scored on")


@dataclass
class SearchConfig:
    """A KD-guided search: every trial trains at a low fidelity (``epochs``, ``data_fraction``).

    ``method``: random | akd (LSTM controller) | tpe | gp (Optuna's, constraint-aware) | autokd | autokd-gp | trade
    (methods with a preset, ``method_presets()``, also set space, recipe, pruner); ``sampler_options`` go to
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

    method: str = opt("random", registry="search method", help="sampler (a method with a preset also sets space, "
                                                               "recipe and pruner)")
    sampler_options: dict = opt({}, help="options of the sampler (e.g. akd batch_size, TPE n_startup_trials)")
    guide: Literal["kd", "ce"] = opt("kd", help="kd: score candidates by KD-trained accuracy (AKD); ce: by "
                                                "CE-trained accuracy (NAS-then-KD)")
    space: str = opt("stages", registry="search space", help="search space of the students")
    space_kwargs: dict = opt({}, help="arguments of the space (e.g. widths, depths, num_stages)")
    recipe: dict = opt({}, help="training-recipe dimensions searched beside the architecture, {dotted key: choices "
                                "or range}")
    n_trials: int = opt(8, ge=1, help="trials within budget in the study (its total, across all workers)")
    epochs: int = opt(3, ge=1, help="training epochs of each trial (the search fidelity)")
    data_fraction: float = opt(1.0, gt=0, le=1, help="share of the training images each trial trains on")
    storage: str | None = opt(None, help="study storage: sqlite:///file.db, journal:file.log or postgresql://... "
                                         "(null: the run's sqlite)")
    study_name: str | None = opt(None, help="name of the shared study (null: the run name)")
    max_attempts_factor: int = opt(20, ge=1, help="over-budget draws allowed in a row, per trial, before the search "
                                                  "gives up")
    pruner: Pruner = opt("none", help="stop weak trials early on their validation curve: none, median or hyperband")
    pruner_options: dict = opt({}, help="options of the Optuna pruner")
    reward_target: float | None = opt(None, gt=0, help="target T of the reward ACC × (cost/T)^w (null: the reward is "
                                                       "the accuracy)")
    reward_target_quantile: float | None = opt(
        None, gt=0, le=1, help="without reward_target: T = budget.max_latency_ms, else this quantile of the latencies "
                               "of 20 random networks of the space measured on the budget's runtime (null: no target; "
                               "AKD's preset sets 0.5)")
    size_target: float | None = opt(
        None, gt=0, le=1, help="width-scaled spaces (nago) scale every network to budget.max_params, else to this "
                               "fraction of the teacher's parameters (null: no scaling; AutoKD's preset sets 0.1, "
                               "NAGO's equal-size premise)")
    reward_metric: RewardMetric = opt("latency_ms", help="cost in the reward")
    reward_mode: Literal["soft", "hard"] = opt("soft", help="soft: w = reward_alpha/beta; hard: w = 0 at or below T, "
                                                            "-1 above")
    reward_alpha: float = opt(-0.07, help="exponent w when the cost is at or below T")
    reward_beta: float = opt(-0.07, help="exponent w when the cost is above T")
    top_k: int = opt(0, ge=0, help="re-train the k best trials with the full recipe and test them (0: off)")
    objectives: list[ObjectiveName] = opt([], help="a multi-objective search: accuracy and one or more of latency, "
                                                   "params, flops, memory (e.g. [accuracy, latency]); the result is "
                                                   "the Pareto front with its hypervolume, and top_k re-trains a "
                                                   "spread of it (methods: random, tpe, nsga2; empty: one scalar "
                                                   "reward)")
    check_fidelity: int = opt(3, ge=0, help="with top_k: re-train this many more trials spanning the trial "
                                            "accuracies and report how well trial accuracy ranked full-recipe "
                                            "accuracy (Kendall τ, bootstrap interval; 0: off)")
    baseline: str | None = opt(None, registry="model", help="with top_k: also distil this hand-designed registry "
                                                             "model (e.g. resnet8) with the full recipe, so the "
                                                             "report says what the search gained over it (it must "
                                                             "fit the budget)")
    fidelity: Literal["trained", "blockwise"] = opt(
        "trained", help="how a trial scores its student: trained (KD-trains the whole student for search.epochs on "
                        "search.data_fraction) or blockwise (trains each stage alone to reproduce the teacher's stage, "
                        "for the same epochs and data, memoised across candidates; score exp(-mean block NSR); "
                        "stage-wise spaces such as stages)")
    blockwise_lr: float = opt(5e-3, gt=0, help="with fidelity=blockwise: Adam learning rate of each block")
    process: bool = opt(False, help="score each candidate by a short DistPro process search in its trial (joint "
                                    "student + process)")
    bn_recalibration: int = opt(2048, ge=0, help="training images that re-estimate a trial's BatchNorm statistics "
                                                 "before validation")
    heartbeat_seconds: float = opt(10.0, gt=0, help="how often a worker renews the lease on its running trial")
    stale_after_seconds: float = opt(60.0, gt=0, help="a lease older than this is taken over by another worker")
    max_retries: int = opt(3, ge=0, help="times an interrupted trial is re-queued")
    prescreen: PrescreenConfig = opt(factory=PrescreenConfig, help="zero-cost pre-screen of candidates")


@dataclass
class ExportConfig:
    """Deployable files; ``quantize=int8`` adds an int8 ONNX model calibrated on ``calibration_images`` training
    images, reported against fp32 (accuracy on the test split, size, latency)."""

    formats: list[ExportFormat] = opt(["onnx", "torchscript"], help="files to write")
    atol: float = opt(1e-4, ge=0, help="largest absolute output difference allowed between an export and the eager "
                                       "model")
    checkpoint: str | None = opt(None, help="checkpoint to export (null: the run's student/best.pt)")
    onnx_exporter: OnnxExporter = opt(
        "torchscript", help="torchscript: the tracing exporter (fast, no extra dependency); dynamo: torch.export + "
                            "the dynamo exporter (PyTorch's current path; needs onnxscript, the 'dynamo' extra)")
    quantize: Literal["none", "int8"] = opt("none", help="int8: also a static-quantised ONNX model, vs fp32")
    calibration_images: int = opt(512, ge=1, help="training images that calibrate the int8 activation ranges")


@dataclass
class MeasureConfig:
    """What ``archkd measure`` times, under the one latency protocol."""

    model: str | None = opt(None, help="registry name or checkpoint to measure")
    input_shape: list | None = opt(None, help="per-sample input shape C,H,W (null: the checkpoint's, or 3,32,32)")
    runtimes: list[str] = opt(["torch", "onnxruntime"], registry="runtime", help="runtimes to time")
    threads: int = opt(1, ge=1, help="intra-op threads of the runtimes")
    batch_size: int = opt(1, ge=1, help="batch size of the measurement")
    warmup: int = opt(10, ge=0, help="untimed calls before timing (archkd.measure.WARMUP, the protocol every latency "
                                     "uses)")
    repeats: int = opt(50, ge=1, help="timed calls; the median is reported (archkd.measure.REPEATS)")


@dataclass
class Config:
    """The whole run: every verb reads the sections it needs."""

    name: str = opt("run", help="run name: outputs go to <runs_dir>/<name>/")
    runs_dir: str = opt("runs", help="parent directory of runs")
    seed: int = opt(0, help="seed of data splits, subsets, initialisation and samplers")
    device: str = opt("auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    threads: int | None = opt(None, ge=1, help="torch CPU threads (null: $OMP_NUM_THREADS if set, else the idle "
                                               "cores)")
    cache_dir: str | None = opt(None, help="teacher-output caches, decoded datasets and latency predictors (null: "
                                           "~/.cache/archkd or $ARCHKD_CACHE)")
    data: DataConfig = opt(factory=DataConfig, help="the dataset and its splits")
    teacher: TeacherConfig = opt(factory=TeacherConfig, help="the teacher")
    student: StudentConfig = opt(factory=StudentConfig, help="the student")
    generic: GenericConfig = opt(factory=GenericConfig, help="GTN: the generic teacher")
    train: TrainConfig = opt(factory=TrainConfig, help="the student's training recipe")
    distill: DistillConfig = opt(factory=DistillConfig, help="the distillation loss")
    process: ProcessConfig = opt(factory=ProcessConfig, help="DistPro: the distillation process search and replay")
    budget: BudgetConfig = opt(factory=BudgetConfig, help="limits on a student")
    search: SearchConfig = opt(factory=SearchConfig, help="the KD-guided architecture search")
    export: ExportConfig = opt(factory=ExportConfig, help="deployable files")
    measure: MeasureConfig = opt(factory=MeasureConfig, help="'archkd measure'")

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name
