"""The live frame callback, called directly with synthetic video frames of real FER2013 faces; and the
pieces the Live page builds on it (settings, CSV, charts, ICE servers)."""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from browser_support import FRAME_HEIGHT, FRAME_WIDTH, detectable_faces, frame_with_faces, textured_canvas

from app.live import (
    UNCERTAIN,
    LiveProcessor,
    LiveResult,
    LiveSettings,
    detection_side,
    ice_servers,
    label_for,
    main_face,
    records_to_csv,
    rtc_configuration,
    timeline_figure,
)
from fer_core.detect import Box
from fer_core.labels import EMOTIONS, NUM_CLASSES

FACE_BOX = Box(235, 155, 170, 170)
LEFT_BOX, RIGHT_BOX = Box(60, 150, 160, 160), Box(410, 140, 170, 170)


class FixedClassifier:
    """Always the same probabilities: lets the callback run without TensorFlow."""

    def __init__(self, emotion: str = "happy", confidence: float = 0.9) -> None:
        rest = (1.0 - confidence) / (NUM_CLASSES - 1)
        self.scores = np.full(NUM_CLASSES, rest, np.float32)
        self.scores[EMOTIONS.index(emotion)] = confidence
        self.calls = 0

    def classify_batch(self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False) -> npt.NDArray[np.float32]:
        self.calls += 1
        return np.tile(self.scores, (len(gray_faces), 1))


class BrokenClassifier:
    def classify_batch(self, gray_faces: npt.NDArray[np.uint8], *, tta: bool = False) -> npt.NDArray[np.float32]:
        raise RuntimeError("the model exploded")


def video_frame(bgr_frame: npt.NDArray[np.uint8], pts: int = 0) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(bgr_frame, format="bgr24")
    frame.pts = pts
    return frame


def changed_pixels(before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8], box: Box) -> int:
    x, y, width, height = box
    region = (slice(max(0, y - 30), y + height + 15), slice(max(0, x - 5), x + width + 5))
    difference = np.abs(before[region].astype(int) - after[region].astype(int)).max(axis=2)
    return int((difference > 40).sum())


@pytest.fixture(scope="module")
def faces(fer2013_dir: Path) -> list[npt.NDArray[np.uint8]]:
    return detectable_faces(fer2013_dir, 2)


@pytest.fixture(scope="module")
def real_classifier() -> object:
    from fer_core.inference import load_classifier

    return load_classifier()  # the shipped default: the autouse fixture hides any promoted model


# --- with the real model and real faces


@pytest.mark.slow
@pytest.mark.fer2013
def test_callback_returns_an_annotated_frame_and_records_the_face(
    faces: list[npt.NDArray[np.uint8]], real_classifier: object
) -> None:
    processor = LiveProcessor(real_classifier, LiveSettings(mirror=False))  # type: ignore[arg-type]
    bgr_frame = frame_with_faces([faces[0]], [FACE_BOX])
    returned = processor.video_frame_callback(video_frame(bgr_frame.copy(), pts=42))

    assert isinstance(returned, av.VideoFrame)
    assert (returned.width, returned.height) == (FRAME_WIDTH, FRAME_HEIGHT)
    annotated = np.asarray(returned.to_ndarray(format="bgr24"), np.uint8)
    assert changed_pixels(bgr_frame, annotated, FACE_BOX) > 500  # box, label and bar drawn around the face
    snapshot = processor.snapshot()
    assert snapshot.error is None
    assert snapshot.stats is not None and snapshot.stats.frames == 1 and snapshot.stats.faces == 1
    [face] = snapshot.faces
    assert face.box.iou(FACE_BOX) > 0.4
    assert face.label in (*EMOTIONS, UNCERTAIN)
    assert face.scores.shape == (NUM_CLASSES,) and face.scores.sum() == pytest.approx(1.0, abs=1e-4)
    assert face.processing_ms > 0
    assert len(processor.history()) == 1


@pytest.mark.slow
@pytest.mark.fer2013
def test_two_faces_get_two_tracks_that_keep_their_ids(
    faces: list[npt.NDArray[np.uint8]], real_classifier: object
) -> None:
    processor = LiveProcessor(real_classifier, LiveSettings(mirror=False, redetect_every=3))  # type: ignore[arg-type]
    for step in range(8):
        shift = Box(LEFT_BOX.x + 4 * step, *LEFT_BOX[1:]), Box(RIGHT_BOX.x - 4 * step, *RIGHT_BOX[1:])
        processor.video_frame_callback(video_frame(frame_with_faces(faces, shift, seed=step % 2), pts=step))
    snapshot = processor.snapshot()
    assert snapshot.stats is not None and snapshot.stats.frames == 8
    assert sorted(face.track_id for face in snapshot.faces) == [1, 2]
    assert {record.track_id for record in processor.history()} == {1, 2}
    assert len(processor.timeline()) >= 14  # each face seen on (nearly) every frame, also between detections


