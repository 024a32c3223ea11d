"""Weight averaging and batch-norm recalibration (training.averaging) and `python -m training average`."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from fer_core.inference import load_classifier
from fer_core.preprocess import face_batch
from training import cli
from training.architectures import build_model
from training.averaging import average_weights, combine_models, recalibrate_batch_norm

pytestmark = pytest.mark.slow


def faces(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 48), dtype=np.uint8)


def batch_norms(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def test_average_weights_is_the_elementwise_mean() -> None:
    first, second = build_model("tiny"), build_model("tiny")
    averaged = average_weights([first, second])
    for mean, a, b in zip(averaged, first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(mean, (a + b) / 2, rtol=1e-6)


def test_models_of_different_architectures_are_refused() -> None:
    with pytest.raises(ValueError, match="only models of one architecture"):
        average_weights([build_model("tiny"), build_model("fernet")])
    with pytest.raises(ValueError, match="no models"):
        average_weights([])


def first_norm_inputs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """What the first batch-norm layer sees: the first convolution's output, which depends on no
    statistics, so its recalibrated moving mean and variance can be computed directly."""
    return np.asarray(keras.Model(model.input, batch_norms(model)[0].input)(face_batch(images)))


def test_recalibration_sets_the_statistics_of_the_clean_faces_and_nothing_else() -> None:
    model = build_model("tiny")
    first_norm = batch_norms(model)[0]
    first_norm.moving_mean.assign(np.full(first_norm.moving_mean.shape, 50.0, np.float32))  # far off
    other_weights = [w.numpy().copy() for w in model.weights if "moving" not in w.path]
    images = faces(100)

    assert recalibrate_batch_norm(model, images, batch_size=32) == 3  # batches of 32, 32, 32 and 4

    expected = np.mean(first_norm_inputs(model, images), axis=(0, 1, 2))  # over every face, equally
    np.testing.assert_allclose(first_norm.moving_mean.numpy(), expected, atol=1e-4)
    assert all(layer.momentum == 0.9 for layer in batch_norms(model))  # the tiny model's own, restored
    for before, after in zip(other_weights, [w.numpy() for w in model.weights if "moving" not in w.path], strict=True):
        np.testing.assert_array_equal(before, after)


def test_faces_stored_class_by_class_still_give_the_whole_set_s_variance() -> None:
    # A folder-layout data set comes class by class; unshuffled, every batch here would hold only
    # dark or only bright faces and the variance would miss the difference between the two.
    model = build_model("tiny")
    rng = np.random.default_rng(3)
    images = np.concatenate([rng.integers(0, 60, (64, 48, 48)), rng.integers(190, 256, (64, 48, 48))]).astype(np.uint8)

    recalibrate_batch_norm(model, images, batch_size=32)

    population = np.var(first_norm_inputs(model, images), axis=(0, 1, 2))
    np.testing.assert_allclose(batch_norms(model)[0].moving_variance.numpy(), population, rtol=0.1)


def test_frozen_batch_norm_layers_are_recalibrated_and_stay_frozen() -> None:
    model = build_model("tiny")
    model.trainable = False
    before = batch_norms(model)[0].moving_mean.numpy().copy()
    recalibrate_batch_norm(model, faces(32))
    assert not np.allclose(batch_norms(model)[0].moving_mean.numpy(), before)
    assert not any(layer.trainable for layer in batch_norms(model))


def test_dropout_is_off_during_recalibration_and_restored_after() -> None:
    model = build_model("fernet")
    dropouts = [layer for layer in model.layers if "Dropout" in type(layer).__name__]
    rates = [layer.rate for layer in dropouts]
    images = faces(64)
    recalibrate_batch_norm(model, images, batch_size=64)
    once = [layer.moving_mean.numpy().copy() for layer in batch_norms(model)]
    recalibrate_batch_norm(model, images, batch_size=64)  # dropout would make a second pass differ
    for first, second in zip(once, [layer.moving_mean.numpy() for layer in batch_norms(model)], strict=True):
        np.testing.assert_allclose(first, second, atol=1e-5)
    assert [layer.rate for layer in dropouts] == rates and any(rates)


def test_combine_models_rebuilds_mixed_precision_checkpoints_in_float32() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        checkpoints = [build_model("tiny"), build_model("tiny")]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert checkpoints[0].layers[2].dtype_policy.name == "mixed_bfloat16"
    combined = combine_models(checkpoints, faces(32), recalibrate=False)
    assert combined.name == "tiny"
    assert {layer.dtype_policy.name for layer in combined.layers} == {"float32"}


def test_average_command_writes_the_model_and_reports_validation_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [tmp_path / "a.keras", tmp_path / "b.keras"]
    for path in inputs:
        build_model("tiny").save(path)
    output = tmp_path / "out" / "averaged.keras"
    argv = ["average", *map(str, inputs), "--data", "demo", "--output", str(output), "--json"]

    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["model"] for row in report["inputs"]] == list(map(str, inputs))
    assert 0 <= report["val_accuracy"] <= 1 and report["recalibrated_on"] > 0 and report["val_faces"] > 0
    assert keras.models.load_model(output, compile=False).name == "tiny"
    assert report["served"] == str(output.with_suffix(".tflite")) and report["temperature"] > 0
    assert load_classifier(output).temperature == pytest.approx(report["temperature"])  # servable, calibrated

    assert cli.main(argv) == 2  # an existing output is kept unless --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    build_model("fernet").save(tmp_path / "other.keras")
    assert cli.main([*argv[:3], str(tmp_path / "other.keras"), *argv[3:], "--overwrite"]) == 2
    assert "only models of one architecture" in capsys.readouterr().err


def test_an_average_with_non_finite_weights_is_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [tmp_path / "a.keras", tmp_path / "b.keras"]
    for path in inputs:  # finite weights whose activations overflow: batch-norm statistics become infinite
        model = build_model("tiny")
        convolution = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
        kernel, *rest = convolution.get_weights()
        convolution.set_weights([np.full_like(kernel, 3e38), *rest])
        model.save(path)
    averaged = average_weights([keras.models.load_model(path) for path in inputs])
    assert all(np.isfinite(weights).all() for weights in averaged)  # the mean itself does not overflow
    output = tmp_path / "out.keras"
    argv = ["average", *map(str, inputs), "--data", "demo", "--output", str(output)]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert "the average has NaN or infinite weights" in error and "after batch-norm re-estimation" in error
    assert sorted(child.name for child in tmp_path.iterdir()) == ["a.keras", "b.keras"]


def test_an_average_whose_served_copy_is_refused_leaves_the_earlier_output_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import export

    source = tmp_path / "a.keras"
    build_model("tiny").save(source)
    output = tmp_path / "out.keras"
    output.write_bytes(b"the earlier average")
    monkeypatch.setattr(export, "lite_probabilities", lambda flatbuffer, faces: np.full((len(faces), 7), 1 / 7))
    argv = ["average", str(source), "--data", "demo", "--output", str(output), "--overwrite", "--no-recalibrate"]
    assert cli.main(argv) == 2
    assert "differs from it by" in capsys.readouterr().err
    assert output.read_bytes() == b"the earlier average"
    assert sorted(child.name for child in tmp_path.iterdir()) == ["a.keras", "out.keras"]  # no temporary files


def fake_run(folder: Path, seed: int, val_fraction: float) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"settings": {"seed": seed, "val_fraction": val_fraction}}))
    build_model("tiny").save(folder / "best.keras")
    return folder / "best.keras"


def test_average_holds_out_the_validation_faces_of_the_models_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = fake_run(tmp_path / "a", 7, 0.2), fake_run(tmp_path / "b", 7, 0.2)
    output = str(tmp_path / "out.keras")
    assert cli.main(["average", str(first), str(second), "--data", "demo", "--output", output, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["seed"], report["val_fraction"]) == (7, 0.2)

    other = fake_run(tmp_path / "c", 8, 0.2)
    argv = ["average", str(first), str(other), "--data", "demo", "--output", output, "--overwrite"]
    assert cli.main(argv) == 2
    assert "different validation splits" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:  # the parser applies the setting's own bounds
        cli.main([*argv, "--seed", "8", "--val-fraction", "1.0"])
    assert refused.value.code == 2
    assert "--val-fraction: must be between 0.001 and 0.49, got 1" in capsys.readouterr().err


def test_export_makes_a_models_served_copy_and_a_run_folders_from_its_best_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fer_core.serving import read_serving_record

    model = tmp_path / "mine.keras"
    build_model("tiny").save(model)
    assert cli.main(["export", str(model)]) == 0
    assert "agrees with mine.keras" in capsys.readouterr().out
    assert read_serving_record(model).temperature == 1.0  # no data given: nothing to calibrate on
    assert load_classifier(model).classify_batch(faces(2)).shape == (2, 7)

    best = fake_run(tmp_path / "run", 42, 0.1)  # a run that failed before its export: best.keras only
    (best.parent / "config.json").write_text(
        json.dumps({"settings": {"data": "demo", "arch": "tiny", "seed": 42, "val_fraction": 0.1}})
    )
    assert cli.main(["export", str(best.parent)]) == 0
    exported = best.parent / "model.keras"
    assert exported.is_file() and load_classifier(best.parent).source == str(exported)
    assert read_serving_record(exported).temperature != 1.0  # fitted on the run's own validation faces

    assert cli.main(["export", str(tmp_path / "notes.txt")]) == 2
    assert "neither a .keras file nor a run folder" in capsys.readouterr().err
