"""What the files of a run folder hold, as typed records: parsed once, checked, then trusted.

A run folder is written by the trainer, but a person (or a full disk, or another version) may leave
a file that is not JSON, or JSON of the wrong shape (``"pid": "abc"``, ``"epochs": 5``). Each
``from_json`` checks the types of every field it keeps and raises :class:`RecordError` naming the
file and the key; callers show "unreadable: <reason>" for that run and carry on with the others.
Unknown keys are ignored (a newer trainer may write more). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fer_core.calibration import ReliabilityBin
from fer_core.files import replace_atomically
from fer_core.labels import EMOTIONS
from fer_core.records import Fields, RecordError, describe
from fer_core.run_layout import (
    CHECKPOINT_INFO,
    CONFIG_FILE,
    HISTORY_JSON,
    METRICS_FILE,
    MISCLASSIFIED_FILE,
    STATUS_FILE,
)
from training.config import ConfigError, TrainConfig, config_from_mapping


class RunState(StrEnum):
    """Where a run is (``status.json``'s ``state``): written by the launcher and the trainer, shown by
    the Training page and the CLI. Members are strings, so they compare equal to what the file holds."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    UNKNOWN = "unknown"  # no status.json (yet)


class RunPhase(StrEnum):
    """What an active run is doing (``status.json``'s ``phase``), in the order a run goes through them."""

    STARTING = "starting"
    LOADING_DATA = "loading data"
    BUILDING_MODEL = "building model"
    LOADING_INITIAL_WEIGHTS = "loading initial weights"
    LOADING_TEACHERS = "loading teachers"
    TRAINING = "training"
    EXPORTING = "exporting"
    RECALIBRATING = "recalibrating"
    EVALUATING = "evaluating"


_STATE_NAMES = frozenset(state.value for state in RunState)
RUN_STATES = tuple(state for state in RunState if state is not RunState.UNKNOWN)
ACTIVE_STATES = frozenset({RunState.QUEUED, RunState.RUNNING})
FINISH_PHASES = frozenset({RunPhase.EXPORTING, RunPhase.RECALIBRATING, RunPhase.EVALUATING})  # after the epochs


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields for its file: a field that is not set (None) is left out, as readers take it."""
    return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class RunStatus:
    """``status.json``: where the run is, rewritten by the launcher and the trainer as it goes."""

    state: RunState = RunState.UNKNOWN
    phase: str | None = None  # a RunPhase while active (kept as text: an older or newer trainer may write others)
    pid: int | None = None
    pid_started: int | None = None
    created_at: float | None = None
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    launched_at: float | None = None
    resumed_at: float | None = None
    session_started_at: float | None = None
    elapsed_before_s: float | None = None
    elapsed_s: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    epochs_done: int | None = None
    seconds_per_step: float | None = None
    epoch_time_estimate_s: float | None = None
    eta_s: float | None = None
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_accuracy: float | None = None
    precision: str | None = None
    strategy: str | None = None
    devices: int | None = None
    train_size: int | None = None
    val_size: int | None = None
    error: str | None = None
    traceback: str | None = None
    stop_reason: str | None = None
    diverged: bool = False  # the loss became NaN or infinite: the run's model is not to be used
    resume_note: str | None = None  # how the last resume started (from best.keras when last.keras was unreadable)
    versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, where: str = STATUS_FILE) -> RunStatus:
        fields = Fields(data, where)
        state = fields.text("state") or RunState.UNKNOWN
        if state not in _STATE_NAMES:
            raise RecordError(f"{where}: state must be one of {', '.join(RUN_STATES)}, got {state!r}")
        values: dict[str, Any] = {"state": RunState(state), "versions": fields.strings("versions")}
        for name in ("phase", "precision", "strategy", "error", "traceback", "stop_reason", "resume_note"):
            values[name] = fields.text(name)
        for name in ("pid", "pid_started"):
            values[name] = fields.integer(name, minimum=1)
        for name in (
            "epoch",
            "epochs",
            "step",
            "steps",
            "epochs_done",
            "best_epoch",
            "devices",
            "train_size",
            "val_size",
        ):
            values[name] = fields.integer(name, minimum=0)
        for name in (
            "created_at",
            "started_at",
            "updated_at",
            "finished_at",
            "launched_at",
            "resumed_at",
            "session_started_at",
            "elapsed_before_s",
            "elapsed_s",
            "seconds_per_step",
            "epoch_time_estimate_s",
            "eta_s",
            "best_val_accuracy",
            "test_accuracy",
        ):
            values[name] = fields.number(name)
        values["diverged"] = fields.flag("diverged")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, as ``status.json`` holds them."""
        values = _without_none(dataclasses.asdict(self))
        values["versions"] = dict(self.versions)
        if not self.diverged:
            del values["diverged"]
        return values

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def duration_s(self) -> float | None:
        """Seconds spent training: as recorded, else from the start to the end (or the last update)."""
        if self.elapsed_s is not None:
            return self.elapsed_s
        if self.started_at is None:
            return None
        return (self.finished_at or self.updated_at or self.started_at) - self.started_at


HistoryRow = Mapping[str, float | None]  # "epoch" and one value per metric (loss, val_accuracy, lr...)


@dataclass(frozen=True)
class History:
    """``history.json``: one row per completed epoch, and running averages within epochs (batches)."""

    epochs: tuple[HistoryRow, ...] = ()
    batches: tuple[HistoryRow, ...] = ()

    @classmethod
    def from_json(cls, data: Any, where: str = HISTORY_JSON) -> History:
        fields = Fields(data, where)
        return cls(
            epochs=tuple(
                _history_row(row, f"{where}: epochs[{index}]") for index, row in enumerate(fields.rows("epochs"))
            ),
            batches=tuple(
                _history_row(row, f"{where}: batches[{index}]") for index, row in enumerate(fields.rows("batches"))
            ),
        )

    def to_json(self) -> dict[str, list[dict[str, float | None]]]:
        """Plain lists of dicts: for the charts, and for the trainer to append to."""
        return {"epochs": [dict(row) for row in self.epochs], "batches": [dict(row) for row in self.batches]}

    @property
    def best_val_accuracy(self) -> float | None:
        values = [row["val_accuracy"] for row in self.epochs if row.get("val_accuracy") is not None]
        return max(values) if values else None  # type: ignore[type-var]

    def up_to(self, epoch: int) -> History:
        """The history of the first ``epoch`` epochs (what a checkpoint of that epoch had seen)."""
        return History(
            epochs=tuple(row for row in self.epochs if (row.get("epoch") or 0) <= epoch),
            batches=tuple(point for point in self.batches if (point.get("epoch") or 0) <= epoch),
        )


def _history_row(row: Any, where: str) -> HistoryRow:
    fields = Fields(row, where)
    if fields.number("epoch") is None:
        raise RecordError(f"{where}: epoch is missing")
    return {key: fields.number(key) for key in row}


STATUS_FIELDS = frozenset(status_field.name for status_field in dataclasses.fields(RunStatus))


def check_status_changes(changes: Mapping[str, Any]) -> None:
    """Refuse a status update that names a field :class:`RunStatus` does not have (a typo would
    otherwise write a key no reader looks at), or a state that is not a :class:`RunState`."""
    unknown = sorted(set(changes) - STATUS_FIELDS - {"updated_at"})
    if unknown:
        raise TypeError(f"{STATUS_FILE} has no field {', '.join(unknown)} (see training.records.RunStatus)")
    state = changes.get("state")
    if state is not None and state not in _STATE_NAMES:
        raise ValueError(f"{state!r} is not a run state (one of {', '.join(RUN_STATES)})")


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Recalibration:
    """What re-estimating the batch-norm statistics on clean training faces did (see training.averaging)."""

    kept: bool
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Recalibration:
        fields = Fields(data, where)
        return cls(
            kept=fields.flag("kept"),
            val_accuracy_before=fields.number("val_accuracy_before"),
            val_accuracy_after=fields.number("val_accuracy_after"),
            error=fields.text("error"),
        )

    def to_json(self) -> dict[str, Any]:
        return _without_none(dataclasses.asdict(self))


@dataclass(frozen=True)
class Calibration:
    """How well the served probabilities match accuracy on the held-out faces, before and after the
    temperature fitted on the validation faces (see fer_core.calibration)."""

    temperature: float
    ece_before: float
    ece_after: float
    bins_before: tuple[ReliabilityBin, ...] = ()
    bins_after: tuple[ReliabilityBin, ...] = ()
    faces: int | None = None
    nll_before: float | None = None
    nll_after: float | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> Calibration:
        fields = Fields(data, where)
        return cls(
            temperature=fields.required_number("temperature"),
            ece_before=fields.required_number("ece_before"),
            ece_after=fields.required_number("ece_after"),
            bins_before=_bins(fields.rows("bins_before"), f"{where}: bins_before"),
            bins_after=_bins(fields.rows("bins_after"), f"{where}: bins_after"),
            faces=fields.integer("faces", minimum=0),
            nll_before=fields.number("nll_before"),
            nll_after=fields.number("nll_after"),
        )

    def to_json(self) -> dict[str, Any]:
        values = _without_none(dataclasses.asdict(self))
        values["bins_before"] = [row._asdict() for row in self.bins_before]
        values["bins_after"] = [row._asdict() for row in self.bins_after]
        return values


def _bins(rows: list[Any], where: str) -> tuple[ReliabilityBin, ...]:
    bins = []
    for index, row in enumerate(rows):
        fields = Fields(row, f"{where}[{index}]")
        bins.append(
            ReliabilityBin(
                lower=fields.required_number("lower"),
                upper=fields.required_number("upper"),
                faces=fields.required_integer("faces"),
                confidence=fields.required_number("confidence"),
                accuracy=fields.required_number("accuracy"),
            )
        )
    return tuple(bins)


@dataclass(frozen=True)
class ServedCopy:
    """Which copy of the model an evaluation ran: the runtime, the file and the test-time views."""

    runtime: str
    file: str
    tta: bool = False

    @classmethod
    def from_json(cls, data: Any, where: str) -> ServedCopy:
        fields = Fields(data, where)
        return cls(runtime=fields.text("runtime") or "", file=fields.text("file") or "", tta=fields.flag("tta"))


@dataclass(frozen=True)
class RunMetrics:
    """``metrics.json``: the exported model evaluated on the held-out faces when the run finished."""

    accuracy: float
    macro_f1: float
    n: int
    split: str = "test"
    per_class: Mapping[str, ClassScores] = field(default_factory=dict)
    confusion: tuple[tuple[int, ...], ...] = ()
    labels: tuple[str, ...] = ()
    best_epoch: int | None = None
    recalibration: Recalibration | None = None
    calibration: Calibration | None = None
    served: ServedCopy | None = None

    @property
    def kept_val_accuracy(self) -> float | None:
        """The validation accuracy of the model the run kept: after batch-norm re-estimation when that
        was kept, else before it (the best epoch's weights, measured again). None when not measured."""
        recalibration = self.recalibration
        if recalibration is None or recalibration.error:
            return None
        return recalibration.val_accuracy_after if recalibration.kept else recalibration.val_accuracy_before

    @classmethod
    def from_json(cls, data: Any, where: str = METRICS_FILE) -> RunMetrics:
        fields = Fields(data, where)
        per_class_data = data.get("per_class") or {}
        if not isinstance(per_class_data, dict):
            raise RecordError(f"{where}: per_class must be a table, got {describe(per_class_data)}")
        per_class = {}
        for emotion, scores in per_class_data.items():
            score_fields = Fields(scores, f"{where}: per_class.{emotion}")
            per_class[emotion] = ClassScores(
                precision=score_fields.required_number("precision"),
                recall=score_fields.required_number("recall"),
                f1=score_fields.required_number("f1"),
                support=score_fields.required_integer("support"),
            )
        labels = fields.rows("labels")
        if not all(isinstance(label, str) for label in labels):
            raise RecordError(f"{where}: labels must be a list of text")
        confusion = fields.rows("confusion")
        square = len(confusion) == len(labels) and all(
            isinstance(row, list) and len(row) == len(labels) for row in confusion
        )
        if confusion and not (
            square and all(isinstance(v, int) and not isinstance(v, bool) for row in confusion for v in row)
        ):
            raise RecordError(f"{where}: confusion must be a square table of counts, one row per label")
        recalibration = data.get("batch_norm_recalibration")
        return cls(
            accuracy=fields.required_number("accuracy"),
            macro_f1=fields.required_number("macro_f1"),
            n=fields.required_integer("n"),
            split=fields.text("split") or "test",
            per_class=per_class,
            confusion=tuple(tuple(row) for row in confusion),
            labels=tuple(labels),
            best_epoch=fields.integer("best_epoch"),
            recalibration=None
            if recalibration is None
            else Recalibration.from_json(recalibration, f"{where}: batch_norm_recalibration"),
            calibration=None
            if data.get("calibration") is None
            else Calibration.from_json(data["calibration"], f"{where}: calibration"),
            served=None if data.get("served") is None else ServedCopy.from_json(data["served"], f"{where}: served"),
        )

    def to_json(self) -> dict[str, Any]:
        """As ``metrics.json`` holds it (the batch-norm re-estimation under its file name)."""
        values: dict[str, Any] = {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": {emotion: dataclasses.asdict(scores) for emotion, scores in self.per_class.items()},
            "confusion": [list(row) for row in self.confusion],
            "labels": list(self.labels),
            "split": self.split,
            "best_epoch": self.best_epoch,
            "batch_norm_recalibration": None if self.recalibration is None else self.recalibration.to_json(),
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "served": None if self.served is None else dataclasses.asdict(self.served),
        }
        return _without_none(values)


@dataclass(frozen=True)
class RunConfig:
    """``config.json``: the run's settings (a checked :class:`TrainConfig`) and how it was started."""

    settings: TrainConfig
    learning_rate: float | None = None
    data_source: str | None = None
    command: str | None = None
    created_at: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = CONFIG_FILE) -> RunConfig:
        fields = Fields(data, where)
        if "settings" not in data:
            raise RecordError(f"{where}: settings are missing")
        try:
            settings = config_from_mapping(data["settings"], source=f"{where}: settings")
        except ConfigError as error:
            raise RecordError(str(error)) from None
        return cls(
            settings=settings,
            learning_rate=fields.number("learning_rate"),
            data_source=fields.text("data_source"),
            command=fields.text("command"),
            created_at=fields.text("created_at"),
        )

    def to_json(self) -> dict[str, Any]:
        values = _without_none(dataclasses.asdict(self))
        values["settings"] = self.settings.to_dict()
        return values