@pytest.mark.slow
@pytest.mark.fer2013
def test_mirror_view_flips_the_frame_and_the_boxes(faces: list[npt.NDArray[np.uint8]], real_classifier: object) -> None:
    processor = LiveProcessor(real_classifier, LiveSettings(mirror=True))  # type: ignore[arg-type]
    processor.video_frame_callback(video_frame(frame_with_faces([faces[0]], [LEFT_BOX])))
    [face] = processor.snapshot().faces
    mirrored = Box(FRAME_WIDTH - LEFT_BOX.x - LEFT_BOX.width, *LEFT_BOX[1:])
    assert face.box.iou(mirrored) > 0.4


# --- without TensorFlow


def test_broken_model_returns_the_frame_unannotated_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    processor = _processor(BrokenClassifier())
    bgr_frame = _frame_with_a_square_face()
    incoming = video_frame(bgr_frame.copy())
    with caplog.at_level(logging.ERROR, logger="app.live"):
        returned = processor.video_frame_callback(incoming)
        processor.video_frame_callback(incoming)
    assert returned is incoming
    np.testing.assert_array_equal(returned.to_ndarray(format="bgr24"), bgr_frame)
    snapshot = processor.snapshot()
    assert snapshot.error is not None and "the model exploded" in snapshot.error
    assert processor.history() == []
    assert sum("live frame processing failed" in record.message for record in caplog.records) == 1


def test_a_frame_that_cannot_be_converted_is_returned_as_it_came() -> None:
    class NotAFrame:
        def to_ndarray(self, format: str) -> None:
            raise ValueError("bad frame")

    frame = NotAFrame()
    assert _processor(FixedClassifier()).video_frame_callback(frame) is frame  # type: ignore[arg-type]


def test_frames_without_faces_still_report_rate_and_time() -> None:
    processor = _processor(FixedClassifier())
    for pts in range(3):
        processor.video_frame_callback(video_frame(textured_canvas(), pts))
    snapshot = processor.snapshot()
    assert snapshot.stats is not None
    assert snapshot.stats.frames == 3 and snapshot.stats.faces == 0 and snapshot.stats.processing_ms > 0
    assert snapshot.faces == [] and processor.history() == []


def test_fake_faces_found_by_the_detector_are_recorded_with_the_threshold_label() -> None:
    processor = _processor(FixedClassifier("sad", confidence=0.3), threshold=0.5, mirror=False)
    annotated = processor.process(_frame_with_a_square_face())
    [face] = processor.snapshot().faces
    assert face.label == UNCERTAIN
    assert annotated.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)
    processor.configure(LiveSettings(threshold=0.2, mirror=False))
    processor.process(_frame_with_a_square_face())
    assert processor.snapshot().faces[0].label == "sad"


def test_two_sessions_share_one_model_from_two_threads() -> None:
    classifier = FixedClassifier()
    processors = [_processor(classifier), _processor(classifier)]
    frame = _frame_with_a_square_face()
    errors: list[BaseException] = []

    def stream(processor: LiveProcessor) -> None:
        try:
            for pts in range(6):
                processor.video_frame_callback(video_frame(frame.copy(), pts))
        except BaseException as error:  # pragma: no cover - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=stream, args=(processor,)) for processor in processors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for processor in processors:
        stats = processor.snapshot().stats
        assert stats is not None and stats.frames == 6
        assert processor.snapshot().error is None


def test_changing_the_model_restarts_the_tracks() -> None:
    processor = _processor(FixedClassifier("happy"), mirror=False)
    processor.process(_frame_with_a_square_face())
    processor.set_classifier(FixedClassifier("angry"))
    processor.process(_frame_with_a_square_face())
    [face] = processor.snapshot().faces
    assert face.track_id == 2 and face.label == "angry"


def test_clear_forgets_the_session() -> None:
    processor = _processor(FixedClassifier(), mirror=False)
    processor.process(_frame_with_a_square_face())
    processor.clear()
    assert processor.snapshot() == (None, [], None) and processor.history() == []


