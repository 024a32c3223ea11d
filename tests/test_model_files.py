"""Bad .keras files say what is wrong with them (Keras says "File not found" for all of them), and
resume falls back to the best checkpoint when the last one cannot be read."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from fer_core.errors import ModelLoadError
from training import cli, runs, trainer
from training.config import TrainConfig
from training.model_files import HDF5_SIGNATURE, check_keras_file
from training.trainer import _resume_point, create_run


def fake_keras_file(path: Path) -> Path:
    """Passes for a .keras model until Keras opens it: a zip archive with a config.json."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional"}))
        archive.writestr("model.weights.h5", b"\0" * 4096)
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
    runs.write_json(run_dir / runs.HISTORY_JSON, {"epochs": epochs, "batches": []})
    runs.write_json(run_dir / runs.CHECKPOINT_INFO, {"epoch": last_epoch, "best_epoch": best_epoch})
    return runs.Run(run_dir)


def test_resume_falls_back_to_the_best_checkpoint_when_the_last_is_truncated(isolated_runs_dir: Path) -> None:
    run = stopped_run(isolated_runs_dir, last_epoch=3, best_epoch=2)
    truncated(run.path / runs.LAST_CHECKPOINT)
    fake_keras_file(run.path / runs.BEST_CHECKPOINT)
    start = _resume_point(run.path)
    assert (start.checkpoint, start.epoch) == (run.path / runs.BEST_CHECKPOINT, 2)
    assert [row["epoch"] for row in start.history.epochs] == [1, 2]
    assert start.note is not None
    assert "last.keras is unreadable" in start.note and "resumed from best.keras, the best epoch (2)" in start.note


def test_resume_without_a_usable_checkpoint_explains_what_to_do(
    isolated_runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = stopped_run(isolated_runs_dir, last_epoch=3, best_epoch=2)
    truncated(run.path / runs.LAST_CHECKPOINT)
    with pytest.raises(ModelLoadError, match=r"cannot resume run .*is truncated or corrupt.*Start a new run"):
        _resume_point(run.path)
    # the same through the command line: the message, no traceback (refused before TensorFlow starts)
    (run.path / runs.BEST_CHECKPOINT).write_text("not a model either")
    assert cli.main(["resume", str(run.path)]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "error: cannot resume run" in error and "File not found" not in error and "Traceback" not in error
