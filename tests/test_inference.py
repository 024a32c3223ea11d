"""The inference pipeline: crops made exactly like training faces, one batched model call per image,
the served LiteRT copy agreeing with Keras and refused when it may not, calibration, flip averaging, model resolution, and drawing."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from fakes import write_served_model
from photo_samples import (
    detectable_faces,
    encode,
    fer_faces,
    group_photo,
    is_the_face,
    save_tiny_model,
    textured_background,
    tiny_classifier,
    tiny_model,
)

import fer_core
from fer_core.align import face_crop
from fer_core.detect import Box
from fer_core.draw import (
    draw_predictions,
    face_caption,
    label_layout,
    place_labels,
    scale_predictions,
)
from fer_core.errors import ModelLoadError
from fer_core.inference import EmotionClassifier, FacePrediction, Predictor, load_classifier, load_predictor
from fer_core.labels import EMOTION_COLORS_RGB, EMOTIONS, UNCERTAIN, UNCERTAIN_COLOR_RGB
from fer_core.preprocess import to_gray
from fer_core.serving import checked_lite_model


def random_faces(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 48), dtype=np.uint8)


@pytest.fixture(scope="module")
def classifier() -> EmotionClassifier:
    return tiny_classifier(seed=1)


@pytest.fixture(scope="module")
def found_faces(fer2013_dir) -> list[np.ndarray]:
    return detectable_faces(fer_faces(fer2013_dir), size=120, count=4)


# --- the classifier ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_served_copy_agrees_with_keras_on_the_real_architecture_with_trained_statistics(tmp_path) -> None:
    import keras

    from training.architectures import build_model
    from training.export import export_tflite

    keras.utils.set_random_seed(3)
    model = build_model("fernet")
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # non-trivial statistics to fold
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.2, mean.shape),
                    rng.uniform(0.5, 2.0, variance.shape),
                ]
            )
    path = tmp_path / "fernet.keras"
    model.save(path)
    export_tflite(path, model=model)
    served = load_classifier(path)
    for count in (1, 2, 5, 8, 40):
        faces = random_faces(count, seed=count)
        expected = np.asarray(model(faces.astype(np.float32)[..., None], training=False))
        np.testing.assert_allclose(served.classify_batch(faces), expected, atol=1e-4)


@pytest.mark.slow
def test_a_copy_that_disagrees_with_keras_is_not_written(tmp_path, monkeypatch) -> None:
    from training import export

    path = save_tiny_model(tmp_path / "tiny.keras")
    (tmp_path / "tiny.tflite").unlink()
    monkeypatch.setattr(export, "lite_probabilities", lambda flatbuffer, faces: np.full((len(faces), 7), 1 / 7))
    with pytest.raises(ModelLoadError, match="differs from it by"):
        export.export_tflite(path)
    assert not (tmp_path / "tiny.tflite").exists()


@pytest.mark.slow
def test_a_model_with_nan_weights_is_refused_at_export_and_at_load(tmp_path) -> None:
    from training.export import convert_to_tflite, export_tflite

    model = tiny_model()
    kernel, bias = model.get_layer("emotion").get_weights()
    model.get_layer("emotion").set_weights([np.full_like(kernel, np.nan), bias])
    model.save(tmp_path / "nan.keras")
    with pytest.raises(ModelLoadError, match="non-finite"):
        export_tflite(tmp_path / "nan.keras", model=model)
    with pytest.raises(ModelLoadError, match="non-finite outputs"):
        EmotionClassifier(convert_to_tflite(model), source="nan.tflite")


@pytest.mark.slow
def test_stale_tampered_or_unchecked_copies_are_refused_with_the_fix(tmp_path) -> None:
    path = save_tiny_model(tmp_path / "tiny.keras")
    load_classifier(path)  # served as exported
    record = json.loads((tmp_path / "tiny.tflite.json").read_text())

    (tmp_path / "tiny.tflite.json").write_text(json.dumps({**record, "max_difference": 0.3}))
    with pytest.raises(ModelLoadError, match=r"differs from the Keras model by 0\.3"):
        load_classifier(path)
    (tmp_path / "tiny.tflite.json").write_text(json.dumps({**record, "temperature": "warm"}))
    with pytest.raises(ModelLoadError, match=r"'temperature' has the wrong type.*training export"):
        load_classifier(path)
    (tmp_path / "tiny.tflite.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tiny\.tflite\.json is missing.*python -m training export"):
        load_classifier(path)
    (tmp_path / "tiny.tflite.json").write_text(json.dumps(record))

    tiny_model(seed=9).save(path)  # the Keras model trained further after its export
    with pytest.raises(ModelLoadError, match=r"earlier version of tiny\.keras"):
        load_classifier(path)
    (tmp_path / "tiny.tflite").write_bytes((tmp_path / "tiny.tflite").read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="changed or damaged"):
        load_classifier(path)
    (tmp_path / "tiny.tflite").unlink()
    with pytest.raises(ModelLoadError, match="no LiteRT copy"):
        load_classifier(path)
    save_model = save_tiny_model(tmp_path / "again.keras")
    save_model.unlink()  # a newer best checkpoint retired this export: its copy alone is not served
    with pytest.raises(ModelLoadError, match="not served without it"):
        load_classifier(save_model.with_suffix(".tflite"))


@pytest.mark.parametrize("temperature", [1e-310, 0.001, 0.0, -1.0, 25.0, 1e308])
def test_a_record_whose_temperature_no_fit_gives_is_refused_as_damaged(tmp_path, temperature: float) -> None:
    path = write_served_model(tmp_path / "model.keras", b"a model")
    assert checked_lite_model(path)[1].temperature == 1.0  # served while its record is sound
    record = json.loads((tmp_path / "model.tflite.json").read_text())
    (tmp_path / "model.tflite.json").write_text(json.dumps({**record, "temperature": temperature}))
    with pytest.raises(
        ModelLoadError, match=r"model\.tflite\.json is damaged: its calibration temperature .* is outside"
    ):
        checked_lite_model(path)
    for edge in (0.05, 20.0):  # the ends of the range a fit can give stay served
        (tmp_path / "model.tflite.json").write_text(json.dumps({**record, "temperature": edge}))
        assert checked_lite_model(path)[1].temperature == edge


def test_a_litert_copy_that_is_not_a_model_is_named_not_its_keras_file(tmp_path) -> None:
    path = write_served_model(tmp_path / "model.keras", b"a model")
    jpeg = encode(textured_background(32, 32), ".jpg")
    (tmp_path / "model.tflite").write_bytes(jpeg)  # swapped, with its hash updated: the record holds
    record = json.loads((tmp_path / "model.tflite.json").read_text())
    record["tflite_sha256"] = hashlib.sha256(jpeg).hexdigest()
    (tmp_path / "model.tflite.json").write_text(json.dumps(record))
    with pytest.raises(ModelLoadError) as raised:
        load_classifier(path)
    message = str(raised.value)
    assert message.startswith("model.tflite (the LiteRT copy of model.keras) is not a model LiteRT can run")
    assert f"python -m training export {path}" in message


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("legacy.h5", "is a legacy Keras .h5 model: models are served from a .keras file"),
        ("photo.jpg", "is not a model file"),
    ],
)
def test_a_model_file_of_another_kind_is_named_as_given(tmp_path, name: str, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ModelLoadError, match=re.escape(f"{path} {expected}")) as raised:
        load_classifier(path)
    assert ".keras" not in str(raised.value).split(expected)[0]  # never "no model file at legacy.keras"


def test_bytes_that_are_not_a_litert_model_are_refused() -> None:
    with pytest.raises(ModelLoadError, match="not a model LiteRT can run"):
        EmotionClassifier(b"definitely not a flatbuffer", source="junk.tflite")


@pytest.mark.slow
def test_wrong_model_shapes_are_refused(tmp_path) -> None:
    import keras
    import tensorflow as tf

    from training.export import export_tflite

    inputs = keras.Input((64, 64, 3))
    wrong = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelLoadError, match=r"a FER model takes \(None, 48, 48, 1\)"):
        export_tflite(tmp_path / "wrong.keras", model=wrong)
    forward = tf.function(lambda x: wrong(x), input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32)])
    flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], wrong).convert()
    with pytest.raises(ModelLoadError, match=r"a FER model takes \(N, 48, 48, 1\)"):
        EmotionClassifier(flatbuffer, source="wrong.tflite")


@pytest.mark.slow
def test_the_temperature_calibrates_probabilities_without_changing_the_winner() -> None:
    faces = random_faces(12, seed=5)
    plain = tiny_classifier(seed=2).classify_batch(faces)
    sharper = tiny_classifier(seed=2, temperature=0.5).classify_batch(faces)
    np.testing.assert_array_equal(plain.argmax(axis=1), sharper.argmax(axis=1))
    assert (sharper.max(axis=1) >= plain.max(axis=1) - 1e-6).all()
    expected = plain.astype(np.float64) ** 2
    np.testing.assert_allclose(sharper, expected / expected.sum(axis=1, keepdims=True), atol=1e-5)


@pytest.mark.slow
def test_probabilities_have_one_row_per_face_and_sum_to_one(classifier) -> None:
    scores = classifier.classify_batch(random_faces(6))
    assert scores.shape == (6, 7) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert classifier.classify_batch(np.zeros((0, 48, 48), np.uint8)).shape == (0, 7)


@pytest.mark.slow
def test_flip_averaging_is_the_mean_of_the_face_and_its_mirror(classifier) -> None:
    faces = random_faces(5, seed=9)
    plain = classifier.classify_batch(faces)
    mirrored = classifier.classify_batch(faces[:, :, ::-1])
    averaged = classifier.classify_batch(faces, tta=True)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(plain, mirrored)  # the test would prove nothing on symmetric scores


@pytest.mark.slow
def test_threads_can_share_a_classifier(classifier) -> None:
    faces = [random_faces(count, seed=count) for count in (1, 3, 8, 2)]
    expected = [classifier.classify_batch(batch) for batch in faces]
    results: dict[int, np.ndarray] = {}

    def work(index: int) -> None:
        for _ in range(20):
            results[index] = classifier.classify_batch(faces[index])

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(faces))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, scores in enumerate(expected):
        np.testing.assert_allclose(results[index], scores, atol=1e-6)


# --- the predictor: detection + one batched classification ---------------------------------------


@pytest.mark.slow
@pytest.mark.fer2013
def test_predict_finds_the_faces_and_classifies_them_in_one_call(classifier, found_faces, monkeypatch) -> None:
    bgr_image, boxes = group_photo(found_faces)
    predictor = Predictor(classifier)
    calls = []
    original = classifier.classify_batch
    monkeypatch.setattr(
        classifier, "classify_batch", lambda faces, **kw: calls.append(len(faces)) or original(faces, **kw)
    )
    predictions = predictor.predict(bgr_image)
    assert calls == [len(boxes)]
    assert [p.box.x for p in predictions] == sorted(p.box.x for p in predictions)  # left to right
    for box in boxes:
        assert any(is_the_face(p.box, box) for p in predictions), (box, [p.box for p in predictions])
    detections = predictor.detector.detect(bgr_image)
    crops = np.stack([face_crop(to_gray(bgr_image), detection) for detection in detections])
    expected = original(crops)
    for prediction, crop, scores in zip(predictions, crops, expected, strict=True):
        assert isinstance(prediction, FacePrediction)
        np.testing.assert_array_equal(prediction.gray_face, crop)  # aligned by its landmarks
        np.testing.assert_allclose(prediction.scores, scores, atol=1e-6)
        assert prediction.emotion == EMOTIONS[int(np.argmax(scores))]
        assert prediction.confidence == pytest.approx(float(scores.max()))
        assert set(prediction.scores_by_emotion()) == set(EMOTIONS)
        assert 0.0 < (prediction.detection_score or 0.0) <= 1.0 and prediction.landmarks is not None


@pytest.mark.slow
def test_no_face_returns_an_empty_list(classifier) -> None:
    assert Predictor(classifier).predict(textured_background(240, 320)) == []


@pytest.mark.slow
def test_whole_image_prediction_uses_the_whole_image_as_the_face(classifier) -> None:
    face = random_faces(1, seed=5)[0]
    prediction = Predictor(classifier).predict_whole_image(face)
    assert prediction.box == Box(0, 0, 48, 48)
    np.testing.assert_array_equal(prediction.gray_face, face)
    np.testing.assert_allclose(prediction.scores, classifier.classify_batch(face[None])[0], atol=1e-6)


def test_label_is_uncertain_below_the_threshold() -> None:
    scores = np.array([0.05, 0.05, 0.1, 0.45, 0.15, 0.1, 0.1], np.float32)
    prediction = FacePrediction(Box(0, 0, 10, 10), "happy", 0.45, scores, np.zeros((48, 48), np.uint8))
    assert prediction.label(0.4) == "happy"
    assert prediction.label(0.5) == UNCERTAIN
    assert face_caption(prediction, 0.5, 2) == "#2 uncertain (happy 45%)"
    assert face_caption(prediction, 0.4) == "happy 45%"


@pytest.mark.slow
def test_load_predictor_takes_a_path_and_defaults_to_the_promoted_model(isolated_runs_dir) -> None:
    path = save_tiny_model(isolated_runs_dir / "promoted.keras", constant_emotion="surprise")
    predictor = fer_core.load_predictor()
    assert Path(predictor.classifier.source) == path
    assert predictor.predict_whole_image(random_faces(1)[0]).emotion == "surprise"
    other = save_tiny_model(isolated_runs_dir / "elsewhere" / "sad.keras", constant_emotion="sad")
    assert load_predictor(other).predict_whole_image(random_faces(1)[0]).emotion == "sad"


def test_a_corrupt_model_file_is_a_model_load_error(tmp_path) -> None:
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=r"broken\.keras has no LiteRT copy"):
        load_predictor(path)


# --- drawing -------------------------------------------------------------------------------------


def prediction_at(box: Box, emotion: str, confidence: float) -> FacePrediction:
    scores = np.full(7, (1 - confidence) / 6, np.float32)
    scores[EMOTIONS.index(emotion)] = confidence
    return FacePrediction(box, emotion, confidence, scores, np.zeros((48, 48), np.uint8))


def test_drawing_returns_an_annotated_copy_in_the_emotions_colour() -> None:
    bgr_image = np.full((400, 600, 3), 30, np.uint8)
    original = bgr_image.copy()
    happy = prediction_at(Box(100, 150, 120, 120), "happy", 0.9)
    unsure = prediction_at(Box(400, 150, 120, 120), "sad", 0.3)
    annotated = draw_predictions(bgr_image, [happy, unsure], threshold=0.5)
    np.testing.assert_array_equal(bgr_image, original)
    assert annotated.shape == bgr_image.shape and annotated.dtype == np.uint8
    red, green, blue = EMOTION_COLORS_RGB["happy"]
    np.testing.assert_array_equal(annotated[210, 100], [blue, green, red])  # left edge of the happy box
    red, green, blue = UNCERTAIN_COLOR_RGB
    np.testing.assert_array_equal(annotated[210, 400], [blue, green, red])  # the uncertain face is grey
    assert (annotated[140, 100:200] != 30).any()  # a caption above the box


def test_drawing_scales_with_the_image_and_survives_edges() -> None:
    small = draw_predictions(np.zeros((48, 48, 3), np.uint8), [prediction_at(Box(0, 0, 48, 48), "fear", 0.8)])
    assert small.shape == (48, 48, 3)
    big_image = np.zeros((3000, 4000, 3), np.uint8)
    big = draw_predictions(big_image, [prediction_at(Box(3900, 0, 200, 200), "angry", 0.8)])
    red, green, blue = EMOTION_COLORS_RGB["angry"]
    assert (big[500:505, 3900] == [blue, green, red]).all(axis=1).sum() == 0  # box ends at y=200
    thick = (big[190, 3880:3940] == [blue, green, red]).all(axis=1).sum()  # below the caption
    assert 8 <= thick <= 12  # lines grow with the image (10 px at 4000 px wide)


def overlap(first: Box, second: Box) -> int:
    width = min(first.x + first.width, second.x + second.width) - max(first.x, second.x)
    height = min(first.y + first.height, second.y + second.height) - max(first.y, second.y)
    return max(0, width) * max(0, height)


def test_labels_of_a_crowded_group_photo_overlap_neither_each_other_nor_other_faces() -> None:
    # Five faces in a row, closer than their labels are wide ("#1 uncertain (happy 36%)" ran into #3's).
    boxes = [Box(60 + 90 * index, 200 + (40 if index % 2 else 0), 80, 80) for index in range(5)]
    sizes = [(230, 28), (150, 28), (230, 28), (150, 28), (150, 28)]
    labels = place_labels(boxes, sizes, (600, 500))
    for index, label in enumerate(labels):
        assert (label.width, label.height) == sizes[index]
        assert label.x >= 0 and label.x + label.width <= 600 and label.y >= 0 and label.y + label.height <= 500
        assert not [other for other in labels if other is not label and overlap(label, other)], (index, labels)
        assert not [box for box_index, box in enumerate(boxes) if box_index != index and overlap(label, box)]


def test_a_lone_face_keeps_its_label_above_it_and_one_at_the_top_edge_inside() -> None:
    assert place_labels([Box(100, 100, 80, 80)], [(120, 20)], (400, 300)) == [Box(100, 80, 120, 20)]
    assert place_labels([Box(100, 0, 80, 80)], [(120, 20)], (400, 300)) == [Box(100, 0, 120, 20)]


def test_every_label_of_a_group_photo_is_drawn_whole() -> None:
    """Boxes that touch, labels wider than the faces: each label keeps its own colours, no other face's
    box line or label runs through it (box #5 struck through #4's label)."""
    emotions = ["angry", "disgust", "fear", "happy", "sad", "surprise"]
    faces = [prediction_at(Box(20 + 95 * index, 150, 100, 100), emotion, 0.9) for index, emotion in enumerate(emotions)]
    bgr_image = np.full((400, 620, 3), 30, np.uint8)
    annotated = draw_predictions(bgr_image, faces)
    layout = label_layout(bgr_image.shape, faces)
    for index, (caption, label) in enumerate(layout):
        assert caption.startswith(f"#{index + 1} {emotions[index]} ")
        region = annotated[label.y : label.y + label.height, label.x : label.x + label.width].reshape(-1, 3)
        for other in emotions[:index] + emotions[index + 1 :]:
            red, green, blue = EMOTION_COLORS_RGB[other]
            assert not (region == [blue, green, red]).all(axis=1).any(), (index, other, label)


def test_scaled_predictions_scale_only_the_boxes() -> None:
    prediction = prediction_at(Box(10, 20, 30, 40), "happy", 0.9)
    (scaled,) = scale_predictions([prediction], 0.5)
    assert scaled.box == Box(5, 10, 15, 20)
    assert scaled.emotion == "happy" and scaled.scores is prediction.scores