# --- settings and helpers


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_face_size": 4}, "min_face_size"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"threshold": 1.5}, "threshold"),
        ({"redetect_every": 0}, "redetect_every"),
    ],
)
def test_bad_settings_are_refused(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LiveSettings(**changes)  # type: ignore[arg-type]


def test_label_below_the_threshold_is_uncertain() -> None:
    assert label_for("happy", 0.39, 0.4) == UNCERTAIN
    assert label_for("happy", 0.4, 0.4) == "happy"


def test_bigger_minimum_faces_make_detection_scan_a_smaller_image() -> None:
    assert detection_side((480, 640), 20) == 640
    assert detection_side((480, 640), 56) == 320
    assert detection_side((480, 640), 200) < detection_side((480, 640), 100)


def test_main_face_is_the_largest() -> None:
    small, large = _result(1, Box(0, 0, 50, 50)), _result(2, Box(100, 0, 90, 90))
    assert main_face([small, large]) is large
    assert main_face([]) is None


def test_session_csv_has_a_row_per_record_and_a_column_per_emotion() -> None:
    records = [_result(1, FACE_BOX, timestamp=1000.0), _result(2, LEFT_BOX, timestamp=1000.5, label=UNCERTAIN)]
    rows = list(csv.DictReader(io.StringIO(records_to_csv(records).decode())))
    assert len(rows) == 2
    assert rows[0]["timestamp"].startswith("1970-01-01T00:16:40.000")
    assert rows[1]["seconds"] == "0.500" and rows[1]["track"] == "2" and rows[1]["label"] == UNCERTAIN
    assert sum(float(rows[0][emotion]) for emotion in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert records_to_csv([]).decode().startswith("timestamp,seconds,track,label")


def test_charts_take_plain_records() -> None:
    now = time.time()
    records = [_result(1, FACE_BOX, timestamp=now - 10 + i * 0.1) for i in range(100)]
    timeline = timeline_figure(records, now)
    assert len(timeline.data) == 1 and len(timeline.data[0].x) < 100  # thinned to a few points a second
    assert all(-60 <= x <= 0 for x in timeline.data[0].x)
    assert {marker for trace in timeline.data for marker in trace.y} == {"happy"}


# --- ICE servers for deployments


def test_no_ice_servers_by_default() -> None:
    assert ice_servers(environ={}, secrets={}) == []
    assert rtc_configuration(environ={}, secrets=None) == {"iceServers": []}


def test_ice_servers_from_the_environment() -> None:
    value = (
        '[{"urls": ["stun:stun.example.org:3478"]}, {"urls": "turn:t.example.org", "username": "u", "credential": "p"}]'
    )
    servers = ice_servers(environ={"FER_ICE_SERVERS": value}, secrets={"ice_servers": [{"urls": "stun:other:1"}]})
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    assert servers[1]["username"] == "u"


def test_ice_servers_from_secrets() -> None:
    secrets = {"ice_servers": [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]}
    assert ice_servers(environ={}, secrets=secrets) == secrets["ice_servers"]


def test_missing_secrets_file_means_no_ice_servers() -> None:
    class NoSecretsFile(dict):  # st.secrets raises like this when there is no secrets.toml
        def get(self, key: str, default: object = None) -> object:
            raise FileNotFoundError("no secrets.toml")

    assert ice_servers(environ={}, secrets=NoSecretsFile()) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"urls": "stun:x"}', "must be a list"),
        ('[{"url": "stun:x"}]', 'must be an object with "urls"'),
        ('[{"urls": []}]', "must be a URL or a list"),
        ('[{"urls": "http://x"}]', "not a stun:, turn: or turns: URL"),
    ],
)
def test_bad_ice_server_settings_name_the_problem(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ice_servers(environ={"FER_ICE_SERVERS": value})


# --- helpers


def _result(track_id: int, box: Box, *, timestamp: float = 0.0, label: str = "happy") -> LiveResult:
    scores = FixedClassifier(label if label in EMOTIONS else "neutral").scores
    return LiveResult(timestamp, track_id, box, label, scores, processing_ms=5.0, fps=15.0)


class BrightSquareDetector:
    """Finds the white square in whatever image it is shown: the whole frame or a search window."""

    def __init__(self, **settings: int) -> None:
        self.settings = settings

    def detect(self, gray_image: npt.NDArray[np.uint8]) -> list[Box]:
        ys, xs = np.nonzero(gray_image > 250)
        if len(xs) == 0:
            return []
        return [Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))]


def _processor(classifier: object, **settings: object) -> LiveProcessor:
    return LiveProcessor(
        classifier,  # type: ignore[arg-type]
        LiveSettings(**settings),  # type: ignore[arg-type]
        detector_factory=BrightSquareDetector,
    )


def _frame_with_a_square_face(box: Box = FACE_BOX) -> npt.NDArray[np.uint8]:
    frame = np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), 100, np.uint8)
    frame[box.y : box.y + box.height, box.x : box.x + box.width] = 255
    return frame


def test_the_frame_callback_module_loads_neither_streamlit_nor_tensorflow() -> None:
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    code = (
        "import sys, app.live, fer_core.tracking;"
        "bad = [m for m in ('streamlit', 'tensorflow', 'plotly', 'streamlit_webrtc') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
