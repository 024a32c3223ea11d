"""What ends a training early, as exceptions: raised by the callbacks, handled by the trainer."""

from __future__ import annotations


class StopRequested(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised from a batch callback so that ``fit`` ends right after the current step."""


class TrainingDiverged(Exception):  # noqa: N818 (the name says what happened to the training)
    """The loss became NaN or infinite: nothing after this step can be trusted."""

    def __init__(self, epoch: int, step: int, loss: float | None) -> None:
        super().__init__(
            f"diverged at epoch {epoch}, step {step}: the loss became {loss} "
            "(try a lower learning rate or weight decay)"
        )
        self.epoch, self.step = epoch, step


class TrainingFailed(Exception):  # noqa: N818 (what the command line reports, without a traceback)
    """A training that ended failed for a reason its message says in full (it diverged, the disk is
    full); the run's status says the same."""