@dataclass(frozen=True)
class CheckpointInfo:
    """``checkpoint.json``: which epoch ``last.keras`` holds, and the best so far (``best.keras``)."""

    epoch: int = 0
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    saved_at: float | None = None

    @classmethod
    def from_json(cls, data: Any, where: str = CHECKPOINT_INFO) -> CheckpointInfo:
        fields = Fields(data, where)
        return cls(
            epoch=fields.integer("epoch", minimum=0) or 0,
            best_val_accuracy=fields.number("best_val_accuracy"),
            best_epoch=fields.integer("best_epoch", minimum=0),
            saved_at=fields.number("saved_at"),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Mistakes:
    """``misclassified.npz``: the held-out faces the run's model got wrong with the most confidence,
    most confident first (the Training page's gallery). One row per face in every array."""

    images: npt.NDArray[np.uint8]  # 48x48 gray faces
    labels: npt.NDArray[np.int64]  # the true emotion codes
    predicted: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float32]  # the served probability of the predicted emotion
    source_ids: npt.NDArray[np.str_]

    @classmethod
    def from_npz(cls, path: Path) -> Mistakes:
        """Raises :class:`RecordError` when the file cannot be read, its arrays disagree in length, or
        an emotion code is not one this app knows."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                mistakes = cls(
                    images=stored["images"],
                    labels=stored["labels"],
                    predicted=stored["predicted"],
                    confidence=stored["confidence"],
                    source_ids=stored["source_ids"] if "source_ids" in stored.files else np.array([], dtype=str),
                )
        except (OSError, ValueError, KeyError) as error:
            raise RecordError(f"{MISCLASSIFIED_FILE} cannot be read ({error})") from None
        if not len(mistakes.images) == len(mistakes.labels) == len(mistakes.predicted) == len(mistakes.confidence):
            raise RecordError(f"{MISCLASSIFIED_FILE}: its arrays do not have one row per face")
        if not all(np.all((codes >= 0) & (codes < len(EMOTIONS))) for codes in (mistakes.labels, mistakes.predicted)):
            raise RecordError(f"{MISCLASSIFIED_FILE}: they do not match the emotions this app knows")
        return mistakes

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        arrays = {name: getattr(self, name) for name in ("images", "labels", "predicted", "confidence", "source_ids")}
        replace_atomically(path, lambda temporary: np.savez_compressed(temporary, **arrays))
