"""The "Use this model" action: copy a run's model, with its LiteRT copy and that copy's record, to the
promoted location the Live, Photos and Video pages load.

The copy goes to a temporary file beside the destination and is then moved into place, so a page
loading the promoted model never reads half a file. ``promoted.json`` beside it says where it came
from. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from fer_core.errors import ModelLoadError
from fer_core.serving import checked_lite_model, served_files
from fer_core.settings import promoted_model_path
from training import runs

PROMOTED_INFO = "promoted.json"


def promoted_info_path() -> Path:
    return promoted_model_path().with_name(PROMOTED_INFO)


def promote_run(run: runs.Run) -> Path:
    """Make ``run``'s model (the float32 export, else its best checkpoint) the app's model.
    Returns the promoted file. A run without a model raises ``ValueError``."""
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
    summary = run.summary()
    metrics = run.metrics()
    card: dict[str, Any] = {  # the model card fer_core.inference.describe_model reads
        "run": run.name,
        "arch": summary.arch,
        "data_source": run.config().get("data_source") or summary.data,
        "accuracy": metrics.get("accuracy"),
        "split": metrics.get("split"),
        "best_val_accuracy": summary.best_val_accuracy,
        "source": str(source),
        "promoted_at": time.time(),
    }
    if summary.state != "finished":
        card["provisional"] = True
        card["note"] = f"from a run that had not finished ({summary.state} after {summary.epochs_done} epochs)"
    runs.write_json(promoted_info_path(), card)
    return destination


def _copy_together(pairs: list[tuple[Path, Path]]) -> None:
    """Copy each (source, destination) to a temporary file first, then move them all into place, so the
    model, its LiteRT copy and its record change together (a reader checks that they match)."""
    temporaries = [runs.temporary_path(destination) for _, destination in pairs]
    try:
        for (source, _), temporary in zip(pairs, temporaries, strict=True):
            shutil.copyfile(source, temporary)
        for (_, destination), temporary in zip(pairs, temporaries, strict=True):
            os.replace(temporary, destination)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def promoted_info() -> dict[str, Any] | None:
    """The promoted model's card (``run``, ``accuracy``, ``promoted_at``...), or None when none is."""
    if not promoted_model_path().is_file():
        return None
    try:
        info = runs.read_json(promoted_info_path())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def unpromote() -> None:
    """Go back to the shipped default model."""
    for path in served_files(promoted_model_path()):
        path.unlink(missing_ok=True)
    promoted_info_path().unlink(missing_ok=True)
