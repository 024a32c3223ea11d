"""What every part of the Training page shares: refresh intervals, session keys, state labels and help texts,
and the page's own formatting (run times, error lines, the settings caption); durations and shares come from
app.format."""

from __future__ import annotations

from datetime import datetime

from app.format import BadgeColor, plural
from fer_core.records import RecordError
from training import promote
from training.records import RunPhase, RunState
from training.runs import UNREADABLE, RunSnapshot

REFRESH_S = 2.0  # while a run is active
IDLE_REFRESH_S = 10.0  # otherwise: notices a run started from another tab or the command line
FORCE_STOP_AFTER_S = 30.0
GALLERY_SIZE = 24
VIEWED_RUN_KEY = "training_viewed_run"
LIVE_KEY = "training_live_key"
FORM_PREFIX = "train_"  # the form's widget keys: train_<setting>
STATE_LABELS = {  # the table shows plain text: symbols every font has, not emoji
    RunState.QUEUED: "… queued",
    RunState.RUNNING: "▶ running",
    RunState.FINISHED: "✓ finished",
    RunState.STOPPED: "■ stopped",
    RunState.FAILED: "✗ failed",
    UNREADABLE: "⚠ unreadable",
}
STATE_BADGES: dict[str, BadgeColor] = {
    RunState.QUEUED: "gray",
    RunState.RUNNING: "blue",
    RunState.FINISHED: "green",
    RunState.STOPPED: "orange",
    RunState.FAILED: "red",
}
PHASE_TEXT: dict[str, str] = {  # keyed by RunPhase; looked up with status.json's text
    RunPhase.STARTING: "Starting the trainer...",
    RunPhase.LOADING_DATA: "Loading the faces...",
    RunPhase.BUILDING_MODEL: "Building the model...",
    RunPhase.LOADING_INITIAL_WEIGHTS: "Loading the weights to start from...",
    RunPhase.LOADING_TEACHERS: "Loading the teacher models...",
    RunPhase.EXPORTING: "Saving the best model...",
    RunPhase.RECALIBRATING: "Re-estimating batch-norm statistics on the clean training faces...",
    RunPhase.EVALUATING: "Evaluating the best model on the held-out faces...",
}
VAL_ACCURACY_HELP = (
    "Validation accuracy of the model this run kept, the one Use this model serves: the best epoch's "
    "weights, with their batch-norm statistics re-estimated when that scored higher. Shown once the run finished."
)
BEST_EPOCH_HELP = (
    "The best validation accuracy measured during training, at the end of an epoch; its checkpoint is "
    "the one kept. Re-estimating batch-norm statistics afterwards can raise it (Val acc)."
)


def moment(timestamp: float | None) -> datetime | None:
    """A run file's time as a datetime; None when there is none or it is not a time (NaN, 1e300)."""
    if timestamp is None:
        return None
    try:
        return datetime.fromtimestamp(timestamp)
    except (OverflowError, OSError, ValueError):
        return None


def first_line(text: str | None, limit: int = 400) -> str:
    """An error as one readable line (TensorFlow messages can run over many)."""
    line = (text or "unknown error").strip().splitlines()[0] if (text or "").strip() else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def sentence(text: str) -> str:
    """A declaration's help (a lower-case phrase) as the sentence a tooltip shows."""
    return text[:1].upper() + text[1:] + "."


def settings_caption(snapshot: RunSnapshot) -> str:
    if snapshot.config is None:
        return ""
    settings, status = snapshot.config.settings, snapshot.status
    parts = [
        f"**{settings.arch}**",
        "demo set" if settings.data == "demo" else f"`{settings.data}`",
        plural(settings.epochs, "epoch"),
        f"batch {settings.batch_size}",
    ]
    if status.precision:
        parts.append(status.precision)
    if (status.devices or 1) > 1:
        parts.append(f"{status.devices} devices")
    return " · ".join(parts)


def confirm_key(action: str, snapshot: RunSnapshot) -> str:
    return f"confirm-{action}-{snapshot.name}"


def promoted_run_name() -> str | None:
    try:
        card = promote.promoted_info()
    except RecordError:
        return None
    return card.run if card is not None else None
