"""Choose the served form of trained trunks for a latency budget: which trunks, which test-time views,
float32 or quantized weights.

    python scripts/choose_served.py models/fer_default.keras models/fer_fast.keras --data <fer2013> --out DIR

Every candidate is a group of the trunks found in the given models (each alone, each pair, ...), under
each view set of :mod:`training.views`, converted to LiteRT as float32 and with dynamic quantization
(int8 weights, see :func:`training.export.convert_to_tflite`). The rule, fixed before looking: for each
budget, the candidate with the best validation accuracy of its *served* copy (LiteRT, as the app runs
it) among those whose latency (median of one-face calls, one LiteRT thread) is within the budget. The
chosen one is exported by the usual checked route (:func:`training.finish.export_served`): a quantized
copy that agrees with its float model on fewer than 97% of the validation faces or loses more than 0.3
points is refused there, and the next candidate is taken. The test split is not read here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_core.data import FaceDataset
from fer_core.errors import ModelLoadError
from fer_core.serving import QUANTIZATIONS
from training.views import VIEWS

LATENCY_REPEATS = 100


@dataclass
class ServedCandidate:
    members: tuple[str, ...]
    views: str
    quantization: str
    latency_ms: float = 0.0
    latency_estimated: bool = False  # the members' single latencies summed: clearly over every budget, not timed
    val_accuracy: float | None = None  # of the served copy; None when over every budget (not evaluated)

    @property
    def name(self) -> str:
        return f"{' + '.join(self.members)} ({self.views}, {self.quantization})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": self.name}


def other_validation_splits(paths: Sequence[Path], seed: int, val_fraction: float) -> list[str]:
    """Why each model that comes from a run folder cannot be judged on the validation faces of ``seed`` and
    ``val_fraction``: its run carved another validation split (its ``--split-seed``, or its ``--seed`` when
    it had none), so some of those faces were its training faces and its validation
    accuracy there would be inflated. Models outside run folders are taken as they are."""
    from fer_core.records import RecordError
    from fer_core.run_layout import is_run_folder
    from training.runs import Run

    problems = []
    for path in paths:
        if not is_run_folder(path.parent):
            continue
        try:
            settings = Run(path.parent).config().settings
        except RecordError as error:
            problems.append(f"{path}: cannot tell which faces it was validated on ({error})")
            continue
        if (settings.validation_seed, settings.val_fraction) != (seed, val_fraction):
            problems.append(
                f"{path}: its run held out another validation split (seed {settings.validation_seed}, share "
                f"{settings.val_fraction:g}; here seed {seed}, share {val_fraction:g}), so it was trained on "
                "faces this choice validates on"
            )
    return problems


def trunks_of(model: Any) -> list[Any]:
    """The trunks inside a served views model (:func:`training.views.with_views`), or the model itself
    when it has none (a plain 48x48 model)."""
    import keras

    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return members or [model]


def distinct_trunks(models: Sequence[tuple[Path, Any]]) -> list[Any]:
    """The trunks of ``models`` (each a path and its loaded model), each once and each under a name of its
    own. A trunk met again with the same weights (a shipped model's trunk inside another) is taken once;
    one whose name is taken by other weights (every CPU run calls its trunk ``vgg40``) is renamed after its
    run's seed, ``vgg40_seed23``, or numbered outside a run folder (``vgg40_2``)."""
    import keras

    from fer_core.run_layout import is_run_folder
    from training.runs import Run

    found: dict[str, Any] = {}
    for path, model in models:
        for trunk in trunks_of(model):
            if any(_same_weights(known, trunk) for known in found.values()):
                continue
            name = trunk.name
            if name in found:
                seed = Run(path.parent).config().settings.seed if is_run_folder(path.parent) else None
                name = f"{trunk.name}_seed{seed}" if seed is not None else trunk.name
                number = 2
                while name in found:
                    name, number = f"{trunk.name}_{number}", number + 1
                trunk = keras.Model(trunk.input, trunk.output, name=name)
            found[name] = trunk
    return list(found.values())


def _same_weights(first: Any, second: Any) -> bool:
    ours, theirs = first.get_weights(), second.get_weights()
    return len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def served_latency_ms(flatbuffer: bytes, repeats: int = LATENCY_REPEATS) -> float:
    """Median milliseconds of one face through a LiteRT flatbuffer, one thread."""
    from fer_core.inference import EmotionClassifier

    classifier = EmotionClassifier(flatbuffer, "candidate", num_threads=1)
    face = np.random.default_rng(0).uniform(0, 255, (1, 48, 48, 1)).astype(np.float32)
    for _ in range(5):
        classifier.forward(face)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.forward(face)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def served_accuracy(flatbuffer: bytes, dataset: FaceDataset, threads: int = 2) -> float:
    from fer_core.inference import EmotionClassifier

    classifier = EmotionClassifier(flatbuffer, "candidate", num_threads=threads)
    probabilities = classifier.classify_batch(dataset.images)
    return float(np.mean(probabilities.argmax(axis=1) == dataset.labels))


def groups(trunks: Sequence[Any]) -> list[list[Any]]:
    """Every non-empty group of trunks of one input size, smallest first."""
    found = []
    for size in range(1, len(trunks) + 1):
        for group in itertools.combinations(trunks, size):
            if len({int(trunk.input_shape[1]) for trunk in group}) == 1:
                found.append(list(group))
    return found


def evaluate_candidates(
    trunks: Sequence[Any],
    val: FaceDataset,
    max_budget_ms: float,
    *,
    views: Sequence[str] = VIEWS,
    quantizations: Sequence[str] = QUANTIZATIONS,
    log: Callable[[str], None] = print,
) -> list[ServedCandidate]:
    """Time every candidate and evaluate those within ``max_budget_ms`` on ``val`` (served copies)."""
    from training.export import convert_to_tflite
    from training.views import with_views

    single: dict[tuple[str, str, str], float] = {}
    candidates = []
    for group in groups(trunks):
        for view_set in views:
            for quantization in quantizations:
                candidate = ServedCandidate(tuple(trunk.name for trunk in group), view_set, quantization)
                estimate = sum(single.get((trunk.name, view_set, quantization), 0.0) for trunk in group)
                if len(group) > 1 and estimate > 1.25 * max_budget_ms:
                    candidate.latency_ms, candidate.latency_estimated = estimate, True
                else:
                    flatbuffer = convert_to_tflite(with_views(group, view_set, name="candidate"), quantization)
                    candidate.latency_ms = served_latency_ms(flatbuffer)
                    if candidate.latency_ms <= max_budget_ms:
                        candidate.val_accuracy = served_accuracy(flatbuffer, val)
                if len(group) == 1:
                    single[(group[0].name, view_set, quantization)] = candidate.latency_ms
                accuracy = "-" if candidate.val_accuracy is None else f"{candidate.val_accuracy:.4f}"
                log(f"{candidate.name}: {candidate.latency_ms:.2f} ms, validation {accuracy}")
                candidates.append(candidate)
    return candidates


def ranked_within(candidates: Sequence[ServedCandidate], budget_ms: float) -> list[ServedCandidate]:
    """The candidates within ``budget_ms``, best validation accuracy first (then the faster)."""
    eligible = [c for c in candidates if c.val_accuracy is not None and c.latency_ms <= budget_ms]
    return sorted(eligible, key=lambda c: (-(c.val_accuracy or 0.0), c.latency_ms))


def export_choice(
    candidates: Sequence[ServedCandidate],
    trunks: Sequence[Any],
    budget_ms: float,
    val: FaceDataset,
    destination: Path,
    *,
    log: Callable[[str], None] = print,
) -> tuple[ServedCandidate, float]:
    """Save and export the best candidate within ``budget_ms`` at ``destination`` (``.keras`` + checked,
    calibrated LiteRT copy); a quantized copy refused by its check gives way to the next candidate.
    Returns the exported candidate and its temperature."""
    from training.finish import export_served
    from training.model_files import save_model_atomic
    from training.views import with_views

    by_name = {trunk.name: trunk for trunk in trunks}
    for candidate in ranked_within(candidates, budget_ms):
        model = with_views([by_name[name] for name in candidate.members], candidate.views, name=destination.stem)
        save_model_atomic(model, destination)
        try:
            temperature = export_served(destination, val, quantization=candidate.quantization)
        except ModelLoadError as error:
            log(f"{candidate.name} refused: {error}")
            continue
        return candidate, temperature
    raise ModelLoadError(f"no candidate within {budget_ms} ms could be exported")
