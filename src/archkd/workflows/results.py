"""Typed results of the verbs: one dataclass per verb, whose ``to_dict()`` is what ``results.json`` records.

Why each is also a dict: the verbs returned plain dicts before, and callers index them (``r["val_acc"]``), unpack
them and write them as JSON. A ``VerbResult`` is a dict kept equal to its fields (setting a field sets the item and
back), so all of that keeps working while new code reads fields (``r.val_acc``). Fields in ``OPTIONAL`` are left
out of the dict while they are ``None`` (``"top_k" in r`` only after a finalisation).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


class VerbResult(dict):
    """Base of the typed results (see the module docstring); subclasses are ``@result`` dataclasses."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in self.field_names():
            self._item(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self.field_names():
            object.__setattr__(self, key, value)
        self._item(key, value)

    def _item(self, key: str, value: Any) -> None:
        if value is None and key in self.OPTIONAL:
            dict.pop(self, key, None)
        else:
            dict.__setitem__(self, key, value)

    def to_dict(self) -> dict:
        """The plain dict ``results.json`` records (a shallow copy: nested results stay what they are)."""
        return dict(self)


def result(cls: type) -> type:
    """A ``VerbResult`` dataclass: fields in the dict's order, dict equality, the dataclass's repr."""
    return dataclass(eq=False)(cls)


@result
class TrainedTeacher(VerbResult):
    """What both teacher verbs report first: the checkpoint, the network, its accuracy, the training time."""
    checkpoint: str
    name: str
    params: int
    val_acc: float
    test_acc: float | None
    seconds: float


@result
class TeacherRun(TrainedTeacher):
    """``archkd teacher train``: the trained teacher's checkpoint and accuracy."""
    precision: str | None
    history: list


@result
class GenericTeacherRun(TrainedTeacher):
    """``archkd teacher generic`` (GTN): the teacher, its supernet and the pool it was trained against."""
    history: list
    init: str
    supernet: str
    space: str
    path_entropy: Any
    pool: list


@result
class DistillRun(VerbResult):
    """``archkd distill``: the student, its budgets, its and the teacher's accuracy, how the training went."""
    spec: dict
    checkpoint: str
    params: int
    flops: int
    macs: int
    latency: dict | None
    peak_activation_bytes: int | None
    val_acc: float
    test_acc: float | None
    teacher_val_acc: float
    teacher_test_acc: float | None
    epochs: int
    history: list
    seconds: float
    images_per_s: float | None
    precision: str | None
    cache: Any
    process: str | None
    process_replay: str | None
    pathway_loss_saved: float | None


@result
class ProcessSearchRun(VerbResult):
    """``archkd process search`` (DistPro): the pathways, their final weights, the student trained meanwhile."""
    OPTIONAL: ClassVar[tuple[str, ...]] = ("process",)
    pathways: list[str]
    student_taps: list[str]
    teacher_taps: list[str]
    epochs: int
    steps: int
    val_acc: float
    seconds: float
    meta_seconds: float
    history: list
    final_weights: list[float]
    spec: dict
    process: str | None = None  # the saved process file (written runs only)


@result
class SearchRun(VerbResult):
    """``archkd search``: the study as this worker saw it — best trial, Pareto set, trials, and the top k."""
    OPTIONAL: ClassVar[tuple[str, ...]] = ("prescreen", "top_k", "fidelity_check", "comparison")
    space: str
    scaled_to_params: int | None
    sampler: str
    sampler_info: dict
    guide: str
    n_trials: int
    fidelity: dict
    storage: str
    study_name: str
    reward: str
    best_trial: int
    best: dict
    pareto: dict
    trials: list[dict]
    seconds: float = 0.0
    importances: dict[str, float] | None = None  # archkd.search.importance: fANOVA share of each parameter
    prescreen: dict | None = None
    top_k: list[dict] | None = None
    fidelity_check: dict | None = None  # archkd.search.fidelity.FidelityCheck.to_dict()
    comparison: dict | None = None  # archkd.workflows.compare.Comparison.to_dict(): teacher, student, baseline


@result
class Family(VerbResult):
    """``archkd family sample``: new members of the best trial's generator."""
    trial: int
    generator: dict
    recipe: dict
    members: list[dict] = field(default_factory=list)


@result
class MeasureRun(VerbResult):
    """``archkd measure``: a model's deployment budgets, every one for the same input (``input_shape`` at
    ``batch_size``); ``latency`` maps each runtime to its ``LatencyResult.to_dict()``."""
    params: int
    flops: int
    macs: int
    peak_activation_bytes: int | None
    input_shape: list[int]
    batch_size: int
    latency: dict


@result
class ExportRun(VerbResult):
    """``archkd export``: the file of each format written, each format's largest difference from PyTorch on a real
    validation batch, the metadata file and, with ``export.quantize=int8``, the int8 model against fp32."""
    OPTIONAL: ClassVar[tuple[str, ...]] = ("onnx", "torchscript", "int8")
    onnx: str | None = None
    torchscript: str | None = None
    max_abs_diff: dict = field(default_factory=dict)
    metadata: str = ""
    int8: dict | None = None


@result
class PredictorRun(VerbResult):
    """``archkd predictor``: where this machine's latency predictor went and how well it predicts."""
    path: str
    space: str
    runtime: str
    threads: int
    batch_size: int
    input_shape: list[int]
    samples: int
    blocks: int
    validation: dict
    busy_share: float
    seconds: float
