"""The trainer end to end on the demo set: tiny architecture, a few steps per epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT

from fer_core import run_layout
from fer_core.datasets import resolve_dataset
from fer_core.files import write_json_atomically
from fer_core.labels import EMOTIONS
from training import cli, finish, runs, trainer
from training.config import TrainConfig
from training.records import Recalibration
from training.splits import split_for_training

pytestmark = pytest.mark.slow

RUN_FILES = {
    "config.json",
    "model_summary.txt",
    "history.csv",
    "history.json",
    "status.json",
    "checkpoint.json",
    "best.keras",
    "last.keras",
    "model.keras",
    "metrics.json",
    "misclassified.npz",
}
TINY = ["--data", "demo", "--arch", "tiny", "--batch-size", "32"]


def child_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> runs.Run:
    """One tiny run trained in this process, shared by the evaluation tests."""
    runs_dir = tmp_path_factory.mktemp("shared-runs")
    config = TrainConfig(
        data="demo", arch="tiny", epochs=1, batch_size=32, max_steps_per_epoch=3, runs_dir=str(runs_dir)
    )
    return runs.Run(trainer.train(config))


def test_train_command_fills_the_run_folder_while_readers_poll_it(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "training", "train", *TINY, "--epochs", "2", "--max-steps-per-epoch", "3"]
    environment = {name: value for name, value in child_environment().items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.Popen(
        [*command, "--run-dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        env=environment,  # TensorFlow's own log level: the CLI quiets what a user cannot act on
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reads, versions = 0, set()
    while process.poll() is None:  # a reader like the Training page: never sees half a file
        for run_dir in filter(Path.is_dir, tmp_path.iterdir()):  # the runs folder also holds the launch lock
            for name in (run_layout.STATUS_FILE, run_layout.HISTORY_JSON):
                try:
                    text = (run_dir / name).read_text()
                except FileNotFoundError:
                    continue
                json.loads(text)
                reads += 1
                versions.add(text)
        time.sleep(0.01)
    output = process.stdout.read() if process.stdout else ""
    assert process.returncode == 0, output[-3000:]
    assert reads > 50 and len(versions) > 3

    (run_dir,) = filter(Path.is_dir, tmp_path.iterdir())
    assert {path.name for path in run_dir.iterdir()} >= RUN_FILES
    assert not [path.name for path in run_dir.iterdir() if ".tmp" in path.name]
    run = runs.Run(run_dir)
    status = run.status()
    assert status.state == "finished" and status.epochs_done == 2
    assert [row["epoch"] for row in run.history().epochs] == [1, 2]
    assert run.history().batches
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 3
    metrics = run.metrics()
    assert metrics is not None and set(metrics.per_class) == set(EMOTIONS)
    assert len(metrics.confusion) == len(EMOTIONS) and sum(map(sum, metrics.confusion)) == metrics.n
    assert "finished: test accuracy" in output
    for noise in ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "cuInit", "XNNPACK"):
        assert noise not in output, output[:3000]


def test_evaluate_json_prints_the_report(finished_run: runs.Run, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["evaluate", "--model", str(finished_run.path), "--data", "demo", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "per_class", "confusion", "n"} <= set(report)
    assert report["n"] == len(resolve_dataset("demo").split("test"))
    assert set(report["per_class"]) == set(EMOTIONS)


def test_evaluate_reads_a_single_folder_of_class_folders_as_the_named_split(
    finished_run: runs.Run, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    faces = resolve_dataset("demo").split("test")
    for index in range(14):
        folder = tmp_path / "faces" / EMOTIONS[int(faces.labels[index * 30])]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{index}.png"), faces.images[index * 30])
    model = finished_run.path / run_layout.EXPORTED_MODEL
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # keep this throwaway folder out of the shared cache
    code = cli.main(["evaluate", "--model", str(model), "--data", str(tmp_path / "faces"), "--split", "val", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["n"], report["split"]) == (14, "val")


def test_evaluate_a_missing_split_is_a_clear_error(finished_run: runs.Run, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["evaluate", "--model", str(finished_run.path), "--data", "demo", "--split", "val"])
    assert code == cli.EXIT_USAGE
    assert "has no 'val' split" in capsys.readouterr().err


def test_init_from_starts_a_run_from_another_runs_weights(finished_run: runs.Run) -> None:
    import keras
    import numpy as np

    from training.architectures import build_model

    model = build_model("tiny")
    trainer.load_initial_weights(model, finished_run.path)  # a run folder: its exported model
    exported = keras.models.load_model(finished_run.path / run_layout.EXPORTED_MODEL, compile=False)
    for copied, original in zip(model.get_weights(), exported.get_weights(), strict=True):
        np.testing.assert_array_equal(copied, original)


def test_init_from_another_architecture_or_nothing_is_a_clear_error(
    finished_run: runs.Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.architectures import build_model

    with pytest.raises(ValueError, match="does not match the architecture"):
        trainer.load_initial_weights(build_model("fernet"), finished_run.path / run_layout.EXPORTED_MODEL)
    code = cli.main(
        ["train", *TINY, "--epochs", "1", "--init-from", str(tmp_path / "missing.keras"), "--run-dir", str(tmp_path)]
    )
    assert code == cli.EXIT_USAGE
    assert "no model to start from" in capsys.readouterr().err
    assert runs.list_runs(tmp_path) == []  # a training refused for bad input leaves no run folder


def test_train_with_init_from_loads_the_weights_and_records_the_source(
    finished_run: runs.Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []
    load_initial_weights = trainer.load_initial_weights

    def spy(model: Any, source: str) -> None:
        load_initial_weights(model, source)
        loaded.append(source)

    monkeypatch.setattr(trainer, "load_initial_weights", spy)
    arguments = ["train", *TINY, "--epochs", "1", "--max-steps-per-epoch", "2", "--run-dir", str(tmp_path)]
    assert cli.main([*arguments, "--init-from", str(finished_run.path)]) == 0
    assert loaded == [str(finished_run.path)]
    (run,) = runs.list_runs(tmp_path)
    assert run.config().settings.init_from == str(finished_run.path)
    assert run.status().state == "finished"


def test_stop_flag_ends_the_run_and_resume_continues_it(
    isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import callbacks

    recorder = callbacks.RunRecorder
    stop_after_epoch(monkeypatch, 1)
    config = TrainConfig(data="demo", arch="tiny", epochs=3, batch_size=32, max_steps_per_epoch=3)
    run = runs.Run(trainer.train(config))
    status = run.status()
    assert status.state == "stopped" and status.stop_reason == "stop requested"
    assert [row["epoch"] for row in run.history().epochs] == [1]
    assert (
        run.path / run_layout.BEST_CHECKPOINT
    ).is_file() and run.model_path() == run.path / run_layout.EXPORTED_MODEL
    assert not (run.path / run_layout.STOP_FLAG).exists() and run.metrics() is None

    monkeypatch.setattr(callbacks, "RunRecorder", recorder)
    trainer.resume(run.path)
    status = run.status()
    assert status.state == "finished" and status.resumed_at is not None
    assert [row["epoch"] for row in run.history().epochs] == [1, 2, 3]  # appended, not restarted
    metrics = run.metrics()
    assert metrics is not None and metrics.n > 0
    with pytest.raises(ValueError, match="already finished"):
        trainer.resume(run.path)


def test_a_new_best_checkpoint_retires_an_older_export(tmp_path: Path) -> None:
    """After a resume, the model a run hands out (Use this model, Start from, --model RUN) must be its
    current best, not the export written when it was stopped."""
    from fakes import write_served_model

    from fer_core.serving import served_files
    from training.architectures import build_model
    from training.callbacks import AtomicCheckpoint

    run = runs.Run(tmp_path)
    write_served_model(run.path / run_layout.EXPORTED_MODEL, b"the export from before the resume")
    checkpointer = AtomicCheckpoint(run.path, best_so_far=0.5)
    checkpointer.set_model(build_model("tiny"))

    checkpointer.on_epoch_end(3, {"val_accuracy": 0.4})  # no better: the export still holds the best
    assert run.model_path() == run.path / run_layout.EXPORTED_MODEL
    checkpointer.on_epoch_end(4, {"val_accuracy": 0.6})
    assert run.model_path() == run.path / run_layout.BEST_CHECKPOINT
    assert run.checkpoint_info().best_epoch == 5
    # Its LiteRT copy and record go with it: the pages offer no stale copy of the older model.
    assert not any(path.exists() for path in served_files(run.path / run_layout.EXPORTED_MODEL))


@pytest.mark.parametrize(("accuracies", "kept"), [((0.50, 0.60), True), ((0.60, 0.55), False)])
def test_batch_norm_recalibration_is_kept_only_if_validation_accuracy_rises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accuracies: tuple[float, float], kept: bool
) -> None:
    from training.architectures import build_model

    model_path = tmp_path / "model.keras"
    build_model("tiny").save(model_path)
    original = model_path.read_bytes()
    measured = iter(accuracies)  # before, then after re-estimation
    monkeypatch.setattr(finish, "accuracy_on", lambda model, dataset: next(measured))
    train, val = split_for_training(resolve_dataset("demo"), 0.1, seed=42)

    result = finish.recalibrate_if_better(model_path, train, val)

    assert result == Recalibration(kept=kept, val_accuracy_before=accuracies[0], val_accuracy_after=accuracies[1])
    assert (model_path.read_bytes() != original) == kept


def test_a_finished_run_reports_its_batch_norm_recalibration(finished_run: runs.Run) -> None:
    metrics = finished_run.metrics()
    assert metrics is not None and metrics.recalibration is not None
    recalibration = metrics.recalibration
    assert recalibration.val_accuracy_before is not None and recalibration.val_accuracy_after is not None
    assert recalibration.kept == (recalibration.val_accuracy_after > recalibration.val_accuracy_before)


def test_a_failed_recalibration_leaves_the_run_finished_with_its_plain_export(
    isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: Any) -> Recalibration:
        raise MemoryError("no room for the training faces")

    monkeypatch.setattr(finish, "recalibrate_if_better", out_of_memory)
    config = TrainConfig(data="demo", arch="tiny", epochs=1, batch_size=32, max_steps_per_epoch=2)
    run = runs.Run(trainer.train(config))
    assert run.status().state == "finished"
    metrics = run.metrics()
    assert metrics is not None
    assert metrics.recalibration == Recalibration(kept=False, error="MemoryError: no room for the training faces")
    assert run.model_path() == run.path / run_layout.EXPORTED_MODEL


def test_a_failing_run_is_marked_failed_with_its_error(isolated_runs_dir: Path) -> None:
    config = TrainConfig(data=str(isolated_runs_dir / "nowhere"), arch="tiny", epochs=1)
    with pytest.raises(ValueError, match="does not exist"):
        trainer.train(config)
    (run,) = runs.list_runs(isolated_runs_dir)
    status = run.status()
    assert status.state == "failed" and "does not exist" in (status.error or "")


def test_mirrored_strategy_trains_over_two_logical_cpu_devices(tmp_path: Path) -> None:
    argv = ["train", *TINY, "--epochs", "1", "--max-steps-per-epoch", "2", "--strategy", "mirrored"]
    code = textwrap.dedent(
        f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from training.cli import main
        raise SystemExit(main({[*argv, "--run-dir", str(tmp_path)]!r}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (run,) = runs.list_runs(tmp_path)
    status = run.status()
    assert (status.state, status.strategy, status.devices) == ("finished", "mirrored", 2)


def test_keep_last_saves_a_snapshot_of_each_of_the_last_epochs(tmp_path: Path) -> None:
    """--keep-last N: the models of the last N epochs stay in snapshots/, for `training average`."""
    from training.architectures import build_model
    from training.callbacks import AtomicCheckpoint

    run = runs.Run(tmp_path)
    checkpointer = AtomicCheckpoint(run.path, best_so_far=None, epochs=5, keep_last=2)
    checkpointer.set_model(build_model("tiny"))
    for epoch in range(5):
        checkpointer.on_epoch_end(epoch, {"val_accuracy": 0.1 * epoch})
    snapshots = sorted(path.name for path in (run.path / run_layout.SNAPSHOTS_DIR).iterdir())
    assert snapshots == ["epoch-004.keras", "epoch-005.keras"]


def test_keep_last_keeps_the_last_epochs_that_exist_when_early_stopping_ends_the_run(tmp_path: Path) -> None:
    from training.architectures import build_model
    from training.callbacks import AtomicCheckpoint

    checkpointer = AtomicCheckpoint(tmp_path, best_so_far=None, epochs=10, keep_last=5)
    checkpointer.set_model(build_model("tiny"))
    for epoch in range(3):  # early stopping ends the run after 3 of 10 epochs
        checkpointer.on_epoch_end(epoch, {"val_accuracy": 0.5})
    assert list(runs.snapshot_epochs(tmp_path / run_layout.SNAPSHOTS_DIR)) == [1, 2, 3]
    for epoch in range(3, 8):
        checkpointer.on_epoch_end(epoch, {"val_accuracy": 0.5})
    assert list(runs.snapshot_epochs(tmp_path / run_layout.SNAPSHOTS_DIR)) == [4, 5, 6, 7, 8]  # never more than 5
    checkpointer.on_epoch_end(5, {"val_accuracy": 0.5})  # resumed from epoch 5: later snapshots are another past
    assert list(runs.snapshot_epochs(tmp_path / run_layout.SNAPSHOTS_DIR)) == [4, 5, 6]


def test_the_report_says_what_keep_last_kept_and_why_fewer(
    isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainConfig(data="demo", arch="tiny", epochs=10, patience=1, keep_last=5, runs_dir=str(isolated_runs_dir))
    run_dir = trainer.create_run(config)
    runs.update_status(run_dir, state="finished", pid=None)
    write_json_atomically(
        run_dir / run_layout.HISTORY_JSON, {"epochs": [{"epoch": n, "val_accuracy": 0.3} for n in (1, 2, 3)]}
    )
    (run_dir / run_layout.SNAPSHOTS_DIR).mkdir()
    for epoch in (1, 2, 3):
        (run_dir / run_layout.SNAPSHOTS_DIR / f"epoch-{epoch:03d}.keras").write_bytes(b"model")
    assert cli._report_run(run_dir) == 0
    out = capsys.readouterr().out
    assert f"snapshots: 3 models of the last epochs (epochs 1-3) in {run_dir / run_layout.SNAPSHOTS_DIR}" in out
    assert "5 were asked for, but early stopping ended the run after 3 epochs of 10 (--patience 1)" in out


def test_keep_last_beyond_the_epochs_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_last"):
        TrainConfig(epochs=3, keep_last=4)


def stop_after_epoch(monkeypatch: pytest.MonkeyPatch, stop_epoch: int) -> None:
    """Make the trainer's recorder raise the STOP flag at the end of epoch ``stop_epoch`` (from 1), as
    the page's Stop button does."""
    from training import callbacks

    class StoppingRecorder(callbacks.RunRecorder):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            super().on_epoch_end(epoch, logs)
            if epoch + 1 == stop_epoch:
                (self.run_dir / run_layout.STOP_FLAG).touch()

    monkeypatch.setattr(callbacks, "RunRecorder", StoppingRecorder)


