"""The "Use this model" action: copy a run's model to the promoted location the Live, Photos and Video pages load.

The copy goes to a temporary file beside the destination and is then moved into place, so a page
loading the promoted model never reads half a file. ``promoted.json`` beside it says where it came
from. :func:`promotion_concerns` says why a model may not be worth promoting (the page asks before
it promotes such a model). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from fer_core.errors import ModelLoadError
from fer_core.files import replace_together, write_json_atomically
from fer_core.records import ModelCard, RecordError, read_record
from fer_core.serving import checked_lite_model, served_files
from fer_core.settings import SHIPPED_MODEL_PATH, promoted_model_path
from training import runs
from training.records import RunState

PROMOTED_INFO = "promoted.json"
WEAK_MARGIN = 0.05  # test accuracy this far (absolute) below the shipped model's counts as far below


def promoted_info_path() -> Path:
    return promoted_model_path().with_name(PROMOTED_INFO)


def promote_run(run: runs.Run) -> Path:
    """Make ``run``'s model (the float32 export, else its best checkpoint) the app's model.
    Returns the promoted file. A run without a model, whose files cannot be read, or whose training
    diverged raises ``ValueError``."""
    summary = run.summary()
    if summary.problem:
        raise ValueError(f"run {run.name} is unreadable: {summary.problem}")
    if summary.diverged:
        raise ValueError(f"run {run.name} diverged (its loss became NaN or infinite): its model is not usable")
    source = run.model_path()
    if source is None:
        raise ValueError(f"run {run.name} has no model yet (no model.keras or best.keras): let it finish an epoch")
    try:
        checked_lite_model(source)
    except ModelLoadError as error:
        raise ValueError(
            f"run {run.name} has no model the app can serve yet ({error}); a run writes one when it stops or "
            f"finishes, or `python -m training export {run.path}` makes it"
        ) from None
    destination = promoted_model_path()
    destination.parent.mkdir(parents=True, exist_ok=True)
    _copy_together(list(zip(served_files(source), served_files(destination), strict=True)))
    metrics = run.metrics()
    finished = summary.state == RunState.FINISHED
    card = ModelCard(  # what fer_core.model_store.read_model_card reads
        run=run.name,
        arch=summary.arch,
        data_source=run.config().data_source or summary.data,
        accuracy=metrics.accuracy if metrics else None,
        split=metrics.split if metrics else None,
        best_val_accuracy=summary.best_val_accuracy,
        source=str(source),
        promoted_at=time.time(),
        provisional=not finished,
        note=None
        if finished
        else f"from a run that had not finished ({summary.state} after {summary.epochs_done} epochs)",
    )
    write_json_atomically(promoted_info_path(), card.to_json())
    return destination


def _copy_together(pairs: list[tuple[Path, Path]]) -> None:
    """Copy each (source, destination) so that the model, its LiteRT copy and its record change
    together (a reader checks that they match)."""
    replace_together([(destination, _copier(source)) for source, destination in pairs])


def _copier(source: Path) -> Callable[[Path], object]:
    return lambda temporary: shutil.copyfile(source, temporary)


def promoted_info() -> ModelCard | None:
    """The promoted model's card, or None when no model is promoted. A card that is missing says
    nothing (an empty card); one that is broken raises :class:`~training.records.RecordError`."""
    if not promoted_model_path().is_file():
        return None
    data = read_record(promoted_info_path())
    return ModelCard() if data is None else ModelCard.from_json(data, PROMOTED_INFO)


def shipped_card() -> ModelCard:
    """The shipped model's card (``models/fer_default.json``); an empty card if it cannot be read."""
    path = SHIPPED_MODEL_PATH.with_suffix(".json")
    try:
        data = read_record(path)
        return ModelCard() if data is None else ModelCard.from_json(data, path.name)
    except RecordError:
        return ModelCard()


def promotion_concerns(run: runs.Run) -> list[str]:
    """Why promoting ``run``'s model may make the app worse (an empty list: no reason to ask)."""
    summary = run.summary()
    concerns = []
    if summary.data == "demo":
        concerns.append(
            "it was trained on the built-in demo set of synthetic cartoon faces, so it has not learnt real faces"
        )
    shipped = shipped_card().accuracy
    if summary.test_accuracy is not None and shipped is not None and summary.test_accuracy < shipped - WEAK_MARGIN:
        concerns.append(
            f"its test accuracy ({summary.test_accuracy:.1%}) is far below the shipped model's ({shipped:.1%})"
        )
    if summary.state != RunState.FINISHED and summary.test_accuracy is None:
        concerns.append(f"the run has not finished ({summary.state}), so its model was never tested")
    return concerns


def unpromote() -> None:
    """Go back to the shipped default model."""
    for path in served_files(promoted_model_path()):
        path.unlink(missing_ok=True)
    promoted_info_path().unlink(missing_ok=True)
