"""Bad .keras files say what is wrong with them (Keras says "File not found" for all of them), and
resume falls back to the best checkpoint when the last one cannot be read."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from fer_core import run_layout
from fer_core.errors import ModelLoadError
from fer_core.files import write_json_atomically
from training import cli, launcher, runs, trainer
from training.config import TrainConfig
from training.model_files import (
    HDF5_SIGNATURE,
    check_destination,
    check_finite_weights,
    check_keras_file,
    replace_atomically,
)
from training.trainer import create_run


def fake_keras_file(path: Path, weight: float = 0.0) -> Path:
    """Passes for a .keras model until Keras opens it: a zip archive with a config.json and an HDF5
    weights file whose one array holds ``weight`` (NaN: the weights of a run that diverged)."""
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.array([0.5, weight, -0.5], np.float32))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional"}))
        archive.writestr("model.weights.h5", weights.getvalue())
    return path


def truncated(path: Path) -> Path:
    data = fake_keras_file(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_FILES = {
    "empty": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "text": (lambda path: path.write_text("not a model"), "is not a Keras model: a .keras file is a zip archive"),
    "truncated": (truncated, "is truncated or corrupt"),
    "renamed HDF5": (lambda path: path.write_bytes(HDF5_SIGNATURE + b"\0" * 64), "is an HDF5 file"),
    "other zip": (
        lambda path: zipfile.ZipFile(path, "w").close(),
        "is a zip archive but not a Keras model",
    ),
}


@pytest.fixture(params=list(BAD_FILES))
def bad_model(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    make, message = BAD_FILES[request.param]
    path = tmp_path / "model.keras"
    make(path)
    return path, message


def test_a_bad_keras_file_is_named_for_what_it_is(bad_model: tuple[Path, str]) -> None:
    path, message = bad_model
    with pytest.raises(ModelLoadError, match=re.escape(message)) as raised:
        check_keras_file(path)
    assert "File not found" not in str(raised.value)


def test_a_missing_file_is_missing_and_a_good_one_passes(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model file at"):
        check_keras_file(tmp_path / "missing.keras")
    check_keras_file(fake_keras_file(tmp_path / "good.keras"))


def test_evaluate_and_average_say_a_model_file_is_corrupt(
    bad_model: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, message = bad_model
    assert cli.main(["evaluate", "--model", str(path), "--data", "demo"]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert message in error and "File not found" not in error and "Traceback" not in error
    output = tmp_path / "averaged.keras"
    assert cli.main(["average", str(path), "--data", "demo", "--output", str(output)]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_evaluate_names_an_h5_model_as_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    legacy = tmp_path / "x.h5"
    legacy.write_bytes(HDF5_SIGNATURE + b"\0" * 64)
    assert cli.main(["evaluate", "--model", str(legacy), "--data", "demo"]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert f"error: {legacy} is a legacy Keras .h5 model" in error and "x.keras" not in error.split("export")[0]


def test_init_from_a_corrupt_model_says_so(bad_model: tuple[Path, str]) -> None:
    path, message = bad_model
    with pytest.raises(ModelLoadError, match=f"cannot start from that model: .*{re.escape(message)}"):
        trainer.load_initial_weights(None, path)  # refused before the model being trained is touched


def stopped_run(runs_dir: Path, *, last_epoch: int, best_epoch: int | None) -> runs.Run:
    run_dir = create_run(TrainConfig(data="demo", arch="tiny", epochs=5, runs_dir=str(runs_dir)))
    runs.update_status(run_dir, state="stopped")
    epochs = [{"epoch": epoch, "val_accuracy": 0.1 * epoch} for epoch in range(1, last_epoch + 1)]
    write_json_atomically(run_dir / run_layout.HISTORY_JSON, {"epochs": epochs, "batches": []})
    write_json_atomically(run_dir / run_layout.CHECKPOINT_INFO, {"epoch": last_epoch, "best_epoch": best_epoch})
    return runs.Run(run_dir)


def test_resume_falls_back_to_the_best_checkpoint_when_the_last_is_truncated(isolated_runs_dir: Path) -> None:
    run = stopped_run(isolated_runs_dir, last_epoch=3, best_epoch=2)
    truncated(run.path / run_layout.LAST_CHECKPOINT)
    fake_keras_file(run.path / run_layout.BEST_CHECKPOINT)
    start = run.resume_point()
    assert (start.checkpoint, start.epoch) == (run.path / run_layout.BEST_CHECKPOINT, 2)
    assert [row["epoch"] for row in start.history.epochs] == [1, 2]
    assert start.note is not None
    assert "last.keras is unreadable" in start.note and "resumed from best.keras, the best epoch (2)" in start.note


def test_resume_without_a_usable_checkpoint_explains_what_to_do(
    isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = stopped_run(isolated_runs_dir, last_epoch=3, best_epoch=2)
    truncated(run.path / run_layout.LAST_CHECKPOINT)
    with pytest.raises(ModelLoadError, match=r"cannot resume run .*is truncated or corrupt.*Start a new run"):
        run.resume_point()
    # the same through the command line: the message, no traceback (refused before TensorFlow starts)
    (run.path / run_layout.BEST_CHECKPOINT).write_text("not a model either")
    assert cli.main(["resume", str(run.path)]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "error: cannot resume run" in error and "File not found" not in error and "Traceback" not in error


# Weights that are NaN or infinite (issue 18, items 14 and 15)


def nan_model(tmp_path: Path) -> Path:
    return fake_keras_file(tmp_path / "nan_weights.keras", weight=float("nan"))


def test_nan_or_infinite_weights_are_named_with_the_file(tmp_path: Path) -> None:
    check_finite_weights(fake_keras_file(tmp_path / "fine.keras"))
    for weight in (float("nan"), float("inf")):
        path = fake_keras_file(tmp_path / "broken.keras", weight=weight)
        with pytest.raises(ModelLoadError, match=re.escape(f"{path} has NaN or infinite weights (1 weight array")):
            check_finite_weights(path)


def test_training_from_nan_weights_is_refused_naming_the_file_before_a_run_folder_is_made(
    tmp_path: Path, isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = nan_model(tmp_path)
    argv = ["train", "--data", "demo", "--arch", "tiny", "--epochs", "1", "--init-from", str(path)]
    assert cli.main(argv) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert f"error: cannot start from that model: {path} has NaN or infinite weights" in error
    assert "diverged at epoch" not in error and "learning rate" not in error
    with pytest.raises(ModelLoadError, match="has NaN or infinite weights"):  # the page's Start, the same
        launcher.start_training(
            TrainConfig(data="demo", arch="tiny", init_from=str(path), runs_dir=str(isolated_runs_dir))
        )
    assert runs.list_runs(isolated_runs_dir) == []


def test_averaging_nan_weights_is_refused_up_front_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, output = nan_model(tmp_path), tmp_path / "n.keras"
    assert cli.main(["average", str(path), "--data", "demo", "--output", str(output)]) == cli.EXIT_USAGE
    assert f"{path} has NaN or infinite weights" in capsys.readouterr().err
    assert sorted(child.name for child in tmp_path.iterdir()) == ["nan_weights.keras"]


# Data that train refuses is refused by average and export too (issue 18, item 11)


def write_faces(folder: Path, per_class: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for emotion, count in per_class.items():
        (folder / emotion).mkdir(parents=True)
        for index in range(count):
            assert cv2.imwrite(str(folder / emotion / f"{index}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    return folder


@pytest.mark.parametrize(
    ("per_class", "message"),
    [
        (
            {emotion: 1 for emotion in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")},
            "no faces are left for validation",
        ),
        ({"happy": 6}, "every training face is happy"),
    ],
)
@pytest.mark.parametrize("command", ["average", "export"])
def test_average_and_export_refuse_data_that_train_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], per_class: dict[str, int], message: str, command: str
) -> None:
    data = write_faces(tmp_path / "faces", per_class)
    model = fake_keras_file(tmp_path / "model.keras")
    argv = [command, str(model), "--data", str(data)]
    if command == "average":
        argv += ["--output", str(tmp_path / "out.keras")]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert f"error: --data {data}: {message}" in capsys.readouterr().err
    assert sorted(child.name for child in tmp_path.iterdir()) == ["faces", "model.keras"]  # nothing written


# Destinations checked first and named (issue 18, item 16)


def test_average_names_a_destination_it_cannot_write_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = fake_keras_file(tmp_path / "model.keras")
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("a file")
    cases = [
        (folder, cli.EXIT_USAGE, f"error: {folder} is a folder: give the name of the file to write"),
        (
            not_a_folder / "x.keras",
            cli.EXIT_USAGE,
            f"error: cannot write {not_a_folder / 'x.keras'}: {not_a_folder} is not a folder",
        ),
        (Path("/proc/n.keras"), cli.EXIT_FAILED, "error: cannot write /proc/n.keras: /proc does not accept new files"),
    ]
    for output, status, message in cases:
        # --data names nothing that exists: the destination is refused before the data is looked at
        argv = ["average", str(model), "--data", str(tmp_path / "no-data"), "--output", str(output), "--overwrite"]
        assert cli.main(argv) == status
        error = capsys.readouterr().err
        assert message in error and ".tmp" not in error


def test_a_read_only_destination_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # as root, permissions cannot make a folder read-only
    with pytest.raises(
        OSError, match=re.escape(f"cannot write {tmp_path / 'x.keras'}: {tmp_path} is on a read-only file system")
    ):
        check_destination(tmp_path / "x.keras")


def test_export_names_its_destination_when_it_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = fake_keras_file(tmp_path / "model.keras")
    (tmp_path / "model.tflite").mkdir()
    assert cli.main(["export", str(model)]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert f"error: {tmp_path / 'model.tflite'} is a folder" in error and ".tmp" not in error


def test_an_atomic_write_that_fails_names_the_destination_not_its_temporary_file(tmp_path: Path) -> None:
    destination = tmp_path / "model.tflite"
    destination.mkdir()  # os.replace cannot put a file there
    with pytest.raises(OSError) as raised:
        replace_atomically(destination, lambda temporary: temporary.write_bytes(b"flatbuffer"))
    assert str(raised.value).startswith(f"cannot write {destination}: ") and ".tmp" not in str(raised.value)
    assert os.listdir(tmp_path) == ["model.tflite"]  # the temporary file is gone
