"""Face detection: YuNet (the default, its weights checked on load) and the Haar cascades behind one
interface; real FER2013 faces are found where they were pasted, landmarks come in the person's order,
the presets are the single definition everyone uses, and alignment turns a tilted face upright."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from photo_samples import detectable_faces, fer_faces, group_photo, is_the_face, textured_background, upscale

from fer_core import detect
from fer_core import yunet as yunet_module
from fer_core.align import eye_angle, face_crop
from fer_core.detect import (
    FRONTAL_CASCADE,
    PHOTO_PRESET,
    PROFILE_CASCADE,
    VIDEO_PRESET,
    YUNET_PATH,
    Box,
    Detection,
    DetectionPreset,
    HaarFaceDetector,
    Landmarks,
    YuNetFaceDetector,
    cascade_path,
    check_detector,
    checked_yunet_path,
    make_detector,
    suppress_overlaps,
)
from fer_core.errors import ModelLoadError
from fer_core.preprocess import to_gray
from fer_core.yunet import YuNetNetwork


@pytest.fixture(scope="module")
def found_faces(fer2013_dir) -> list[np.ndarray]:
    return detectable_faces(fer_faces(fer2013_dir), size=120, count=5)


@pytest.fixture(scope="module")
def yunet() -> YuNetFaceDetector:
    return YuNetFaceDetector(min_face_size=40)


# --- loading


def test_opencv_is_the_pinned_4x_with_cascade_files() -> None:
    assert cv2.__version__.startswith("4."), f"OpenCV {cv2.__version__}: requirements.txt pins 4.x for the cascades"
    for name in (FRONTAL_CASCADE, PROFILE_CASCADE):
        path = cascade_path(name)
        assert path.is_file() and path.stat().st_size > 100_000, path


def test_the_committed_yunet_weights_pass_their_hash_check() -> None:
    assert checked_yunet_path(YUNET_PATH) == YUNET_PATH
    assert (YUNET_PATH.parent / "face_detection_yunet.LICENSE").is_file()


def test_missing_yunet_weights_are_a_clear_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="weights are missing"):
        YuNetFaceDetector(model_path=tmp_path / "face_detection_yunet_2026may.onnx")


@pytest.mark.parametrize("damage", ["truncated", "replaced"])
def test_corrupt_or_replaced_yunet_weights_are_refused_by_their_hash(tmp_path: Path, damage: str) -> None:
    copy = tmp_path / YUNET_PATH.name
    shutil.copyfile(YUNET_PATH, copy)
    data = copy.read_bytes()
    copy.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelLoadError, match="not the YuNet file FER Studio ships"):
        YuNetFaceDetector(model_path=copy)


def test_check_detector_says_why_a_detector_cannot_be_made_without_making_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_detector(VIDEO_PRESET)
    check_detector(PHOTO_PRESET.with_options(detector="haar"))
    made: list[object] = []
    monkeypatch.setattr(yunet_module, "YuNetNetwork", made.append)  # nothing may be built
    check_detector(PHOTO_PRESET)
    assert made == []
    monkeypatch.setattr(detect, "YUNET_PATH", tmp_path / YUNET_PATH.name)
    with pytest.raises(ModelLoadError, match="weights are missing"):
        check_detector(VIDEO_PRESET)
    monkeypatch.delattr(cv2, "data")
    with pytest.raises(ModelLoadError, match="no Haar cascades"):
        check_detector(VIDEO_PRESET.with_options(detector="haar"))


def test_without_onnxruntime_yunet_is_a_clear_model_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(ModelLoadError, match="needs onnxruntime"):
        check_detector(PHOTO_PRESET)
    with pytest.raises(ModelLoadError, match="needs onnxruntime"):
        YuNetFaceDetector()
    check_detector(PHOTO_PRESET.with_options(detector="haar"))  # Haar does not need it


# --- the same faces as OpenCV's YuNet


def opencv_yunet_rows(bgr_image: np.ndarray, score_threshold: float) -> np.ndarray:
    """What cv2.FaceDetectorYN (OpenCV's own YuNet, the reference) finds, best score first."""
    height, width = bgr_image.shape[:2]
    reference = cv2.FaceDetectorYN.create(str(YUNET_PATH), "", (width, height), score_threshold, 0.3, 5000)
    _, rows = reference.detect(bgr_image)
    rows = np.zeros((0, 15), np.float32) if rows is None else rows
    return rows[np.argsort(-rows[:, 14], kind="stable")]


def assert_same_rows(ours: np.ndarray, reference: np.ndarray) -> None:
    """The same faces (boxes, landmarks, scores) up to float rounding, in any order (ties in score)."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    differences = np.abs(ours[:, None, :] - reference[None, :, :]).max(axis=2)  # ours x reference
    closest = differences.argmin(axis=0)
    assert sorted(closest.tolist()) == list(range(len(ours)))  # one of ours for each of OpenCV's
    assert differences[closest, np.arange(len(reference))].max() < 2e-3


@pytest.mark.parametrize("size", [(480, 640), (371, 500), (240, 320), (161, 213)])
def test_yunet_decodes_every_candidate_as_opencv_does(size: tuple[int, int]) -> None:
    # A low threshold keeps dozens of candidate boxes on a textured image: every stride's decoding,
    # the padding of sizes that are not multiples of 32 and the suppression are compared, box by box.
    bgr_image = textured_background(*size, seed=5)
    reference = opencv_yunet_rows(bgr_image, score_threshold=0.005)
    assert len(reference) >= 10
    ours = YuNetNetwork(YUNET_PATH).detect(bgr_image, score_threshold=0.005, nms_threshold=0.3)
    assert_same_rows(ours, reference)


@pytest.mark.fer2013
@pytest.mark.parametrize("width", [640, 900, 455])
def test_yunet_finds_the_faces_opencv_finds_to_a_thousandth_of_a_pixel(found_faces, width: int) -> None:
    bgr_image, boxes = group_photo(found_faces[:3], size=width // 5, width=width)
    reference = opencv_yunet_rows(bgr_image, score_threshold=0.6)
    assert len(reference) >= len(boxes)
    assert_same_rows(YuNetNetwork(YUNET_PATH).detect(bgr_image, score_threshold=0.6, nms_threshold=0.3), reference)


def test_haar_detector_loads_both_cascades() -> None:
    assert HaarFaceDetector(include_profiles=True).detect(np.full((120, 160), 128, np.uint8)) == []


# --- no faces, odd images


@pytest.mark.parametrize("preset", [PHOTO_PRESET, PHOTO_PRESET.with_options(detector="haar")], ids=["yunet", "haar"])
def test_blank_textured_tiny_and_thin_images_have_no_faces(preset: DetectionPreset) -> None:
    detector = make_detector(preset)
    assert detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert detector.detect(textured_background(480, 640, seed=3)) == []
    assert detector.detect(np.full((5, 7), 200, np.uint8)) == []  # gray works too
    for shape in [(1, 3000), (3000, 1), (2, 6000)]:  # a resize would round the short side to 0
        assert detector.detect(np.full((*shape, 3), 200, np.uint8)) == []


# --- real faces


@pytest.mark.fer2013
@pytest.mark.parametrize("preset", [PHOTO_PRESET, PHOTO_PRESET.with_options(detector="haar")], ids=["yunet", "haar"])
def test_pasted_fer2013_faces_are_found_where_they_are(found_faces, preset: DetectionPreset) -> None:
    bgr_image, boxes = group_photo(found_faces)
    found = make_detector(preset).detect(bgr_image)
    assert all(isinstance(detection, Detection) for detection in found)
    matched = [box for box in boxes if any(is_the_face(detection.box, box) for detection in found)]
    assert len(matched) >= len(boxes) - (1 if preset.detector == "haar" else 0), (boxes, found)
    assert [d.box.x for d in found] == sorted(d.box.x for d in found)  # left to right


@pytest.mark.fer2013
def test_yunet_gives_a_score_and_landmarks_in_the_persons_order(found_faces, yunet) -> None:
    bgr_image, _boxes = group_photo(found_faces[:3], size=160, width=900)
    for detection in yunet.detect(bgr_image):
        assert detection.score is not None and 0.5 < detection.score <= 1.0
        marks = detection.landmarks
        assert marks is not None
        box = detection.box
        for x, y in marks:  # every point inside (or at the edge of) its box
            assert box.x - 5 <= x <= box.x + box.width + 5 and box.y - 5 <= y <= box.y + box.height + 5
        # The person's right eye is on the image's left in a frontal face; eyes above the nose, above the mouth.
        assert marks.right_eye[0] < marks.nose[0] < marks.left_eye[0]
        assert marks.mouth_right[0] < marks.mouth_left[0]
        assert (
            max(marks.right_eye[1], marks.left_eye[1]) < marks.nose[1] < min(marks.mouth_right[1], marks.mouth_left[1])
        )


@pytest.mark.fer2013
def test_the_scan_is_downscaled_from_the_smallest_face_and_boxes_come_back_in_image_pixels(found_faces) -> None:
    detector = make_detector(VIDEO_PRESET)  # faces from 48 px, scanned where they span 24: half size
    assert isinstance(detector, YuNetFaceDetector) and detector.scan_scale(480, 640) == pytest.approx(0.5)
    assert make_detector(PHOTO_PRESET).scan_scale(480, 640) == 1.0  # photos: full size for 40 px faces
    assert make_detector(PHOTO_PRESET.with_options(min_face_size=80)).scan_scale(480, 640) == 0.5  # or faster
    assert YuNetFaceDetector(min_face_size=40, max_side=320).scan_scale(480, 640) == 0.5
    bgr_image, boxes = group_photo(found_faces[:2], size=200, width=640, height=480)
    found = detector.detect(bgr_image)
    for box in boxes:
        assert any(is_the_face(detection.box, box) for detection in found), (box, found)


@pytest.mark.fer2013
@pytest.mark.parametrize("preset", [PHOTO_PRESET, PHOTO_PRESET.with_options(detector="haar")], ids=["yunet", "haar"])
def test_minimum_face_size_skips_smaller_faces(found_faces, preset: DetectionPreset) -> None:
    bgr_image, _boxes = group_photo(found_faces[:3], size=100, width=600)
    assert make_detector(preset.with_options(min_face_size=40)).detect(bgr_image)
    assert make_detector(preset.with_options(min_face_size=200)).detect(bgr_image) == []


@pytest.mark.fer2013
def test_a_detector_can_be_shared_between_threads(found_faces, yunet) -> None:
    bgr_image, _ = group_photo(found_faces)
    expected = yunet.detect(bgr_image)
    results: list[list[Detection]] = []
    threads = [threading.Thread(target=lambda: results.append(yunet.detect(bgr_image))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [[d.box for d in found] for found in results] == [[d.box for d in expected]] * 4


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"min_face_size": 4}, "min_face_size"),
        ({"max_side": 32}, "max_side"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"scan_face": 4}, "scan_face"),
    ],
)
def test_nonsense_detector_settings_are_refused(options: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        YuNetFaceDetector(**options)  # type: ignore[arg-type]
    if "min_face_size" in options or "max_side" in options:
        with pytest.raises(ValueError, match=match):
            HaarFaceDetector(**options)  # type: ignore[arg-type]


# --- presets: the single definition


def test_presets_are_the_single_definition_of_detection_settings() -> None:
    """The CLI, the library and the pages start from PHOTO_PRESET and VIDEO_PRESET: nothing else in the
    code states a detector's settings (a second definition would drift apart, as it once did)."""
    from fer_core import cli, inference

    assert inference.load_predictor.__kwdefaults__["preset"] is PHOTO_PRESET
    parser = cli.build_parser()
    actions = {action.dest: action for action in parser._subparsers._group_actions[0].choices["predict"]._actions}
    assert actions["min_face"].default == PHOTO_PRESET.min_face_size
    assert actions["detector"].default == PHOTO_PRESET.detector
    video = {action.dest: action for action in parser._subparsers._group_actions[0].choices["video"]._actions}
    assert video["min_face"].default == VIDEO_PRESET.min_face_size
    root = Path(detect.__file__).resolve().parent.parent
    constructors = [
        path
        for folder in ("fer_core", "app")
        for path in (root / folder).rglob("*.py")
        if path.name != "detect.py"
        and ("YuNetFaceDetector(" in path.read_text() or "HaarFaceDetector(" in path.read_text())
    ]
    assert constructors == [], f"detectors built outside fer_core.detect.make_detector: {constructors}"


def test_a_preset_takes_the_users_choices_and_refuses_nonsense() -> None:
    haar = PHOTO_PRESET.with_options(detector="haar", min_face_size=80, align=False)
    assert (haar.detector, haar.min_face_size, haar.align, haar.max_side) == ("haar", 80, False, PHOTO_PRESET.max_side)
    assert PHOTO_PRESET.with_options() == PHOTO_PRESET
    with pytest.raises(ValueError, match="detector must be one of"):
        PHOTO_PRESET.with_options(detector="mtcnn")
    with pytest.raises(ValueError, match="smallest face"):
        PHOTO_PRESET.with_options(min_face_size=2)
    assert isinstance(make_detector(haar), HaarFaceDetector)


# --- alignment


def test_alignment_turns_the_square_about_its_centre_until_the_eyes_are_level() -> None:
    rng = np.random.default_rng(0)
    canvas = cv2.GaussianBlur(rng.integers(0, 256, (300, 300)).astype(np.uint8), (0, 0), 3)
    canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX)
    box = Box(100, 100, 100, 100)  # framing 1.0: the square is the box, centred on (150, 150)
    level = Landmarks((130, 135), (170, 135), (150, 155), (135, 175), (165, 175))
    plain = face_crop(canvas, Detection(box, framing=1.0, landmarks=level), align=False)
    aligned_level = face_crop(canvas, Detection(box, framing=1.0, landmarks=level), align=True)
    assert np.abs(aligned_level.astype(int) - plain).mean() < 1.0  # eyes already level: the plain crop

    turn = cv2.getRotationMatrix2D((150, 150), -20, 1.0)  # the picture turned 20 degrees clockwise
    turned = cv2.warpAffine(canvas, turn, (300, 300), borderMode=cv2.BORDER_REPLICATE)
    moved = Landmarks(*(tuple(turn @ np.array([x, y, 1.0])) for x, y in level))
    assert eye_angle(moved) == pytest.approx(20.0)
    detection = Detection(box, framing=1.0, landmarks=moved)
    aligned, unaligned = face_crop(turned, detection, align=True), face_crop(turned, detection, align=False)
    assert np.abs(aligned.astype(int) - plain).mean() < 3.0
    assert np.abs(unaligned.astype(int) - plain).mean() > 4 * np.abs(aligned.astype(int) - plain).mean()