def test_resume_after_last_keras_was_truncated_goes_on_from_the_best_checkpoint(
    isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stop_after_epoch(monkeypatch, 2)
    config = TrainConfig(data="demo", arch="tiny", epochs=3, batch_size=32, max_steps_per_epoch=3)
    run = runs.Run(trainer.train(config))
    assert run.status().state == "stopped"
    best_epoch = run.checkpoint_info().best_epoch
    last = run.path / run_layout.LAST_CHECKPOINT
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a full disk or a copy cut short

    monkeypatch.undo()
    assert cli.main(["resume", str(run.path)]) == 0
    output = capsys.readouterr().out
    status = run.status()
    assert status.state == "finished"
    assert status.resume_note is not None and "last.keras is unreadable" in status.resume_note
    assert f"resumed from best.keras, the best epoch ({best_epoch})" in status.resume_note
    assert "note: last.keras is unreadable" in output
    assert [row["epoch"] for row in run.history().epochs] == [1, 2, 3]


def test_a_run_whose_loss_becomes_nan_fails_as_diverged_and_cannot_be_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    from training import promote

    # The first step's loss is finite; its update makes every weight NaN, so the second step's loss is NaN.
    monkeypatch.setattr(trainer, "_optimizer", lambda config, steps: keras.optimizers.SGD(learning_rate=float("nan")))
    arguments = ["train", *TINY, "--epochs", "2", "--max-steps-per-epoch", "3", "--run-dir", str(tmp_path)]
    assert cli.main(arguments) == cli.EXIT_FAILED
    error = capsys.readouterr().err
    assert "error: diverged at epoch 1, step 2: the loss became nan" in error and "Traceback" not in error
    (run,) = runs.list_runs(tmp_path)
    status = run.status()
    assert status.state == "failed" and status.diverged
    assert (status.error or "").startswith("diverged at epoch 1, step 2")
    assert not (run.path / run_layout.LAST_CHECKPOINT).exists()  # no epoch of NaN weights was kept
    with pytest.raises(ValueError, match="diverged"):
        promote.promote_run(run)


def test_a_full_disk_fails_the_run_with_a_plain_message_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from training import callbacks

    def no_space(model: Any, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(callbacks, "save_model_atomic", no_space)  # the first checkpoint, after epoch 1
    arguments = ["train", *TINY, "--epochs", "1", "--max-steps-per-epoch", "2", "--run-dir", str(tmp_path)]
    assert cli.main(arguments) == cli.EXIT_FAILED
    error = capsys.readouterr().err
    (run,) = runs.list_runs(tmp_path)
    assert f"error: the disk is full: no space was left to write in {run.path}" in error
    assert "Traceback" not in error and "Errno" not in error
    status = run.status()
    assert status.state == "failed" and (status.error or "").startswith("the disk is full")


def write_faces(folder: Path, counts: dict[str, int]) -> Path:
    """A Kaggle-layout data set (train/<emotion>/*.png) with ``counts`` faces per emotion."""
    rng = np.random.default_rng(0)
    for emotion, count in counts.items():
        (folder / "train" / emotion).mkdir(parents=True)
        for index in range(count):
            cv2.imwrite(str(folder / "train" / emotion / f"{index}.png"), rng.integers(0, 255, (48, 48), np.uint8))
    return folder


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"happy": 6}, "every training face is happy: a classifier needs faces of at least two emotions"),
        ({emotion: 1 for emotion in EMOTIONS}, "no faces are left for validation"),
    ],
)
def test_faces_a_classifier_cannot_learn_from_are_refused_and_leave_no_run_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    counts: dict[str, int],
    message: str,
) -> None:
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    faces = write_faces(tmp_path / "faces", counts)
    runs_dir = tmp_path / "runs"
    arguments = ["train", "--data", str(faces), "--arch", "tiny", "--epochs", "1", "--run-dir", str(runs_dir)]
    assert cli.main(arguments) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert runs.list_runs(runs_dir) == []


