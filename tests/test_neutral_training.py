"""The backend-neutral training path (training.neutral), test-time views (training.views) and the
trainer's options that use them: crops, mixup, erasing, distillation, views, and the JAX backend."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.neutral import class_weight_vector, cosine_learning_rate, face_batches

ROOT = Path(__file__).resolve().parent.parent


def test_face_batches_mix_faces_and_targets_and_keep_each_batch_a_distribution() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    labels = np.arange(64) % 7
    plain = face_batches(images, labels, batch_size=16, seed=1, label_smoothing=0.1)
    mixed = face_batches(
        images, labels, batch_size=16, seed=1, label_smoothing=0.1, mixup=0.4, class_weights=class_weight_vector(labels)
    )
    assert len(plain) == 4
    faces, targets = plain[0]
    assert faces.shape == (16, 48, 48, 1) and faces.dtype == np.float32
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    assert targets.max() == pytest.approx(0.9 + 0.1 / 7)  # smoothed one-hot
    mixed_faces, mixed_targets, weights = mixed[0]
    np.testing.assert_allclose(mixed_targets.sum(axis=1), 1.0, rtol=1e-6)
    assert weights.shape == (16,)
    # mixing blends: some targets have two classes above the smoothing floor, and faces are not the originals
    assert ((mixed_targets > 0.1).sum(axis=1) == 2).any()
    assert not np.array_equal(mixed_faces, faces)
    assert (mixed_targets.max(axis=1) >= 0.5 * 0.9).all()  # the first face keeps the larger share


def test_cosine_schedule_warms_up_then_decays_to_its_floor() -> None:
    rates = [cosine_learning_rate(epoch, peak=1.0, epochs=20, warmup=2) for epoch in range(20)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1.0)
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates[2:]))
    assert rates[-1] == pytest.approx(0.01)


@pytest.mark.slow
def test_views_average_the_backbone_over_crops_and_mirror_images() -> None:
    from training.architectures import build_model
    from training.views import with_views

    backbone = build_model("tiny", input_size=40)
    faces = np.random.default_rng(2).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)

    def probabilities(images: np.ndarray) -> np.ndarray:
        return np.asarray(backbone(images, training=False))

    centre = faces[:, 4:44, 4:44]
    np.testing.assert_allclose(with_views(backbone, "center")(faces), probabilities(centre), atol=1e-6)
    mirrored = faces[:, :, ::-1]
    expected_flip = (probabilities(centre) + probabilities(mirrored[:, 4:44, 4:44])) / 2
    np.testing.assert_allclose(with_views(backbone, "flip")(faces), expected_flip, atol=1e-6)
    corners = [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]
    expected_crops = np.mean(
        [
            probabilities(source[:, top : top + 40, left : left + 40])
            for source in (faces, mirrored)
            for top, left in corners
        ],
        axis=0,
    )
    np.testing.assert_allclose(with_views(backbone, "crops")(faces), expected_crops, atol=1e-6)
    with pytest.raises(ValueError, match="views must be one of"):
        with_views(backbone, "five")


def _train(tmp_path: Path, *flags: str, backend: str = "tensorflow") -> Path:
    """Train one short run and return its folder: in this process under TensorFlow (as the other trainer
    tests do: a second interpreter would only add TensorFlow's start-up), in a child process under JAX
    (a process keeps the Keras backend it started with)."""
    runs_dir = tmp_path / "runs"
    arguments = [
        "train",
        "--data",
        "demo",
        "--arch",
        "tiny",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--batch-size",
        "32",
        "--run-dir",
        str(runs_dir),
        "--allow-concurrent",
        "--backend",
        backend,
        *flags,
    ]
    if backend == "tensorflow":
        from training import cli

        assert cli.main(arguments) == 0
    else:
        result = subprocess.run(
            [sys.executable, "-m", "training", *arguments],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=400,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    made = sorted(path for path in runs_dir.iterdir() if not path.name.startswith("."))
    return made[-1]


def _served_model(run_dir: Path) -> tuple[object, np.ndarray]:
    from fer_core.inference import load_classifier

    classifier = load_classifier(run_dir / "model.keras")
    faces = np.random.default_rng(3).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    return classifier, classifier.classify_batch(faces)


@pytest.mark.slow
def test_crop_mixup_erasing_and_views_train_export_and_serve(tmp_path: Path) -> None:
    run_dir = _train(tmp_path, "--crop", "40", "--mixup", "0.2", "--erasing", "0.5", "--tta", "flip")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished", status
    settings = json.loads((run_dir / "config.json").read_text())["settings"]
    assert (settings["crop"], settings["mixup"], settings["erasing"], settings["tta"]) == (40, 0.2, 0.5, "flip")
    import keras

    served = keras.models.load_model(run_dir / "model.keras")
    assert served.input_shape == (None, 48, 48, 1) and served.output_shape == (None, 7)
    assert any(layer.name == "mean_of_views" for layer in served.layers)  # two views averaged
    _, probabilities = _served_model(run_dir)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert metrics["n"] > 0 and sum(map(sum, metrics["confusion"])) == metrics["n"]  # the served copy ran on them
    record = json.loads((run_dir / "model.tflite.json").read_text())
    assert record["max_difference"] <= record["tolerance"]  # the LiteRT copy agrees with the views model

    # a student distilled from that run: its served model, views and all, is the teacher
    student = _train(tmp_path, "--crop", "40", "--distill-from", str(run_dir))
    assert json.loads((student / "status.json").read_text())["state"] == "finished"
    history = json.loads((student / "history.json").read_text())["epochs"]
    assert "val_accuracy" in history[-1]  # the student's accuracy, under the name the callbacks watch
    _, probabilities = _served_model(student)
    assert probabilities.shape == (4, 7)


def test_a_missing_teacher_is_refused_before_a_run_folder_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import cli

    arguments = ["train", "--data", "demo", "--run-dir", str(tmp_path / "runs"), "--epochs", "1"]
    assert cli.main([*arguments, "--distill-from", str(tmp_path / "nowhere.keras")]) == cli.EXIT_USAGE
    assert "nowhere.keras" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_mirrored_strategy_needs_the_tensorflow_backend() -> None:
    from training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match="mirrored"):
        TrainConfig(strategy="mirrored", backend="jax")


@pytest.mark.slow
def test_one_demo_epoch_under_jax_then_export_and_serve(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    run_dir = _train(tmp_path, backend="jax")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished", status
    assert status["versions"]["keras_backend"] == "jax"
    assert (run_dir / "model.tflite").is_file()  # exported by the TensorFlow finish step
    _, probabilities = _served_model(run_dir)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


@pytest.mark.slow
def test_the_neutral_graph_trains_with_augmentation_off_and_crops_to_the_network() -> None:
    from training.architectures import build_model
    from training.neutral import build_augmenter, build_distillation_model, build_training_model, trained_backbone

    network = build_model("tiny", input_size=40)
    plain = build_training_model(network, None)  # --no-augment
    assert plain.input_shape == (None, 48, 48, 1) and plain.output_shape == (None, 7)
    assert trained_backbone(plain).input_shape == (None, 40, 40, 1)
    faces = np.random.default_rng(4).uniform(0, 255, (2, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(plain(faces, training=False), network(faces[:, 4:44, 4:44], training=False), atol=1e-6)
    teacher = build_model("tiny")
    distill = build_distillation_model(build_model("tiny", input_size=40), [teacher], build_augmenter(0))
    assert distill.output_shape == (None, 14)  # the student's 7, then the teachers' mean 7