def test_eye_angle_is_the_tilt_of_the_eye_line() -> None:
    level = Landmarks((10, 20), (30, 20), (20, 30), (12, 40), (28, 40))
    assert eye_angle(level) == pytest.approx(0.0)
    tilted = level._replace(left_eye=(30, 40))  # the image's right-hand eye lower: turned clockwise
    assert eye_angle(tilted) == pytest.approx(45.0)


def test_without_landmarks_the_crop_is_the_framed_square_around_the_box() -> None:
    face = np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)
    canvas = to_gray(textured_background(300, 300))
    canvas[100:196, 100:196] = face
    haar_like = Detection(Box(100, 100, 96, 96), framing=1.0)
    np.testing.assert_array_equal(
        face_crop(canvas, haar_like), cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA)
    )


@pytest.mark.fer2013
def test_a_tilted_face_comes_out_upright(fer2013_dir, yunet) -> None:
    """Faces pasted at 20 degrees: aligned, they come out closer to the original upright face than the
    unaligned crop, and less tilted (their eye line measured again by YuNet on the crop)."""
    faces = detectable_faces(fer_faces(fer2013_dir), size=200, count=8)
    improvements, tilt_before, tilt_after = [], [], []
    for face in faces:
        canvas = np.full((480, 640), 128, np.uint8)
        rotation = cv2.getRotationMatrix2D((100, 100), 20, 1.0)
        canvas[140:340, 220:420] = cv2.warpAffine(upscale(face, 200), rotation, (200, 200), borderValue=128)
        detections = [d for d in yunet.detect(canvas) if is_the_face(d.box, Box(220, 140, 200, 200))]
        if not detections or detections[0].landmarks is None:
            continue
        detection = detections[0]
        aligned, plain = face_crop(canvas, detection, align=True), face_crop(canvas, detection, align=False)
        similarity = [float(np.corrcoef(crop.ravel(), face.ravel())[0, 1]) for crop in (aligned, plain)]
        improvements.append(similarity[0] - similarity[1])
        for crop, tilts in ((plain, tilt_before), (aligned, tilt_after)):
            again = yunet.detect(cv2.resize(crop, (240, 240), interpolation=cv2.INTER_CUBIC))
            if again and again[0].landmarks is not None:
                tilts.append(abs(eye_angle(again[0].landmarks)))
    assert len(improvements) >= 5
    assert np.median(improvements) > 0.02, improvements
    assert np.median(tilt_after) < np.median(tilt_before), (tilt_before, tilt_after)


def test_overlapping_detections_keep_the_larger() -> None:
    big, inside, apart = (
        Detection(Box(10, 10, 100, 100)),
        Detection(Box(30, 30, 50, 50)),
        Detection(Box(300, 10, 80, 80)),
    )
    assert sorted(d.box for d in suppress_overlaps([inside, big, apart])) == sorted([big.box, apart.box])


def test_iou() -> None:
    assert Box(0, 0, 10, 10).iou(Box(0, 0, 10, 10)) == 1.0
    assert Box(0, 0, 10, 10).iou(Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert Box(0, 0, 10, 10).iou(Box(20, 20, 5, 5)) == 0.0
