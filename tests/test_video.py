"""fer_core.video: the analyzer on synthetic frames, video files in and out (a generated clip, a corrupt
one, one with no video stream), records, summaries and the ``python -m fer_core video`` command."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from fakes import SQUARE, BrightSquareDetector, FixedClassifier, square_frame

from fer_core import cli
from fer_core.detect import Box
from fer_core.errors import InvalidVideoError
from fer_core.labels import EMOTIONS, UNCERTAIN
from fer_core.video import (
    CSV_COLUMNS,
    AnnotatedVideoWriter,
    FaceRecord,
    VideoAnalyzer,
    VideoSettings,
    analyze_video,
    probe_video,
    read_frames,
    records_to_csv,
    records_to_json,
    summarize,
)


def analyzer(classifier: object = None, **settings: object) -> VideoAnalyzer:
    return VideoAnalyzer(
        classifier or FixedClassifier(),  # type: ignore[arg-type]
        VideoSettings(**settings),  # type: ignore[arg-type]
        detector_factory=BrightSquareDetector,
    )


def write_clip(
    path: Path, frames: int = 12, fps: float = 12.0, moving: bool = True, size: tuple[int, int] = (640, 480)
) -> Path:
    with AnnotatedVideoWriter(path, *size, fps) as writer:
        for index in range(frames):
            box = Box(SQUARE.x + (4 * index if moving else 0), SQUARE.y, SQUARE.width, SQUARE.height)
            writer.write(square_frame(box)[: size[1], : size[0]])
    return path


# --- the analyzer


def test_a_face_is_tracked_smoothed_and_recorded_frame_after_frame() -> None:
    video = analyzer(smoothing=0.5)
    results = [video.analyze(square_frame(Box(SQUARE.x + 3 * i, *SQUARE[1:])), time_s=i / 10) for i in range(7)]
    assert [result.frame for result in results] == list(range(7))
    assert all(len(result.records) == 1 for result in results)
    assert {record.face for result in results for record in result.records} == {1}  # one track throughout
    last = results[-1].records[0]
    assert last.time_s == pytest.approx(0.6) and last.frame == 6
    assert last.box.iou(Box(SQUARE.x + 18, *SQUARE[1:])) > 0.9
    assert last.emotion == last.label == "happy" and last.confidence == pytest.approx(0.9, abs=1e-4)
    assert results[-1].processing_ms > 0


def test_every_frame_is_scanned_in_full() -> None:
    detectors: list[BrightSquareDetector] = []

    def factory(preset: object) -> BrightSquareDetector:
        detectors.append(BrightSquareDetector())
        return detectors[-1]

    video = VideoAnalyzer(FixedClassifier(), VideoSettings(), detector_factory=factory)  # type: ignore[arg-type]
    for index in range(4):
        video.analyze(square_frame(), index / 10)
    (detector,) = detectors
    assert detector.shapes == [(480, 640, 3)] * 4


def test_below_the_threshold_a_face_is_uncertain_with_its_best_guess() -> None:
    [record] = analyzer(FixedClassifier("sad", 0.3), threshold=0.5).analyze(square_frame(), 0.0).records
    assert record.label == UNCERTAIN and record.emotion == "sad"


def test_mirroring_flips_the_frame_in_place_and_the_boxes_with_it() -> None:
    frame = square_frame(Box(40, 100, 120, 120))
    [record] = analyzer(mirror=True).analyze(frame, 0.0).records
    assert record.box.iou(Box(640 - 40 - 120, 100, 120, 120)) > 0.9
    assert frame[150, 640 - 60].min() == 255  # the caller draws on the mirrored frame it analysed


def test_a_new_model_or_detector_restarts_the_tracks_and_smoothing_changes_do_not() -> None:
    video = analyzer()
    video.analyze(square_frame(), 0.0)
    video.configure(video.settings.__class__(smoothing=0.2))
    assert video.analyze(square_frame(), 0.1).records[0].face == 1
    video.configure(classifier=FixedClassifier("angry"))  # type: ignore[arg-type]
    [record] = video.analyze(square_frame(), 0.2).records
    assert record.face == 2 and record.label == "angry"


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"smoothing": 1.0}, "smoothing"), ({"threshold": 1.5}, "threshold")],
)
def test_bad_settings_are_refused(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VideoSettings(**changes)  # type: ignore[arg-type]


# --- records


def record(face: int, time_s: float, label: str = "happy", box: Box = SQUARE) -> FaceRecord:
    scores = FixedClassifier(label if label in EMOTIONS else "neutral").scores
    return FaceRecord(
        time_s, round(time_s * 10), face, box, label, label if label in EMOTIONS else "neutral", 0.9, scores
    )


def test_csv_has_one_row_per_face_per_frame_and_a_column_per_emotion() -> None:
    from fer_core.detect import Landmarks

    marks = Landmarks((10, 20), (30, 20), (20, 30), (12, 40), (28, 40))
    seen = record(1, 0.0)._replace(detection_score=0.91, landmarks=marks)
    rows = list(csv.DictReader(io.StringIO(records_to_csv([seen, record(2, 0.1, UNCERTAIN)]))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert {"time_s", "face", "emotion", "confidence", *EMOTIONS} <= set(rows[0])
    assert (rows[0]["detection_score"], rows[0]["left_eye_x"], rows[0]["mouth_left_y"]) == ("0.9100", "30.0", "40.0")
    assert rows[1]["detection_score"] == "" and rows[1]["nose_x"] == ""  # a detector without them (Haar)
    assert seen.as_dict()["landmarks"]["nose"] == [20, 30] and seen.as_dict()["detection_score"] == 0.91
    assert rows[1]["time_s"] == "0.100" and rows[1]["face"] == "2" and rows[1]["label"] == UNCERTAIN
    assert sum(float(rows[0][emotion]) for emotion in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert records_to_csv([]).startswith("time_s,frame,face,label")


def test_summary_counts_each_faces_time_in_each_emotion() -> None:
    records = [record(1, i / 10, "happy" if i < 6 else "sad") for i in range(10)] + [record(2, 0.5, "angry")]
    first, second = summarize(records, frame_interval_s=0.1)
    assert (first.face, first.frames, first.first_s, first.last_s) == (1, 10, 0.0, 0.9)
    assert first.seconds_by_label == pytest.approx({"happy": 0.6, "sad": 0.4})
    assert first.dominant == "happy" and second.dominant == "angry"
    document = json.loads(records_to_json(records, [first, second]))
    assert document["faces"][0]["dominant"] == "happy" and len(document["records"]) == 11


def test_faces_that_appear_in_the_same_frame_are_summarised_in_number_order() -> None:
    records = [record(2, 0.0, "sad"), record(1, 0.0), record(3, 0.2), record(2, 0.1, "sad"), record(1, 0.1)]
    assert [summary.face for summary in summarize(records, frame_interval_s=0.1)] == [1, 2, 3]


# --- files


def test_a_clip_is_analysed_and_its_annotated_copy_keeps_frame_rate_and_count(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=12, fps=12.0)
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.frame_count) == (640, 480, 12.0, 12)
    annotated = tmp_path / "annotated.mp4"
    results = list(
        analyze_video(
            clip,
            FixedClassifier(),
            annotated_path=annotated,
            detector_factory=BrightSquareDetector,  # type: ignore[arg-type]
        )
    )
    assert len(results) == 12 and all(len(result.records) == 1 for result in results)
    assert results[-1].time_s == pytest.approx(11 / 12, abs=1e-3)
    assert {record.face for result in results for record in result.records} == {1}
    first_frame = next(read_frames(annotated))[1]
    assert (first_frame.max(axis=2).astype(int) - first_frame.min(axis=2)).max() > 100  # a coloured box was drawn
    out = probe_video(annotated)
    assert (out.fps, out.frame_count, out.codec) == (12.0, 12, "h264")


def test_an_odd_sized_clip_is_padded_to_even_for_h264(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "odd.mp4", frames=3, size=(641, 479))
    info = probe_video(clip)
    assert (info.width, info.height) == (642, 480)


def test_max_seconds_stops_early(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=24, fps=12.0)
    assert len(list(read_frames(clip, max_seconds=1.0))) == 12


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a video file, or it is damaged"),
        (b"\x00" * 4096, "not a video file, or it is damaged"),
        (b"GIF89a not really", "not a video file, or it is damaged"),
    ],
)
def test_a_corrupt_file_is_an_invalid_video_error(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(InvalidVideoError, match=message):
        probe_video(bad)
    with pytest.raises(InvalidVideoError):
        list(analyze_video(bad, FixedClassifier()))  # type: ignore[arg-type]


def test_a_truncated_clip_is_an_invalid_video_error(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=30)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    with pytest.raises(InvalidVideoError, match="damaged or truncated"):
        probe_video(truncated)


def test_a_file_with_no_video_stream_says_so(tmp_path: Path) -> None:
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate = 8000
        for packet in [*stream.encode(samples), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InvalidVideoError, match="has no video stream"):
        probe_video(audio_only)


def test_a_codec_this_build_cannot_decode_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=2)

    def no_decoder(*args: object, **kwargs: object) -> None:
        raise av.error.DecoderNotFoundError(1, "Decoder not found", str(clip))

    monkeypatch.setattr(av, "open", no_decoder)
    with pytest.raises(InvalidVideoError, match="uses a codec this build cannot decode"):
        probe_video(clip)


def test_a_clip_that_breaks_off_gives_the_frames_before_the_break(tmp_path: Path) -> None:
    """A streamable file (Matroska) cut in the middle, as an interrupted download or recording."""
    clip = write_clip(tmp_path / "clip.mkv", frames=40)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    results = list(analyze_video(cut, FixedClassifier(), detector_factory=BrightSquareDetector))  # type: ignore[arg-type]
    assert 5 <= len(results) < 40 and all(len(result.records) == 1 for result in results)


def test_a_missing_file_is_an_invalid_video_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidVideoError, match="does not exist"):
        probe_video(tmp_path / "nope.mp4")


# --- the command line, with the real model and detector


@pytest.mark.slow
@pytest.mark.fer2013
def test_the_video_command_writes_csv_json_and_an_annotated_clip(tmp_path: Path, fer2013_dir: Path) -> None:
    import cv2
    from photo_samples import detectable_faces, fer_faces, upscale

    [face] = detectable_faces(fer_faces(fer2013_dir), size=180, count=1)
    clip = tmp_path / "clip.mp4"
    with AnnotatedVideoWriter(clip, 640, 480, 10.0) as writer:
        for index in range(15):
            frame = np.full((480, 640, 3), 110, np.uint8)
            x = 150 + 5 * index
            frame[120:300, x : x + 180] = cv2.cvtColor(upscale(face, 180), cv2.COLOR_GRAY2BGR)
            writer.write(frame)
    out_csv, out_json, out_mp4 = tmp_path / "faces.csv", tmp_path / "faces.json", tmp_path / "annotated.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "fer_core", "video", str(clip), "--csv", str(out_csv), "--json", str(out_json),
         "--output", str(out_mp4)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "15 frames analysed" in result.stdout and "face 1" in result.stdout and "mostly" in result.stdout
    assert "fps), 1 face\n" in result.stdout  # not "1 face(s)"
    assert "XNNPACK" not in result.stderr  # LiteRT's start-up line is left out (--verbose shows it)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) >= 12 and {row["face"] for row in rows} == {"1"}
    assert {"time_s", "face", "emotion", "confidence", *EMOTIONS} <= set(rows[0])
    document = json.loads(out_json.read_text())
    assert document["clip"]["frames"] == 15 and document["faces"][0]["face"] == 1
    annotated = probe_video(out_mp4)
    assert (annotated.frame_count, annotated.fps) == (15, 10.0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--output", "missing/annotated.mp4", "the folder missing does not exist"),
        ("--csv", "missing/faces.csv", "the folder missing does not exist"),
        ("--max-seconds", "nan", "--max-seconds must be a positive number"),
        ("--max-seconds", "-2", "--max-seconds must be a positive number"),
    ],
)
def test_the_video_command_refuses_bad_options_before_analysing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["video", str(clip), option, value]) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_the_video_command_exits_non_zero_with_a_clear_message_for_a_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    assert cli.main(["video", str(bad), "--csv", str(tmp_path / "out.csv")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: bad.mp4 is not a video file") and "Traceback" not in error
    assert not (tmp_path / "out.csv").exists()
