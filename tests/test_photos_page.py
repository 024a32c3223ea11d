"""The Photos page through AppTest: faces found and labelled, every kind of bad file reported by name
while the good files of the same upload are still shown, the threshold, the whole-image fallback,
the downloads, and which model the page uses."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from photo_samples import (
    copy_model,
    detectable_faces,
    encode,
    fer_faces,
    fixture_model,
    group_photo,
    jpeg_cut_short,
    jpeg_with_orientation,
    pil_bytes,
    png_claiming_size,
    textured_background,
)
from streamlit.testing.v1 import AppTest

import app.model_picker as app_models
from app.charts.predictions import probability_chart
from app.views.photos import annotated_png, png_scale, process_uploads
from fer_core import model_store
from fer_core.analysis import CSV_COLUMNS, ImageAnalysis, face_records, records_to_json
from fer_core.datasets import describe_source
from fer_core.detect import PHOTO_PRESET, Box, Landmarks, make_detector
from fer_core.face_table import records_to_csv
from fer_core.inference import FacePrediction, Predictor
from fer_core.labels import EMOTIONS

PAGE = str(PROJECT_ROOT / "app" / "views" / "photos.py")
WHOLE_IMAGE = "Classify the whole image as one face"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """Served models that call every face "surprise" or "happy": committed files, so no TensorFlow runs."""
    folder = tmp_path_factory.mktemp("models")
    return {emotion: fixture_model(emotion, folder / f"{emotion}.keras") for emotion in ("surprise", "happy")}


@pytest.fixture
def promoted(model_files, isolated_runs_dir) -> Path:
    """A promoted model that calls every face "surprise" (the shipped one is never loaded)."""
    return copy_model(model_files["surprise"], isolated_runs_dir / "promoted.keras")


@pytest.fixture(scope="module")
def group(fer2013_dir) -> tuple[bytes, list[Box]]:
    faces = detectable_faces(fer_faces(fer2013_dir), size=120, count=3)
    bgr_image, boxes = group_photo(faces, width=720)
    return encode(bgr_image, ".png"), boxes


@pytest.fixture(scope="module")
def fer_crop(fer2013_dir) -> bytes:
    """A 48x48 FER2013 face in which the photo detector finds no face (it finds one in many of them)."""
    detector = make_detector(PHOTO_PRESET)
    for path in sorted((fer2013_dir / "test" / "happy").glob("*.jpg")):
        if not detector.detect(cv2.imread(str(path))):
            return path.read_bytes()
    pytest.skip("the detector found a face in every FER2013 happy test crop")


def test_the_fixture_models_are_served_and_give_their_emotion_without_tensorflow() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np; sys.path.insert(0, 'tests');"
            "from photo_samples import FIXTURE_MODELS_DIR; from fer_core.inference import load_classifier;"
            "from fer_core.labels import EMOTIONS;"
            "faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype(np.float32);"
            "best = {e: {EMOTIONS[int(i)] for i in load_classifier(FIXTURE_MODELS_DIR / f'{e}.keras').forward(faces)"
            ".argmax(axis=1)} for e in ('happy', 'surprise')};"
            "print(best, [m for m in ('tensorflow', 'keras') if m in sys.modules])",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "{'happy': {'happy'}, 'surprise': {'surprise'}} []"


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    at.file_uploader(key="photos_upload").set_value([(name, data, "image/png") for name, data in files])
    at.run()
    assert not at.exception, at.exception
    return at


def photo_headings(at: AppTest) -> list[str]:
    return [markdown.value.removeprefix("#### ") for markdown in at.markdown if markdown.value.startswith("#### ")]


def whole_image_toggle(at: AppTest):
    return next(toggle for toggle in at.toggle if toggle.label == WHOLE_IMAGE)


def face_tables(at: AppTest) -> list:
    return [frame.value for frame in at.dataframe]


def test_empty_page_says_what_to_do_and_which_model(promoted) -> None:
    at = run_page()
    assert "Add one or more photos" in at.info[0].value
    assert "promoted" in at.caption[0].value
    assert at.file_uploader(key="photos_upload").accept_multiple_files
    assert set(at.file_uploader(key="photos_upload").allowed_type) >= {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def test_group_photo_faces_are_boxed_labelled_and_charted(promoted, group) -> None:
    data, boxes = group
    at = upload(run_page(), [("group.png", data)])
    assert photo_headings(at) == ["group.png"]
    (table,) = face_tables(at)
    assert list(table["face"]) == [f"#{number}" for number in range(1, len(boxes) + 1)]
    assert set(table["label"]) == {"surprise"}
    assert len(at.get("plotly_chart")) == len(boxes)
    crops = [image for image in at.image if image.captions[0].startswith("#")]
    assert [image.captions[0] for image in crops] == [f"#{n} surprise 100%" for n in range(1, len(boxes) + 1)]
    assert len(at.image) == 1 + len(boxes)  # the annotated photo and the 48x48 crop of each face
    assert [metric.value for metric in at.metric] == ["1", str(len(boxes)), "0"]
    assert not at.error


def test_bad_files_get_an_error_each_and_good_files_are_still_shown(promoted, group) -> None:
    data, boxes = group
    truncated = encode(textured_background(300, 400), ".jpg")
    bad = {
        "empty.png": (b"", "empty"),
        "notes.png": (b"name,emotion\nalice,happy\n", "not an image"),
        "half.jpg": (truncated[: len(truncated) // 2], "damaged or truncated"),
        "bomb.png": (png_claiming_size(20_000, 20_000), "too large"),
    }
    good = {
        "group.png": data,
        "png-named.jpg": data,
        "deep.png": encode((np.linspace(0, 65535, 200 * 300).reshape(200, 300)).astype(np.uint16), ".png"),
        "alpha.png": pil_bytes("RGBA", (300, 200), (200, 30, 30, 120), "PNG"),
        "cmyk.jpg": pil_bytes("CMYK", (300, 200), (0, 120, 200, 10), "JPEG"),
        "gray.png": pil_bytes("L", (300, 200), 90, "PNG"),
        "photo.webp": pil_bytes("RGB", (300, 200), (20, 90, 160), "WEBP"),
        "photo.bmp": pil_bytes("RGB", (300, 200), (20, 90, 160), "BMP"),
    }
    files = [(name, content) for name, (content, _) in bad.items()] + list(good.items())
    at = upload(run_page(), files)
    errors = [error.value for error in at.error]
    assert len(errors) == len(bad)
    for (name, (_, problem)), error in zip(bad.items(), errors, strict=True):
        assert name in error and problem in error
    assert photo_headings(at) == list(good)
    tables = face_tables(at)
    assert [len(table) for table in tables] == [len(boxes), len(boxes)]  # both copies of the group photo
    assert [metric.value for metric in at.metric] == [str(len(files)), str(2 * len(boxes)), str(len(bad))]


def test_a_damaged_jpeg_is_shown_with_a_warning_beside_its_result(promoted, group) -> None:
    data, _ = group
    upright = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    cut = jpeg_cut_short(upright)  # the lower half is grey: faces there are lost
    at = upload(run_page(), [("cut.jpg", cut), ("group.png", data)])
    assert not at.error and photo_headings(at) == ["cut.jpg", "group.png"]  # kept, not refused
    (warning,) = [warning.value for warning in at.warning if "damaged" in warning.value]
    assert "**cut.jpg** is damaged" in warning and "premature end of data segment" in warning
    assert "may be wrong" in warning


def test_exif_rotated_phone_photo_is_turned_upright_and_its_faces_found(promoted, group) -> None:
    data, boxes = group
    upright = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)  # how a phone held sideways stores it
    at = upload(run_page(), [("phone.jpg", jpeg_with_orientation(stored, 6))])
    height, width = upright.shape[:2]
    assert f"{width} x {height} pixels" in at.caption[1].value
    (table,) = face_tables(at)
    assert len(table) == len(boxes)


def test_faces_below_the_threshold_are_uncertain(promoted, group) -> None:
    at = upload(run_page(), [("group.png", group[0])])
    assert set(face_tables(at)[0]["label"]) == {"surprise"}
    at.slider(key="photos_threshold").set_value(100).run()
    assert set(face_tables(at)[0]["label"]) == {"uncertain"}


def test_a_face_crop_with_no_face_found_is_classified_whole(promoted, fer_crop) -> None:
    at = upload(run_page(), [("crop.jpg", fer_crop)])
    assert "No face found in **crop.jpg**" in at.warning[0].value
    assert whole_image_toggle(at).value  # on by default for a small image
    (table,) = face_tables(at)
    assert list(table["label"]) == ["surprise"]
    (png,) = [button.proto for button in at.get("download_button") if button.proto.label == "Annotated image (PNG)"]
    assert "Drawn 8x enlarged (48 x 48 → 384 x 384 pixels)" in png.help  # the PNG's scale, said
    assert "annotated_png_scale = 8 in the JSON" in png.help


def test_a_large_image_with_no_face_offers_whole_image_classification(promoted) -> None:
    sky = np.dstack([np.linspace(120, 250, 600)[None, :].repeat(400, axis=0)] * 3).astype(np.uint8)
    at = upload(run_page(), [("sky.png", encode(sky))])
    assert "No face found" in at.warning[0].value
    toggle = whole_image_toggle(at)
    assert not toggle.value and not face_tables(at)
    toggle.set_value(True).run()
    assert not at.exception
    assert len(face_tables(at)[0]) == 1


def test_a_very_thin_image_is_shown_not_a_traceback(promoted) -> None:
    banner = np.full((2, 4000, 3), 180, np.uint8)  # its short side rounds to 0 when scaled for detection
    at = upload(run_page(), [("banner.png", encode(banner))])
    assert not at.exception, at.exception
    assert photo_headings(at) == ["banner.png"] and not at.error
    assert "No face found" in at.warning[0].value


def test_camera_photo_is_processed(promoted, group) -> None:
    at = run_page()
    at.button_group(key="photos_source").set_value("Camera").run()
    bgr_image = cv2.imdecode(np.frombuffer(group[0], np.uint8), cv2.IMREAD_COLOR)
    _, jpeg = cv2.imencode(".jpg", bgr_image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    at.camera_input(key="photos_camera").upload("image.jpg", jpeg.tobytes()).run()
    assert not at.exception, at.exception
    assert len(face_tables(at)[0]) == len(group[1])


def test_page_uses_the_promoted_model_when_there_is_one(model_files, isolated_runs_dir, monkeypatch, fer_crop) -> None:
    monkeypatch.setattr(model_store, "SHIPPED_MODEL_PATH", model_files["happy"])
    at = upload(run_page(), [("crop.jpg", fer_crop)])
    assert "shipped quality model" in at.caption[0].value
    assert list(face_tables(at)[0]["label"]) == ["happy"]

    copy_model(model_files["surprise"], isolated_runs_dir / "promoted.keras")
    (isolated_runs_dir / "promoted.json").write_text(
        json.dumps({"run": "20260101-demo-tiny", "data_source": describe_source("demo")})
    )
    at = upload(run_page(), [("crop.jpg", fer_crop)])
    assert "promoted run" in at.caption[0].value and "20260101-demo-tiny" in at.caption[0].value
    assert "synthetic demo set" in at.caption[0].value
    assert list(face_tables(at)[0]["label"]) == ["surprise"]


def test_no_model_at_all_is_an_error_not_a_traceback(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(model_store, "SHIPPED_MODEL_PATH", tmp_path / "missing.keras")
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception
    assert "no model found" in at.error[0].value


def test_downloads_are_offered(promoted, group) -> None:
    at = upload(run_page(), [("group.png", group[0])])
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels == ["All faces (CSV)", "All faces (JSON)", "Annotated image (PNG)"]
    assert "Drawn at the photo's own size" in at.get("download_button")[2].proto.help


# --- the page's helpers, without Streamlit ---------------------------------------------------------


def fake_prediction(box: Box, emotion: str = "happy") -> FacePrediction:
    scores = np.full(7, 0.05, np.float32)
    scores[EMOTIONS.index(emotion)] = 0.7
    return FacePrediction(box, emotion, 0.7, scores, np.zeros((48, 48), np.uint8))


def test_csv_and_json_have_one_row_per_face_with_all_probabilities() -> None:
    face = fake_prediction(Box(1, 2, 30, 40))._replace(
        detection_score=0.93, landmarks=Landmarks((8, 15), (22, 15), (15, 22), (9, 32), (21, 32))
    )
    rows = face_records(ImageAnalysis((100, 80), (face,), None), "a.png", threshold=0.8)
    (row,) = list(csv.DictReader(io.StringIO(records_to_csv(rows))))
    assert list(row) == list(CSV_COLUMNS)
    assert row["file"] == "a.png" and row["face"] == "1"
    assert [row[key] for key in ("x", "y", "w", "h")] == ["1", "2", "30", "40"]
    assert (row["kind"], row["frame"], row["time_s"]) == ("photo", "0", "0.000")  # the video table's columns too
    assert row["label"] == "uncertain" and row["emotion"] == "happy" and row["detection_score"] == "0.9300"
    assert (row["right_eye_x"], row["left_eye_x"], row["mouth_left_y"]) == ("8.0", "22.0", "32.0")
    assert [float(row[f"p_{emotion}"]) for emotion in EMOTIONS] == pytest.approx(list(face.scores), abs=1e-4)
    (record,) = json.loads(records_to_json(rows))
    assert record["box"] == [1, 2, 30, 40] and list(record["scores"]) == list(EMOTIONS)
    assert record["landmarks"]["nose"] == [15, 22] and record["detection_score"] == 0.93


def test_a_whole_image_face_has_no_landmarks_or_detector_score() -> None:
    analysis = ImageAnalysis((48, 48), (), fake_prediction(Box(0, 0, 48, 48)))
    assert analysis.is_small and analysis.faces_used() == [analysis.whole_image]
    assert analysis.faces_used(whole_image=False) == []
    (row,) = list(csv.DictReader(io.StringIO(records_to_csv(face_records(analysis, "crop.jpg")))))
    assert row["whole_image"] == "True" and row["detection_score"] == "" and row["nose_x"] == ""


def test_annotated_png_keeps_full_resolution_and_enlarges_face_crops() -> None:
    big = encode(textured_background(2000, 3000))
    png = annotated_png(big, [fake_prediction(Box(100, 100, 400, 400))], threshold=0.5)()
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (2000, 3000, 3)
    crop = encode(np.zeros((48, 48, 3), np.uint8))
    png = annotated_png(crop, [fake_prediction(Box(0, 0, 48, 48))], threshold=0.5)()
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (384, 384, 3)
    assert (png_scale((48, 48)), png_scale((200, 100)), png_scale((360, 100)), png_scale((3000, 2000))) == (8, 2, 1, 1)


class FakeUpload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


class CountingPredictor(Predictor):
    def __init__(self) -> None:
        self.classifier, self.detector, self.align, self.calls = object(), object(), True, 0

    def predict(self, bgr_image, *, tta=False):
        self.calls += 1
        return [fake_prediction(Box(0, 0, 10, 10))]


def test_uploads_are_processed_once_and_bad_ones_do_not_stop_the_rest() -> None:
    predictor, memo = CountingPredictor(), {}
    good = encode(textured_background(50, 60))
    files = [FakeUpload("bad.png", b"nope"), FakeUpload("good.png", good)]
    first = process_uploads(files, predictor, memo=memo)
    assert [result.error is None for result in first] == [False, True]
    analysis = first[1].analysis
    assert analysis is not None and analysis.size == (60, 50) and len(analysis.faces) == 1
    process_uploads(files, predictor, memo=memo)  # a rerun (the threshold moved): no new detection
    assert predictor.calls == 1
    process_uploads(files[:1], predictor, memo=memo)
    assert len(memo) == 1  # the removed photo's result is dropped


def test_probability_chart_has_the_seven_emotions_in_order() -> None:
    figure = probability_chart(dict(zip(EMOTIONS, np.linspace(0.1, 0.2, 7), strict=True)), threshold=0.4)
    (bars,) = figure.data
    assert list(bars.y) == list(EMOTIONS)
    with pytest.raises(ValueError, match="scores lack"):
        probability_chart({"happy": 1.0})


def test_markdown_in_a_file_name_is_shown_as_plain_text(promoted, group) -> None:
    name = "[click me](http://evil.example)_**bold**.png"
    at = upload(run_page(), [(name, group[0]), ("![x](http://evil.example/x.png).png", b"")])
    (heading,) = [markdown for markdown in at.markdown if markdown.value.startswith("#### ")]
    assert "\\[click me\\]\\(http://evil.example\\)\\_\\*\\*bold\\*\\*.png" in heading.value  # escaped: no link
    assert "\\!\\[x\\]\\(http://evil.example/x.png\\).png" in at.error[0].value


def test_a_corrupt_promoted_model_falls_back_to_the_shipped_one_with_a_warning(
    model_files, isolated_runs_dir, monkeypatch, group
) -> None:
    monkeypatch.setattr(model_store, "SHIPPED_MODEL_PATH", model_files["happy"])
    monkeypatch.setattr(app_models, "SHIPPED_MODEL_PATH", model_files["happy"])
    promoted_model = copy_model(model_files["surprise"], isolated_runs_dir / "promoted.keras")
    promoted_model.with_suffix(".tflite").write_bytes(b"truncated")
    at = upload(run_page(), [("group.png", group[0])])
    assert not at.exception and not at.error
    assert "promoted.keras cannot be used" in at.warning[0].value and "shipped default instead" in at.warning[0].value
    assert "shipped quality model" in at.caption[0].value
    assert set(face_tables(at)[0]["label"]) == {"happy"}  # the shipped stand-in, not the broken promoted model


def test_the_same_photo_gives_the_same_boxes_in_the_cli_the_library_and_the_page(promoted, group, tmp_path) -> None:
    """One detection preset: python -m fer_core predict, fer_core.load_predictor() and the Photos page agree."""
    import fer_core
    from fer_core import cli

    data, _ = group
    photo = tmp_path / "group.png"
    photo.write_bytes(data)
    library = [list(face.box) for face in fer_core.load_predictor().predict(fer_core.read_image(photo))]
    at = upload(run_page(), [("group.png", data)])
    out = tmp_path / "cli.csv"
    assert cli.main(["predict", str(photo), "--csv", str(out), "--json"]) == 0
    cli_rows = list(csv.DictReader(out.open()))
    cli_boxes = [[int(row[key]) for key in ("x", "y", "w", "h")] for row in cli_rows]
    assert len(library) >= 2 and cli_boxes == library
    tables = face_tables(at)
    assert len(tables[0]) == len(library)
    (result,) = at.session_state["photos_results"].values()  # what the page shows and downloads
    assert [list(face.box) for face in result.analysis.faces] == library


def test_choosing_the_haar_detector_on_the_page_uses_it(promoted, group) -> None:
    at = upload(run_page(), [("group.png", group[0])])
    assert at.sidebar.selectbox(key="photos_detector").value == "yunet"
    assert at.sidebar.toggle(key="photos_align").value is True
    at.sidebar.selectbox(key="photos_detector").set_value("haar").run()
    assert not at.exception
    (result,) = at.session_state["photos_results"].values()
    assert result.analysis.faces and all(face.landmarks is None for face in result.analysis.faces)
    assert at.sidebar.toggle(key="photos_align").disabled  # Haar gives no landmarks to align by
