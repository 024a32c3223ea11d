"""The Live page's adapter (app/live_session.py): streamlit-webrtc's frame callbacks called directly, with a fake
detector and classifier, and once with the real model on real FER2013 faces."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from browser_support import frame_with_faces
from conftest import PROJECT_ROOT
from fakes import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    SQUARE,
    BrightSquareDetector,
    FixedClassifier,
    square_frame,
)

from app.charts.timelines import live_timeline_figure
from app.live_session import LiveSession, main_face
from fer_core.detect import Box
from fer_core.labels import EMOTIONS, NUM_CLASSES, UNCERTAIN
from fer_core.video import VideoSettings


def session(classifier: object = None, **settings: object) -> LiveSession:
    return LiveSession(
        classifier or FixedClassifier(),  # type: ignore[arg-type]
        VideoSettings(**settings),  # type: ignore[arg-type]
        detector_factory=BrightSquareDetector,
    )


def video_frame(bgr_frame: npt.NDArray[np.uint8], pts: int = 0) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(bgr_frame, format="bgr24")
    frame.pts = pts
    return frame


def changed_pixels(before: npt.NDArray[np.uint8], after: npt.NDArray[np.uint8], box: Box) -> int:
    x, y, width, height = box
    region = (slice(max(0, y - 30), y + height + 15), slice(max(0, x - 5), x + width + 5))
    difference = np.abs(before[region].astype(int) - after[region].astype(int)).max(axis=2)
    return int((difference > 40).sum())


def test_the_newest_queued_frame_is_analysed_and_the_others_counted_as_dropped() -> None:
    live = session()
    frames = [video_frame(square_frame(), pts) for pts in range(3)]
    returned = asyncio.run(live.queued_frames_callback(frames))
    assert len(returned) == 1 and isinstance(returned[0], av.VideoFrame)
    stats = live.snapshot().stats
    assert stats is not None and (stats.frames, stats.dropped, stats.faces) == (1, 2, 1)
    asyncio.run(live.queued_frames_callback([video_frame(square_frame(), 3)]))
    stats = live.snapshot().stats
    assert stats is not None and (stats.frames, stats.dropped) == (2, 2)
    assert asyncio.run(live.queued_frames_callback([])) == []


def test_frames_go_back_as_yuv420p_the_encoders_take_as_they_are() -> None:
    live = session(mirror=False)
    camera_frame = video_frame(square_frame()).reformat(format="yuv420p")  # as a browser's camera sends them
    annotated: list[npt.NDArray[np.uint8]] = []
    process = live.process

    def keep_annotated(bgr_frame: npt.NDArray[np.uint8], **options: int) -> npt.NDArray[np.uint8]:
        # the frame path's own annotation (its status line shows this frame's milliseconds, which differ
        # from one call to the next): what the encoder would have been given
        annotated.append(process(bgr_frame, **options).copy())
        return annotated[-1]

    live.process = keep_annotated  # type: ignore[method-assign]
    returned = live.video_frame_callback(camera_frame)
    assert returned.format.name == "yuv420p" and (returned.width, returned.height) == (FRAME_WIDTH, FRAME_HEIGHT)
    assert len(annotated) == 1 and not np.array_equal(annotated[0], camera_frame.to_ndarray(format="bgr24"))
    # exactly the picture the VP8 encoder made from a BGR frame before (its own reformat per frame)
    encoders_own = av.VideoFrame.from_ndarray(annotated[0], format="bgr24").reformat(format="yuv420p")
    assert np.array_equal(returned.to_ndarray(), encoders_own.to_ndarray())
    busy = live.busy_frame(camera_frame)
    assert busy.format.name == "yuv420p" and live.snapshot().error is None


def test_an_annotated_frame_comes_back_with_the_speed_drawn_and_the_face_recorded() -> None:
    live = session(mirror=False)
    bgr_frame = square_frame()
    returned = live.video_frame_callback(video_frame(bgr_frame.copy()))
    annotated = returned.to_ndarray(format="bgr24")
    assert (returned.width, returned.height) == (FRAME_WIDTH, FRAME_HEIGHT)
    assert changed_pixels(bgr_frame, annotated, SQUARE) > 500  # box, caption and bar around the face
    strip = annotated[2:16, 2:150].mean(axis=2)  # the dark strip with the speed figures (white text on it)
    assert np.median(strip) < 0.6 * bgr_frame[2:16, 2:150].mean()
    snapshot = live.snapshot()
    assert snapshot.error is None and snapshot.stats is not None and snapshot.stats.processing_ms > 0
    [face] = snapshot.faces
    assert face.face == 1 and face.box.iou(SQUARE) > 0.9 and face.label == "happy"
    assert len(live.history()) == 1 and live.result_count() == 1


def test_the_overlay_line_is_made_of_the_panels_figures() -> None:
    live = session()
    for pts in range(5):
        live.video_frame_callback(video_frame(square_frame(), pts), dropped=1)
    stats = live.snapshot().stats
    assert stats is not None and stats.dropped == 5 and stats.analysed_fps > 0
    assert stats.status_line() == (
        f"{stats.analysed_text} fps analysed  {stats.timing_text} ms/frame  {stats.dropped_text} dropped"
    )
    assert stats.camera_fps > stats.analysed_fps  # the dropped frames arrived too


def test_a_detector_that_cannot_be_made_leaves_the_session_as_it_was_and_is_tried_again() -> None:
    made: list[object] = []

    def flaky(preset: object) -> BrightSquareDetector:
        if made and len(made) < 3:
            made.append(None)
            raise OSError("the detector file went away")
        made.append(preset)
        return BrightSquareDetector()

    live = LiveSession(FixedClassifier(), VideoSettings(mirror=False), detector_factory=flaky)  # type: ignore[arg-type]
    live.process(square_frame())
    live.configure(VideoSettings(mirror=False, preset=VideoSettings().preset.with_options(min_face_size=64)))
    for _ in range(2):  # the new detector fails: frames come back unannotated, the old settings still work
        returned = live.video_frame_callback(video_frame(square_frame()))
        assert live.snapshot().error is not None and "went away" in live.snapshot().error
        assert isinstance(returned, av.VideoFrame)
    live.process(square_frame())  # the third try succeeds: the new preset is in use
    assert live.snapshot().error is None and len(made) == 4
    assert getattr(made[-1], "min_face_size", None) == 64


def test_face_tracks_and_speed_start_afresh_when_the_stream_ends() -> None:
    live = session(mirror=False)
    for _ in range(3):
        live.video_frame_callback(video_frame(square_frame()), dropped=2)
    assert live.snapshot().faces[0].face == 1
    live.stream_ended()  # streamlit-webrtc's on_video_ended: Stop, then Start
    live.process(square_frame())
    stats = live.snapshot().stats
    assert live.snapshot().faces[0].face == 2
    assert stats is not None and (stats.frames, stats.dropped) == (4, 6)  # session totals go on
    assert stats.analysed_fps == 0.0  # one frame since the restart: no rate yet


def test_the_streams_end_frees_its_slot_for_another_visitor() -> None:
    from app.limits import StreamSlots

    slots = StreamSlots(1)
    live = LiveSession(FixedClassifier(), VideoSettings(), detector_factory=BrightSquareDetector, slots=slots)  # type: ignore[arg-type]
    asyncio.run(live.queued_frames_callback([video_frame(square_frame())]))
    assert slots.holds(live)
    live.stream_ended()
    assert not slots.holds(live)


def test_a_pause_in_frames_keeps_the_faces(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.live_session

    clock = [100.0]
    monkeypatch.setattr(app.live_session.time, "perf_counter", lambda: clock[0])
    live = session(mirror=False)
    live.process(square_frame())
    clock[0] += 30.0  # a slow network or a hidden tab, not a new stream
    live.process(square_frame())
    assert live.snapshot().faces[0].face == 1


def test_frames_without_faces_still_report_speed() -> None:
    live = session()
    for pts in range(3):
        live.video_frame_callback(video_frame(np.full((FRAME_HEIGHT, FRAME_WIDTH, 3), 90, np.uint8), pts))
    stats = live.snapshot().stats
    assert stats is not None and stats.frames == 3 and stats.faces == 0 and stats.processing_ms > 0
    assert live.snapshot().faces == [] and live.history() == []


def test_new_settings_and_a_new_model_apply_from_the_next_frame() -> None:
    live = session(FixedClassifier("sad", confidence=0.3), threshold=0.5, mirror=False)
    live.process(square_frame())
    assert live.snapshot().faces[0].label == UNCERTAIN
    live.configure(VideoSettings(threshold=0.2, mirror=False))
    live.process(square_frame())
    assert live.snapshot().faces[0].label == "sad"
    live.configure(VideoSettings(threshold=0.2, mirror=False), FixedClassifier("angry"))  # type: ignore[arg-type]
    live.process(square_frame())
    [face] = live.snapshot().faces
    assert face.face == 2 and face.label == "angry"  # a new model starts new tracks


def test_two_sessions_share_one_model_from_two_threads() -> None:
    classifier = FixedClassifier()
    sessions = [session(classifier), session(classifier)]
    errors: list[BaseException] = []

    def stream(live: LiveSession) -> None:
        try:
            for pts in range(6):
                live.video_frame_callback(video_frame(square_frame(), pts))
        except BaseException as error:  # pragma: no cover - the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=stream, args=(live,)) for live in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    for live in sessions:
        stats = live.snapshot().stats
        assert stats is not None and stats.frames == 6 and live.snapshot().error is None


def test_clear_forgets_the_session() -> None:
    live = session(mirror=False)
    live.process(square_frame())
    live.clear()
    assert live.snapshot() == (None, [], None) and live.history() == []


def test_session_csv_and_timeline_take_the_records() -> None:
    live = session(mirror=False)
    for _ in range(4):
        live.process(square_frame())
    rows = list(csv.DictReader(io.StringIO(live.session_csv().decode())))
    assert len(rows) == 4 and rows[0]["face"] == "1" and rows[0]["label"] == "happy"
    assert sum(float(rows[0][f"p_{emotion}"]) for emotion in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    records = live.timeline()
    assert len(records) == 4
    figure = live_timeline_figure(records, live.now_s())
    assert len(figure.data) == 1 and all(-60 <= x <= 0 for x in figure.data[0].x)


def test_main_face_is_the_largest() -> None:
    from fer_core.face_table import FaceRecord

    scores = FixedClassifier().scores
    small = FaceRecord(0.0, 0, 1, Box(0, 0, 50, 50), "happy", "happy", 0.9, scores)
    large = small._replace(face=2, box=Box(100, 0, 90, 90))
    assert main_face([small, large]) is large
    assert main_face([]) is None


# --- with the real model and real faces


@pytest.mark.slow
@pytest.mark.fer2013
def test_real_faces_are_found_classified_and_tracked(fer2013_dir: Path) -> None:
    from browser_support import detectable_faces

    from fer_core.inference import load_classifier

    faces = detectable_faces(fer2013_dir, 2)
    live = LiveSession(load_classifier(), VideoSettings(mirror=False))
    left, right = Box(60, 150, 170, 170), Box(410, 140, 170, 170)
    for step in range(8):
        shifted = Box(left.x + 4 * step, *left[1:]), Box(right.x - 4 * step, *right[1:])
        live.video_frame_callback(video_frame(frame_with_faces(faces, shifted, seed=step % 2), pts=step))
    snapshot = live.snapshot()
    assert snapshot.stats is not None and snapshot.stats.frames == 8 and snapshot.error is None
    assert sorted(face.face for face in snapshot.faces) == [1, 2]
    assert {record.face for record in live.history()} == {1, 2}
    assert len(live.timeline()) >= 14  # each face seen on (nearly) every frame
    for face in snapshot.faces:
        assert face.scores.shape == (NUM_CLASSES,) and face.scores.sum() == pytest.approx(1.0, abs=1e-4)


def test_the_frame_callback_module_loads_neither_streamlit_nor_tensorflow() -> None:
    code = (
        "import sys, app.live_session;"
        "bad = [m for m in ('streamlit', 'tensorflow', 'keras', 'plotly', 'streamlit_webrtc') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
