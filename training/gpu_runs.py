"""Bring models trained on the GPU machine home as run folders (``scripts/gpu_train.py unpack``).

What comes back from the GPU is each trained trunk (``vgg40-seed42.keras``...) and ``report.json``
(recipe, epochs, per-epoch history, times, versions). Here, with TensorFlow:

1. each trunk is rebuilt in float32 and its batch-norm statistics re-estimated on clean training faces
   (kept if validation accuracy on the centre crop rises, as the trainer's finish step does);
2. candidates for the served model are built from the trunks of one architecture: every group of them
   (each alone, each pair, ... all together: an ensemble), under each test-time view set
   (:mod:`training.views`); a group's validation accuracy is read from its members' view-averaged
   probabilities, computed once per trunk and view set;
3. the rule, fixed before looking: the candidate with the best validation accuracy among those whose
   served LiteRT latency (one face, one thread) is within the model's budget (``LATENCY_BUDGET_MS``);
4. the winner becomes a normal run folder: ``model.keras``, its checked, calibrated LiteRT copy (the
   temperature fitted on the view-averaged validation outputs), ``metrics.json`` from the served copy on the
   test split (read once, here), ``history.json``, ``status.json``, ``config.json`` and ``gpu.json``
   (the GPU report and the candidates table).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer_core import run_layout
from fer_core.data import FaceDataset
from fer_core.files import write_json_atomically, write_text_atomically
from training import runs
from training.config import TrainConfig
from training.records import History, Recalibration, RunState, RunStatus

LATENCY_BUDGET_MS = {"vgg40": 40.0, "fernet40": 1.5}  # one face, one LiteRT thread
VIEW_CHOICES = {"vgg40": ("center", "flip", "crops"), "fernet40": ("center", "flip")}
SavedPhase = tuple[Path, dict[str, Any]]  # a trunk's file and its phase of the GPU report


@dataclass
class Candidate:
    name: str
    members: tuple[str, ...]
    views: str
    val_accuracy: float = 0.0
    latency_ms: float = 0.0
    within_budget: bool = False
    estimated: bool = False  # latency_ms is the sum of the members' (clearly over the budget), not timed
    trunks: tuple[Any, ...] = field(default=(), repr=False, compare=False)  # the members' models

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "members": list(self.members),
            "views": self.views,
            "val_accuracy": round(self.val_accuracy, 4) if self.within_budget else None,
            "latency_ms": round(self.latency_ms, 2),
            "within_budget": self.within_budget,
            "latency_estimated": self.estimated,
        }


@dataclass
class Trunk:
    """One trunk brought home: the float32 model, its phase of the GPU report and what re-estimating its
    batch-norm statistics did."""

    model: Any
    phase: dict[str, Any]
    recalibration: Recalibration


@dataclass
class Selection:
    """What unpacking found for one architecture: its trunks, every candidate and the chosen one."""

    trunks: list[Trunk]
    candidates: list[Candidate]
    chosen: Candidate

    @property
    def first_phase(self) -> dict[str, Any]:
        """The recipe, epochs and history the run reports (the first trunk's)."""
        return self.trunks[0].phase

    @property
    def recalibrations(self) -> dict[str, Recalibration]:
        return {trunk.model.name: trunk.recalibration for trunk in self.trunks}


def read_reports(folders: Sequence[Path]) -> list[SavedPhase]:
    """Every phase of every ``report.json``, with the file its trunk was saved to."""
    phases = []
    for folder in folders:
        report = json.loads((folder / "report.json").read_text())
        for phase in report["phases"].values():
            phases.append(
                (
                    folder / phase["file"],
                    {**phase, "versions": report.get("versions", {}), "devices": report.get("devices", [])},
                )
            )
    return phases


def float32_trunk(path: Path, name: str) -> Any:
    """The trunk saved at ``path`` rebuilt in float32 (GPU training ran in mixed bfloat16), named ``name``."""
    import keras

    from training.architectures import build_model
    from training.model_files import load_keras_model

    trained = load_keras_model(path)
    keras.mixed_precision.set_global_policy("float32")
    width = next(layer.filters for layer in trained.layers if hasattr(layer, "filters"))
    clean = build_model(trained.name, width=width)
    clean.set_weights(trained.get_weights())
    return keras.Model(clean.input, clean.output, name=name)


def ensembles(trunks: Sequence[Any]) -> list[list[Any]]:
    """Every non-empty group of ``trunks`` (each alone, each pair, ... all together), smallest first."""
    return [list(group) for size in range(1, len(trunks) + 1) for group in itertools.combinations(trunks, size)]


def view_probabilities(cache: dict[tuple[str, str], Any], trunk: Any, views: str, dataset: FaceDataset) -> Any:
    """The probabilities of ``trunk`` under ``views`` on ``dataset``, computed once per ``cache``."""
    from training.finish import predict_probabilities
    from training.views import with_views

    if (trunk.name, views) not in cache:
        cache[(trunk.name, views)] = predict_probabilities(with_views(trunk, views), dataset.images)
    return cache[(trunk.name, views)]


def view_accuracy(model: Any, dataset: FaceDataset) -> float:
    from training.finish import accuracy_on

    return accuracy_on(model, dataset)


def served_latency_ms(model: Any, repeats: int = 40) -> float:
    """Median milliseconds of one face through the model's LiteRT conversion, one thread."""
    from training import served_choice
    from training.export import convert_to_tflite

    return served_choice.served_latency_ms(convert_to_tflite(model), repeats)


def unpack_gpu_results(folders: Sequence[Path] | Path, data: str, runs_dir: Path | None = None) -> list[Path]:
    """Make one run folder per architecture found in ``folders`` (see the module's docstring)."""
    from fer_core.data import load_dataset
    from training.splits import split_for_training

    folders = [folders] if isinstance(folders, Path) else list(folders)
    dataset = load_dataset(data)
    train, val = split_for_training(dataset, 0.1, 42)
    made = []
    for arch, phases in phases_by_arch(read_reports(folders)).items():
        trunks = [recalibrated_trunk(path, phase, arch, train, val) for path, phase in phases]
        candidates = evaluate_candidates(arch, [trunk.model for trunk in trunks], val)
        chosen = choose_candidate(arch, candidates)
        config = gpu_train_config(data, arch, trunks[0].phase, chosen.views)
        made.append(write_run(config, runs_dir, Selection(trunks, candidates, chosen), train, val, dataset))
    return made


def phases_by_arch(phases: list[SavedPhase]) -> dict[str, list[SavedPhase]]:
    by_arch: dict[str, list[SavedPhase]] = {}
    for path, phase in phases:
        by_arch.setdefault(phase["arch"], []).append((path, phase))
    return by_arch


def recalibrated_trunk(path: Path, phase: dict[str, Any], arch: str, train: FaceDataset, val: FaceDataset) -> Trunk:
    """The trunk saved at ``path`` in float32, its batch-norm statistics re-estimated (see
    :func:`recalibrate_trunk`). The result is kept beside the trunk, so a second unpack reuses it."""
    seed = path.stem.rsplit("seed", 1)[-1] if "seed" in path.stem else "42"
    model = float32_trunk(path, f"{arch}_seed{seed}")
    weights_file = path.with_name(f"{path.stem}.recalibrated.weights.h5")
    record_file = weights_file.with_suffix(".json")
    if weights_file.is_file() and record_file.is_file():  # an earlier unpack did this step
        model.load_weights(weights_file)
        recalibration = Recalibration.from_json(json.loads(record_file.read_text()), str(record_file))
    else:
        recalibration = recalibrate_trunk(model, train, val)
        model.save_weights(weights_file)
        write_json_atomically(record_file, recalibration.to_json())
    print(
        f"{model.name}: centre crop, validation {recalibration.val_accuracy_before:.4f} -> "
        f"{recalibration.val_accuracy_after:.4f} after batch-norm re-estimation",
        flush=True,
    )
    return Trunk(model, phase, recalibration)


def recalibrate_trunk(model: Any, train: FaceDataset, val: FaceDataset) -> Recalibration:
    """Re-estimate the batch-norm statistics of ``model`` on the clean ``train`` faces, keeping them if
    the centre crop's validation accuracy rises (as the trainer's finish step does)."""
    from training.averaging import recalibrate_batch_norm
    from training.views import with_views

    centre = with_views(model, "center")
    before = view_accuracy(centre, val)
    saved = model.get_weights()
    recalibrate_batch_norm(centre, train.images)
    after = view_accuracy(centre, val)
    if after <= before:
        model.set_weights(saved)
    return Recalibration(kept=after > before, val_accuracy_before=before, val_accuracy_after=after)


def evaluate_candidates(arch: str, trunks: list[Any], val: FaceDataset) -> list[Candidate]:
    """Every group of ``trunks`` under each of the architecture's view sets, timed and (when within the
    latency budget) evaluated on ``val``."""
    candidates = []
    probabilities: dict[tuple[str, str], Any] = {}  # (trunk, views): its validation probabilities
    single_latency: dict[tuple[str, str], float] = {}  # (trunk, views): its served milliseconds
    for group in ensembles(trunks):
        for views in VIEW_CHOICES[arch]:
            candidate = Candidate(
                name=" + ".join(trunk.name for trunk in group) + f" ({views})",
                members=tuple(trunk.name for trunk in group),
                views=views,
                trunks=tuple(group),
            )
            candidate.latency_ms, candidate.estimated = candidate_latency(arch, candidate, single_latency)
            if len(group) == 1:
                single_latency[(group[0].name, views)] = candidate.latency_ms
            candidate.within_budget = candidate.latency_ms <= LATENCY_BUDGET_MS[arch]
            if candidate.within_budget:  # a candidate over the budget cannot be chosen: not evaluated
                candidate.val_accuracy = ensemble_accuracy(candidate, val, probabilities)
            timed = "estimated" if candidate.estimated else "timed"
            print(
                f"{candidate.name}: validation {candidate.val_accuracy:.4f}, {candidate.latency_ms:.2f} ms ({timed})",
                flush=True,
            )
            candidates.append(candidate)
    return candidates


def candidate_latency(
    arch: str, candidate: Candidate, single_latency: dict[tuple[str, str], float]
) -> tuple[float, bool]:
    """The candidate's served milliseconds, and whether they are estimated rather than timed. Members'
    latencies add up (each runs on every view): a group whose members' sum is clearly over the budget is
    not converted and timed, only estimated."""
    from training.views import with_views

    views = candidate.views
    estimate = sum(single_latency.get((trunk.name, views), 0.0) for trunk in candidate.trunks)
    if len(candidate.trunks) > 1 and estimate > 1.25 * LATENCY_BUDGET_MS[arch]:
        return estimate, True
    return served_latency_ms(with_views(list(candidate.trunks), views, name=f"{arch}_{views}")), False


def ensemble_accuracy(candidate: Candidate, val: FaceDataset, probabilities: dict[tuple[str, str], Any]) -> float:
    """The candidate's validation accuracy: the served model averages its members' view-averaged
    probabilities, so the mean of theirs (each computed once per ``probabilities``) is its output."""
    mean = np.mean(
        [view_probabilities(probabilities, trunk, candidate.views, val) for trunk in candidate.trunks], axis=0
    )
    return float(np.mean(mean.argmax(axis=1) == val.labels))


def choose_candidate(arch: str, candidates: list[Candidate]) -> Candidate:
    """The rule, fixed before looking: the best validation accuracy among those within the budget."""
    eligible = [candidate for candidate in candidates if candidate.within_budget]
    if not eligible:
        raise RuntimeError(f"no {arch} candidate is within {LATENCY_BUDGET_MS[arch]} ms")
    chosen = max(eligible, key=lambda candidate: candidate.val_accuracy)
    print(f"chosen for {arch}: {chosen.name}")
    return chosen


def gpu_train_config(data: str, arch: str, phase: dict[str, Any], views: str) -> TrainConfig:
    """The settings the GPU phase trained with, as the run's config (the chosen views as its ``tta``)."""
    return TrainConfig(
        data=data,
        arch=arch,
        epochs=int(phase["epochs"]),
        batch_size=int(phase["batch_size"]),
        lr=float(phase["lr"]),
        crop=40,
        mixup=float(phase.get("mixup", 0.0)),
        erasing=float(phase.get("erasing", 0.0)),
        tta={"center": "none"}.get(views, views),
        backend="jax",
        distill_from=str(phase.get("distilled_from", "")),
        patience=10_000,
    )


def write_run(
    config: TrainConfig,
    runs_dir: Path | None,
    selection: Selection,
    train: FaceDataset,
    val: FaceDataset,
    dataset: FaceDataset,
) -> Path:
    """The chosen candidate as a run folder: its model files, then metrics, history, status and gpu.json."""
    from training.finish import evaluate_served, export_served, save_misclassified
    from training.trainer import create_run

    if runs_dir is not None:
        config = dataclasses.replace(config, runs_dir=str(runs_dir))
    run_dir = create_run(config, command="python scripts/gpu_train.py pack/remote/unpack (see gpu.json)")
    model_path = save_chosen_model(run_dir, config.arch, selection.chosen)
    temperature = export_served(model_path, val)
    test = dataset.split("test")
    report, probabilities = evaluate_served(model_path, test)
    history = selection.first_phase["history"]
    add_selection_to_report(report, selection, best_epoch(history))
    write_json_atomically(run_dir / run_layout.METRICS_FILE, report)
    save_misclassified(run_dir, test, probabilities)
    rows = epoch_rows(history)
    write_json_atomically(run_dir / run_layout.HISTORY_JSON, History(epochs=tuple(rows)).to_json())
    write_text_atomically(run_dir / run_layout.HISTORY_CSV, runs.history_to_csv(rows))
    status = finished_status(selection, report, rows, train, val)
    write_json_atomically(run_dir / run_layout.STATUS_FILE, status.to_json())
    write_json_atomically(run_dir / "gpu.json", gpu_record(config.arch, selection, temperature))
    print(
        f"{run_dir.name}: test accuracy {report['accuracy']:.4f}, macro-F1 {report.get('macro_f1', float('nan')):.4f}"
    )
    return run_dir


def save_chosen_model(run_dir: Path, arch: str, chosen: Candidate) -> Path:
    """The chosen candidate as the run's ``model.keras`` (and its best checkpoint, and its summary)."""
    from training.model_files import save_model_atomic
    from training.views import with_views

    model = with_views(list(chosen.trunks), chosen.views, name=f"{arch}_{chosen.views}")
    model_path = run_dir / run_layout.EXPORTED_MODEL
    save_model_atomic(model, model_path)
    save_model_atomic(model, run_dir / run_layout.BEST_CHECKPOINT)
    with open(run_dir / run_layout.SUMMARY_FILE, "w") as handle:
        model.summary(print_fn=lambda line, **_: handle.write(line + "\n"))
    return model_path


def history_keys(history: dict[str, list[float]]) -> tuple[str, str]:
    """The training and validation accuracy keys of a GPU phase's history (a distilled student's are
    ``student_accuracy`` and ``val_student_accuracy``)."""
    train_key = "accuracy" if "accuracy" in history else "student_accuracy"
    val_key = "val_accuracy" if "val_accuracy" in history else "val_student_accuracy"
    return train_key, val_key


def best_epoch(history: dict[str, list[float]]) -> int:
    _, val_key = history_keys(history)
    return int(np.argmax(history[val_key])) + 1


def epoch_rows(history: dict[str, list[float]]) -> list[dict[str, Any]]:
    """The GPU phase's history as the trainer's ``history.json`` rows, one per epoch."""
    train_key, val_key = history_keys(history)
    return [
        {
            "epoch": index + 1,
            "loss": history["loss"][index],
            "accuracy": history[train_key][index],
            "val_loss": history["val_loss"][index],
            "val_accuracy": history[val_key][index],
        }
        for index in range(len(history["loss"]))
    ]


def add_selection_to_report(report: dict[str, Any], selection: Selection, epoch: int) -> None:
    """The test report (``metrics.json``) with the best epoch, the chosen members' batch-norm
    re-estimation (their mean) and the chosen candidate's validation accuracy."""
    kept = [value for name, value in selection.recalibrations.items() if name in selection.chosen.members]
    report["split"] = "test"
    report["best_epoch"] = epoch
    report["batch_norm_recalibration"] = Recalibration(
        kept=any(value.kept for value in kept),
        val_accuracy_before=float(np.mean([value.val_accuracy_before for value in kept])),
        val_accuracy_after=float(np.mean([value.val_accuracy_after for value in kept])),
    ).to_json()
    report["kept_val_accuracy"] = selection.chosen.val_accuracy


def finished_status(
    selection: Selection, report: dict[str, Any], rows: list[dict[str, Any]], train: FaceDataset, val: FaceDataset
) -> RunStatus:
    """A finished run's ``status.json``: its time is the GPU phases' (ending now)."""
    phase = selection.first_phase
    history = phase["history"]
    _, val_key = history_keys(history)
    seconds = sum(float(trunk.phase["seconds"]) for trunk in selection.trunks)
    now = time.time()
    return RunStatus(
        state=RunState.FINISHED,
        created_at=now,
        started_at=now - seconds,
        finished_at=now,
        elapsed_s=seconds,
        epoch=len(rows),
        epochs=len(rows),
        epochs_done=len(rows),
        best_val_accuracy=float(max(history[val_key])),
        best_epoch=best_epoch(history),
        test_accuracy=report["accuracy"],
        precision="mixed_bfloat16",
        strategy="default",
        devices=1,
        train_size=int(phase.get("train_faces", len(train))),
        val_size=len(val),
        versions={key: str(value) for key, value in phase.get("versions", {}).items()},
    )


def gpu_record(arch: str, selection: Selection, temperature: float) -> dict[str, Any]:
    """``gpu.json``: the GPU phases (without their histories), each trunk's batch-norm re-estimation,
    every candidate, the chosen one and the rule that chose it."""
    return {
        "route": "GPU (scripts/gpu_train.py): Keras on JAX, one NVIDIA H200",
        "phases": [
            {key: value for key, value in trunk.phase.items() if key != "history"} for trunk in selection.trunks
        ],
        "batch_norm_recalibration": {name: value.to_json() for name, value in selection.recalibrations.items()},
        "candidates": [candidate.as_dict() for candidate in selection.candidates],
        "chosen": selection.chosen.as_dict(),
        "temperature": temperature,
        "selection_rule": "best validation accuracy among the candidates within the latency budget "
        f"({LATENCY_BUDGET_MS[arch]} ms, one face, one LiteRT thread)",
    }
