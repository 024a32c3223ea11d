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

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_core import run_layout
from fer_core.data import FaceDataset
from fer_core.files import write_json_atomically, write_text_atomically
from training import runs
from training.records import RunState, RunStatus

LATENCY_BUDGET_MS = {"vgg40": 40.0, "fernet40": 1.5}  # one face, one LiteRT thread
VIEW_CHOICES = {"vgg40": ("center", "flip", "crops"), "fernet40": ("center", "flip")}


@dataclass
class Candidate:
    name: str
    members: tuple[str, ...]
    views: str
    val_accuracy: float = 0.0
    latency_ms: float = 0.0
    within_budget: bool = False
    estimated: bool = False  # latency_ms is the sum of the members' (clearly over the budget), not timed

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


def read_reports(folders: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
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
    from training.averaging import recalibrate_batch_norm
    from training.config import TrainConfig
    from training.views import with_views

    folders = [folders] if isinstance(folders, Path) else list(folders)
    dataset = load_dataset(data)
    from training.splits import split_for_training

    train, val = split_for_training(dataset, 0.1, 42)
    made = []
    by_arch: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for path, phase in read_reports(folders):
        by_arch.setdefault(phase["arch"], []).append((path, phase))
    for arch, phases in by_arch.items():
        trunks = []
        recalibration = {}
        for path, phase in phases:
            seed = path.stem.rsplit("seed", 1)[-1] if "seed" in path.stem else "42"
            trunk = float32_trunk(path, f"{arch}_seed{seed}")
            done = path.with_name(f"{path.stem}.recalibrated.weights.h5")
            done_record = done.with_suffix(".json")
            if done.is_file() and done_record.is_file():  # an earlier unpack did this step
                trunk.load_weights(done)
                recalibration[trunk.name] = json.loads(done_record.read_text())
            else:
                centre = with_views(trunk, "center")
                before = view_accuracy(centre, val)
                saved = trunk.get_weights()
                recalibrate_batch_norm(centre, train.images)
                after = view_accuracy(centre, val)
                if after <= before:
                    trunk.set_weights(saved)
                recalibration[trunk.name] = {
                    "val_accuracy_before": before,
                    "val_accuracy_after": after,
                    "kept": after > before,
                }
                trunk.save_weights(done)
                done_record.write_text(json.dumps(recalibration[trunk.name]))
            record = recalibration[trunk.name]
            print(
                f"{trunk.name}: centre crop, validation {record['val_accuracy_before']:.4f} -> "
                f"{record['val_accuracy_after']:.4f} after batch-norm re-estimation",
                flush=True,
            )
            trunks.append((trunk, phase))
        candidates = []
        cache: dict[tuple[str, str], Any] = {}  # (trunk, views): its validation probabilities
        single_latency: dict[tuple[str, str], float] = {}  # (trunk, views): its served milliseconds
        for group in ensembles([trunk for trunk, _ in trunks]):
            for views in VIEW_CHOICES[arch]:
                model = with_views(group, views, name=f"{arch}_{views}")
                candidate = Candidate(
                    name=" + ".join(trunk.name for trunk in group) + f" ({views})",
                    members=tuple(trunk.name for trunk in group),
                    views=views,
                )
                # members' latencies add up (each runs on every view): a group whose members' sum is
                # clearly over the budget is not converted and timed, only estimated
                estimate = sum(single_latency.get((trunk.name, views), 0.0) for trunk in group)
                if len(group) > 1 and estimate > 1.25 * LATENCY_BUDGET_MS[arch]:
                    candidate.latency_ms, candidate.estimated = estimate, True
                else:
                    candidate.latency_ms = served_latency_ms(model)
                if len(group) == 1:
                    single_latency[(group[0].name, views)] = candidate.latency_ms
                candidate.within_budget = candidate.latency_ms <= LATENCY_BUDGET_MS[arch]
                if candidate.within_budget:  # a candidate over the budget cannot be chosen: not evaluated
                    # the served model averages its members' view-averaged probabilities: the same mean
                    mean = np.mean([view_probabilities(cache, trunk, views, val) for trunk in group], axis=0)
                    candidate.val_accuracy = float(np.mean(mean.argmax(axis=1) == val.labels))
                timed = "estimated" if candidate.estimated else "timed"
                print(
                    f"{candidate.name}: validation {candidate.val_accuracy:.4f}, {candidate.latency_ms:.2f} ms ({timed})",
                    flush=True,
                )
                candidates.append((candidate, group))
        eligible = [(candidate, group) for candidate, group in candidates if candidate.within_budget]
        if not eligible:
            raise RuntimeError(f"no {arch} candidate is within {LATENCY_BUDGET_MS[arch]} ms")
        chosen, group = max(eligible, key=lambda item: item[0].val_accuracy)
        print(f"chosen for {arch}: {chosen.name}")
        first_phase = trunks[0][1]
        config = TrainConfig(
            data=data,
            arch=arch,
            epochs=int(first_phase["epochs"]),
            batch_size=int(first_phase["batch_size"]),
            lr=float(first_phase["lr"]),
            crop=40,
            mixup=float(first_phase.get("mixup", 0.0)),
            erasing=float(first_phase.get("erasing", 0.0)),
            tta={"center": "none"}.get(chosen.views, chosen.views),
            backend="jax",
            distill_from=str(first_phase.get("distilled_from", "")),
            patience=10_000,
        )
        made.append(
            write_run(
                config,
                runs_dir,
                group,
                chosen,
                [candidate for candidate, _ in candidates],
                trunks,
                recalibration,
                train,
                val,
                dataset,
            )
        )
    return made


def write_run(
    config: Any,
    runs_dir: Path | None,
    group: list[Any],
    chosen: Candidate,
    candidates: list[Candidate],
    trunks: list[tuple[Any, dict[str, Any]]],
    recalibration: dict[str, Any],
    train: FaceDataset,
    val: FaceDataset,
    dataset: Any,
) -> Path:
    from training.finish import evaluate_served, export_served, save_misclassified
    from training.model_files import save_model_atomic
    from training.trainer import create_run
    from training.views import with_views

    if runs_dir is not None:
        import dataclasses

        config = dataclasses.replace(config, runs_dir=str(runs_dir))
    run_dir = create_run(config, command="python scripts/gpu_train.py pack/remote/unpack (see gpu.json)")
    model = with_views(group, chosen.views, name=f"{config.arch}_{chosen.views}")
    model_path = run_dir / run_layout.EXPORTED_MODEL
    save_model_atomic(model, model_path)
    save_model_atomic(model, run_dir / run_layout.BEST_CHECKPOINT)
    with open(run_dir / run_layout.SUMMARY_FILE, "w") as handle:
        model.summary(print_fn=lambda line, **_: handle.write(line + "\n"))
    temperature = export_served(model_path, val)
    report, probabilities = evaluate_served(model_path, dataset.split("test"))
    report["split"] = "test"
    first_phase = trunks[0][1]
    history = first_phase["history"]
    val_key = "val_accuracy" if "val_accuracy" in history else "val_student_accuracy"
    best_epoch = int(np.argmax(history[val_key])) + 1
    report["best_epoch"] = best_epoch
    kept = [value for name, value in recalibration.items() if name in chosen.members]
    report["batch_norm_recalibration"] = {
        "val_accuracy_before": float(np.mean([value["val_accuracy_before"] for value in kept])),
        "val_accuracy_after": float(np.mean([value["val_accuracy_after"] for value in kept])),
        "kept": any(value["kept"] for value in kept),
    }
    report["kept_val_accuracy"] = chosen.val_accuracy
    write_json_atomically(run_dir / run_layout.METRICS_FILE, report)
    save_misclassified(run_dir, dataset.split("test"), probabilities)
    rows = []
    train_key = "accuracy" if "accuracy" in history else "student_accuracy"
    for index in range(len(history["loss"])):
        rows.append(
            {
                "epoch": index + 1,
                "loss": history["loss"][index],
                "accuracy": history[train_key][index],
                "val_loss": history["val_loss"][index],
                "val_accuracy": history[val_key][index],
            }
        )
    write_json_atomically(run_dir / run_layout.HISTORY_JSON, {"epochs": rows, "batches": []})
    write_text_atomically(run_dir / run_layout.HISTORY_CSV, runs.history_to_csv(rows))
    seconds = sum(float(phase["seconds"]) for _, phase in trunks)
    now = time.time()
    status = RunStatus(
        state=RunState.FINISHED,
        created_at=now,
        started_at=now - seconds,
        finished_at=now,
        elapsed_s=seconds,
        epoch=len(rows),
        epochs=len(rows),
        epochs_done=len(rows),
        best_val_accuracy=float(max(history[val_key])),
        best_epoch=best_epoch,
        test_accuracy=report["accuracy"],
        precision="mixed_bfloat16",
        strategy="default",
        devices=1,
        train_size=int(first_phase.get("train_faces", len(train))),
        val_size=len(val),
        versions={key: str(value) for key, value in first_phase.get("versions", {}).items()},
    )
    write_json_atomically(run_dir / run_layout.STATUS_FILE, status.to_json())
    write_json_atomically(
        run_dir / "gpu.json",
        {
            "route": "GPU (scripts/gpu_train.py): Keras on JAX, one NVIDIA H200",
            "phases": [{key: value for key, value in phase.items() if key != "history"} for _, phase in trunks],
            "batch_norm_recalibration": recalibration,
            "candidates": [candidate.as_dict() for candidate in candidates],
            "chosen": chosen.as_dict(),
            "temperature": temperature,
            "selection_rule": "best validation accuracy among the candidates within the latency budget "
            f"({LATENCY_BUDGET_MS[config.arch]} ms, one face, one LiteRT thread)",
        },
    )
    print(
        f"{run_dir.name}: test accuracy {report['accuracy']:.4f}, macro-F1 {report.get('macro_f1', float('nan')):.4f}"
    )
    return run_dir