def test_train_help_reads_well_and_offers_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default default)" not in help_text
    assert "(default 'default')" in help_text
    assert "--verbose also show TensorFlow's and LiteRT's start-up log lines" in help_text


def test_init_from_a_served_ensemble_starts_from_its_one_trunk_of_that_architecture(tmp_path: Path) -> None:
    import keras
    import numpy as np
    from photo_samples import tiny_model

    from training.architectures import build_model
    from training.views import with_views

    trunk, fernet = tiny_model(seed=3), build_model("fernet")
    path = tmp_path / "ensemble.keras"
    with_views([trunk, fernet], "flip", name="ensemble").save(path)
    model = build_model("tiny")
    trainer.load_initial_weights(model, path)
    for copied, original in zip(model.get_weights(), trunk.get_weights(), strict=True):
        np.testing.assert_array_equal(copied, original)

    other = tiny_model(seed=4)
    twin = keras.Model(other.input, other.output, name="tiny_seed4")
    with_views([trunk, twin], "center", name="pair").save(tmp_path / "pair.keras")
    with pytest.raises(ValueError, match="averages 2 trunks of the architecture being trained"):
        trainer.load_initial_weights(build_model("tiny"), tmp_path / "pair.keras")
    with pytest.raises(ValueError, match="does not match the architecture"):
        trainer.load_initial_weights(build_model("seed"), path)
