"""fer_core.video: the analyzer on synthetic frames, video files in and out (a generated clip, a corrupt
one, one with no video stream), records, summaries and the ``python -m fer_core video`` command."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from conftest import PROJECT_ROOT
from fakes import SQUARE, BrightSquareDetector, FixedClassifier, square_frame

from fer_core import cli
from fer_core.detect import Box, Detection, Landmarks
from fer_core.draw import LANDMARK_COLORS_BGR
from fer_core.errors import InvalidVideoError
from fer_core.face_table import FaceRecord, records_to_csv
from fer_core.labels import EMOTIONS, UNCERTAIN
from fer_core.video import (
    CSV_COLUMNS,
    AnnotatedVideoWriter,
    DecodeReport,
    VideoAnalyzer,
    VideoSettings,
    analyze_video,
    frame_durations,
    probe_video,
    read_frames,
    read_indexed_frames,
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


class LandmarkSquareDetector(BrightSquareDetector):
    """The bright square, with five landmarks inside it (as YuNet gives)."""

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Detection]:
        return [detection._replace(landmarks=Landmarks(*LANDMARKS)) for detection in super().detect(image)]


LANDMARKS = ((290.0, 200.0), (350.0, 200.0), (320.0, 240.0), (295.0, 275.0), (345.0, 275.0))


def test_analyze_and_draw_draws_what_it_found_and_landmarks_only_when_asked() -> None:
    plain, with_landmarks = square_frame(), square_frame()
    result = analyzer(mirror=False).analyze_and_draw(plain, 0.0)
    assert len(result.records) == 1
    assert (plain != square_frame()).any()  # the box, caption and bar
    video = VideoAnalyzer(
        FixedClassifier(),  # type: ignore[arg-type]
        VideoSettings(mirror=False, landmarks=True),
        detector_factory=LandmarkSquareDetector,
    )
    video.analyze_and_draw(with_landmarks, 0.0)
    for (x, y), color in zip(LANDMARKS, LANDMARK_COLORS_BGR, strict=True):
        assert tuple(with_landmarks[int(y), int(x)]) == color  # each point in its colour
        assert tuple(plain[int(y), int(x)]) == (255, 255, 255)  # not drawn by default


def test_an_annotated_copy_gets_the_landmarks_when_asked(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=3, moving=False)
    settings = VideoSettings(landmarks=True)
    for name, factory in (("plain.mp4", BrightSquareDetector), ("marked.mp4", LandmarkSquareDetector)):
        results = analyze_video(
            clip,
            FixedClassifier(),
            settings,
            annotated_path=tmp_path / name,
            detector_factory=factory,  # type: ignore[arg-type]
        )
        assert len(list(results)) == 3
    [plain], [marked] = (list(read_frames(tmp_path / name, max_frames=1)) for name in ("plain.mp4", "marked.mp4"))
    x, y = (round(v) for v in LANDMARKS[2])  # the nose tip, green
    assert plain[1][y, x].min() > 200 and marked[1][y, x][1] > 150 > marked[1][y, x][2]


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
    assert {"time_s", "face", "emotion", "confidence", *(f"p_{emotion}" for emotion in EMOTIONS)} <= set(rows[0])
    assert rows[0]["kind"] == "video" and (rows[0]["x"], rows[0]["w"]) == (str(SQUARE.x), str(SQUARE.width))
    assert (rows[0]["detection_score"], rows[0]["left_eye_x"], rows[0]["mouth_left_y"]) == ("0.9100", "30.0", "40.0")
    assert rows[1]["detection_score"] == "" and rows[1]["nose_x"] == ""  # a detector without them (Haar)
    assert seen.as_dict()["landmarks"]["nose"] == [20, 30] and seen.as_dict()["detection_score"] == 0.91
    assert rows[1]["time_s"] == "0.100" and rows[1]["face"] == "2" and rows[1]["label"] == UNCERTAIN
    assert sum(float(rows[0][f"p_{emotion}"]) for emotion in EMOTIONS) == pytest.approx(1.0, abs=1e-3)
    assert records_to_csv([]).startswith("file,kind,frame,time_s,face,x,y,w,h")


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


def test_frames_not_kept_are_decoded_but_never_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import av.video.reformatter

    clip = write_clip(tmp_path / "clip.mp4", frames=12, fps=12.0)
    every = list(read_frames(clip))
    conversions: list[str] = []

    real_converter = av.video.reformatter.VideoReformatter

    class CountingConverter:  # PyAV's converter cannot be subclassed: this one wraps it
        def __init__(self) -> None:
            self._converter = real_converter()

        def reformat(self, frame: av.VideoFrame, **options: object) -> av.VideoFrame:
            conversions.append(str(options.get("format")))
            return self._converter.reformat(frame, **options)

    monkeypatch.setattr(av.video.reformatter, "VideoReformatter", CountingConverter)
    report = DecodeReport()
    kept = list(read_indexed_frames(clip, keep=lambda index, time_s: index % 4 == 1, report=report))
    assert [index for index, _, _ in kept] == [1, 5, 9] and report.frames == 12  # all decoded, three converted
    assert conversions == ["bgr24"] * 3
    for index, time_s, frame in kept:  # the same times and pixels as reading every frame
        assert time_s == every[index][0] and np.array_equal(frame, every[index][1])


@pytest.mark.parametrize("threads", [None, 1])
def test_the_decoder_uses_the_threads_asked_for_and_gives_the_same_frames(
    tmp_path: Path, threads: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=12)
    expected = [frame for _, frame in read_frames(clip)]
    opened: list[av.container.InputContainer] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *args, **kwargs: opened.append(real_open(*args, **kwargs)) or opened[-1])
    frames = read_frames(clip, threads=threads)
    first = next(frames)[1]
    thread_count = opened[-1].streams.video[0].codec_context.thread_count  # the decoding one (a probe came first)
    assert thread_count == (1 if threads == 1 else min(4, os.cpu_count() or 1))
    got = [first, *(frame for _, frame in frames)]
    assert len(got) == len(expected) and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


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
    assert "), 1 face\n" in result.stdout  # not "1 face(s)"
    assert "XNNPACK" not in result.stderr  # LiteRT's start-up line is left out (--verbose shows it)
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) >= 12 and {row["face"] for row in rows} == {"1"}
    assert {"time_s", "face", "emotion", "confidence", *(f"p_{emotion}" for emotion in EMOTIONS)} <= set(rows[0])
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


# --- resources: frame size, memory, a full disk


def test_frames_above_the_photo_pixel_cap_are_refused_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fer_core.video

    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    monkeypatch.setattr(fer_core.video, "MAX_PIXELS", 640 * 480 - 1)
    decoded: list[object] = []
    monkeypatch.setattr(av.container.InputContainer, "decode", lambda *args, **kwargs: decoded.append(args))
    with pytest.raises(InvalidVideoError, match=r"clip.mp4 has frames of 640x480 .* the limit is 0 megapixels"):
        probe_video(clip)
    with pytest.raises(InvalidVideoError, match="scale the clip down"):
        list(analyze_video(clip, FixedClassifier()))  # type: ignore[arg-type]
    assert decoded == []  # refused before any frame was decoded


def test_the_real_cap_is_the_photos_forty_megapixels() -> None:
    import fer_core.video
    from fer_core.images import MAX_PIXELS

    assert fer_core.video.MAX_PIXELS == MAX_PIXELS == 40_000_000


def test_frames_are_streamed_never_held(tmp_path: Path) -> None:
    """Python's memory through a 60-frame clip, decoded, analysed, drawn and encoded, stays a few frames
    deep: a list of the frames would be 60 of them."""
    import tracemalloc

    clip = write_clip(tmp_path / "clip.mp4", frames=60, moving=False)
    tracemalloc.start()
    try:
        count = 0
        for _ in analyze_video(
            clip,
            FixedClassifier(),  # type: ignore[arg-type]
            annotated_path=tmp_path / "annotated.mp4",
            detector_factory=BrightSquareDetector,  # type: ignore[arg-type]
        ):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = 640 * 480 * 3
    assert count == 60 and peak < 10 * frame_bytes, f"peak {peak / frame_bytes:.1f} frames"


def test_the_encoder_holds_no_frames(tmp_path: Path) -> None:
    """Each frame given to the annotated copy is in the file before the next one comes (no lookahead)."""
    with AnnotatedVideoWriter(tmp_path / "out.mp4", 640, 480, 10.0) as writer:
        for index in range(6):
            writer.write(square_frame(Box(SQUARE.x + 5 * index, *SQUARE[1:])))
            assert writer.packets == writer.frames == index + 1


def test_max_frames_stops_early(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=12)
    assert len(list(read_frames(clip, max_frames=5))) == 5


def test_a_full_disk_while_writing_the_copy_is_an_os_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    clip = write_clip(tmp_path / "clip.mp4", frames=3)

    def full(*args: object) -> None:
        raise av.error.OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(av.container.OutputContainer, "mux", full)
    with pytest.raises(OSError, match="No space left on device") as raised:
        list(analyze_video(clip, FixedClassifier(), annotated_path=tmp_path / "out.mp4"))  # type: ignore[arg-type]
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "out.mp4")


def test_ffmpeg_errors_never_carry_the_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=2)

    def refuse(*args: object, **kwargs: object) -> None:
        raise av.error.PermissionError(13, "Permission denied", str(clip))

    monkeypatch.setattr(av, "open", refuse)
    with pytest.raises(InvalidVideoError) as raised:
        probe_video(clip)
    assert "clip.mp4" in str(raised.value) and str(tmp_path) not in str(raised.value)


# --- rotation, timestamps, damage


def write_turned_clip(path: Path, degrees: int, hflip: bool = False, frames: int = 3) -> npt.NDArray[np.uint8]:
    """A 640x480 clip stored as is, with a display matrix saying to turn it ``degrees`` counter-clockwise
    (then mirror it): how phones store portrait clips. Returns the stored picture."""
    stored = np.full((480, 640, 3), 90, np.uint8)
    stored[20:140, 30:230] = 255  # a white block near the top left: where it ends up tells the turn
    stored[300:460, 500:600] = (0, 0, 255)  # red near the bottom right
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.set_display_rotation(degrees, hflip=hflip)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return stored


@pytest.mark.parametrize(("degrees", "hflip"), [(90, False), (-90, False), (180, False), (0, True), (90, True)])
def test_a_turned_phone_clip_is_read_upright_as_its_display_matrix_says(
    tmp_path: Path, degrees: int, hflip: bool
) -> None:
    stored = write_turned_clip(tmp_path / "phone.mp4", degrees, hflip)
    shown = np.rot90(stored, k=degrees // 90)  # PyAV: the matrix turns the picture counter-clockwise ...
    shown = shown[:, ::-1] if hflip else shown  # ... then mirrors it
    info = probe_video(tmp_path / "phone.mp4")
    assert (info.height, info.width) == shown.shape[:2]
    report = DecodeReport()
    frames = [frame for _, frame in read_frames(tmp_path / "phone.mp4", report=report)]
    assert len(frames) == 3 and frames[0].shape == shown.shape
    assert np.abs(frames[0].astype(int) - shown).mean() < 4  # the same picture, up to compression
    assert (report.rotation, report.mirrored, info.rotation) == (degrees, hflip, degrees)


def test_a_turned_clip_is_analysed_and_copied_upright(tmp_path: Path) -> None:
    stored = write_turned_clip(tmp_path / "phone.mp4", -90)
    annotated = tmp_path / "annotated.mp4"
    results = list(
        analyze_video(
            tmp_path / "phone.mp4",
            FixedClassifier(),  # type: ignore[arg-type]
            annotated_path=annotated,
            detector_factory=BrightSquareDetector,  # type: ignore[arg-type]
        )
    )
    [record] = results[0].records
    assert record.box.iou(Box(480 - 140, 30, 120, 200)) > 0.8  # the white block, turned clockwise with the frame
    copy = probe_video(annotated)
    assert (copy.width, copy.height, copy.rotation) == (480, 640, 0)  # upright in the copy: no matrix needed
    first = next(read_frames(annotated))[1]
    upright, wrong_way = (np.abs(first.astype(int) - np.rot90(stored, k=k)).mean() for k in (-1, 1))
    assert upright < wrong_way / 3  # upright, apart from the drawing and the colour conversions


def write_timed_clip(path: Path, times: list[float], fps: float = 10.0) -> Path:
    with AnnotatedVideoWriter(path, 640, 480, fps) as writer:
        for index, time_s in enumerate(times):
            writer.write(square_frame(Box(SQUARE.x + 4 * index, *SQUARE[1:])), time_s)
    return path


VARIABLE_TIMES = [0.0, 0.1, 0.2, 3.0, 3.1, 5.0, 8.2]


def test_a_variable_frame_rate_keeps_its_own_times_durations_and_pace(tmp_path: Path) -> None:
    clip = write_timed_clip(tmp_path / "vfr.mp4", VARIABLE_TIMES)
    report = DecodeReport()
    annotated = tmp_path / "annotated.mp4"
    results = list(
        analyze_video(
            clip,
            FixedClassifier(),  # type: ignore[arg-type]
            annotated_path=annotated,
            detector_factory=BrightSquareDetector,  # type: ignore[arg-type]
            report=report,
        )
    )
    times = [result.time_s for result in results]
    assert times == pytest.approx(VARIABLE_TIMES, abs=2e-3)
    assert 8.2 < report.end_s < 8.5 and report.warning() is None
    records = [record for result in results for record in result.records]
    [face] = summarize(records, frame_times=times, end_s=report.end_s)
    assert face.seconds_by_label["happy"] == pytest.approx(report.end_s)  # not 7 frames x 1/10 s
    assert [time_s for time_s, _ in read_frames(annotated)] == pytest.approx(VARIABLE_TIMES, abs=2e-3)  # same pace


def test_frame_durations_run_to_the_next_frame_and_the_clips_end() -> None:
    assert frame_durations([0.0, 0.5, 2.0], end_s=2.25) == pytest.approx([0.5, 1.5, 0.25])
    assert frame_durations([], end_s=None) == []


def test_missing_backward_or_runaway_timestamps_are_counted_and_replaced() -> None:
    from fractions import Fraction
    from types import SimpleNamespace

    from fer_core.video import VideoInfo, _FrameClock

    report = DecodeReport()
    clock = _FrameClock(VideoInfo(Path("x.mp4"), 64, 48, 0.0, None, 2.0, "h264"), report)  # 0 fps in the header

    def frame(time_s: float | None) -> object:
        return SimpleNamespace(time=time_s, duration=0, time_base=Fraction(1, 1000))

    # from the first stamp; backwards, missing and past the clip's end (2 s + 1 s): the last time + 0.5 s
    stamps = [clock.time_of(frame(t)) for t in (5.0, 5.5, 5.2, None, 10_000_000.0, 7.9)]
    assert stamps == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.9])
    assert report.bad_timestamps == 3
    assert report.end_s == pytest.approx(2.9 + 0.7)  # the median of the real intervals (0.5, 0.9): never 1e7 s


def damage_packets(clip: Path, damaged: Path, indices: range) -> None:
    """Overwrite the middle of some packets' data, as a bad sector or a broken download would."""
    data = bytearray(clip.read_bytes())
    with av.open(str(clip)) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    for index in indices:
        position, size = packets[index]
        middle = position + size // 4
        data[middle : middle + size // 2] = np.random.default_rng(index).integers(0, 256, size // 2, np.uint8).tobytes()
    damaged.write_bytes(bytes(data))


def noisy_clip(path: Path, frames: int = 40) -> Path:
    rng = np.random.default_rng(0)
    with AnnotatedVideoWriter(path, 640, 480, 10.0) as writer:
        for index in range(frames):
            frame = square_frame(Box(SQUARE.x + 3 * index, *SQUARE[1:]))
            frame[:120] = rng.integers(0, 256, (120, 640, 3), dtype=np.uint8)
            writer.write(frame)
    return path


def test_a_clip_damaged_mid_file_is_read_with_its_damage_counted(tmp_path: Path) -> None:
    clip = noisy_clip(tmp_path / "clip.mp4")
    clean = DecodeReport()
    assert len(list(read_frames(clip, report=clean))) == 40 and clean.warning() is None
    damage_packets(clip, tmp_path / "damaged.mp4", range(15, 25, 3))
    report = DecodeReport()
    frames = list(read_frames(tmp_path / "damaged.mp4", report=report))
    assert report.lost_frames + report.damaged_frames > 0 and len(frames) == report.frames
    assert len(frames) + report.lost_frames == 40
    warning = report.warning()
    assert warning is not None and warning.startswith("the clip is damaged:")
    document = json.loads(records_to_json([], [], probe_video(tmp_path / "damaged.mp4"), report))
    assert document["decoding"]["skipped_frames"] == report.lost_frames and document["decoding"]["warning"] == warning


def test_the_video_command_reports_damage_and_real_durations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = noisy_clip(tmp_path / "clip.mp4")
    damage_packets(clip, tmp_path / "damaged.mp4", range(15, 25, 3))
    out_json = tmp_path / "faces.json"
    assert cli.main(["video", str(tmp_path / "damaged.mp4"), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "warning: the clip is damaged" in out
    decoding = json.loads(out_json.read_text())["decoding"]
    assert decoding["skipped_frames"] + decoding["damaged_frames"] > 0 and decoding["warning"]
    write_timed_clip(tmp_path / "vfr.mp4", VARIABLE_TIMES)
    assert cli.main(["video", str(tmp_path / "vfr.mp4")]) == 0
    out = capsys.readouterr().out
    assert "7 frames analysed (8.2 s" in out or "7 frames analysed (8.3 s" in out
    assert "warning" not in out


@pytest.mark.fer2013
def test_a_portrait_phone_clip_of_a_real_face_is_found_once_turned_upright(tmp_path: Path, fer2013_dir: Path) -> None:
    """A face filmed upright on a phone held in portrait is stored on its side with a -90 display matrix:
    the detector looks at the upright picture and finds it in every frame."""
    import cv2
    from photo_samples import detectable_faces, fer_faces, upscale

    [face] = detectable_faces(fer_faces(fer2013_dir), size=180, count=1)
    shown = np.full((640, 480, 3), 110, np.uint8)  # portrait, as the person filmed it
    shown[200:380, 150:330] = cv2.cvtColor(upscale(face, 180), cv2.COLOR_GRAY2BGR)
    stored = np.ascontiguousarray(np.rot90(shown, k=1))  # on its side: turned -90 (clockwise) to show it
    clip = tmp_path / "portrait.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.set_display_rotation(-90)
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    results = list(analyze_video(clip, FixedClassifier()))  # type: ignore[arg-type]
    assert [len(result.records) for result in results] == [1] * 5
    assert results[0].records[0].box.iou(Box(150, 200, 180, 180)) > 0.5  # where it is in the upright picture


def test_decoded_frames_are_freed_as_they_go_even_without_the_garbage_collector(tmp_path: Path) -> None:
    """FFmpeg's frame buffers are invisible to tracemalloc: count the frames still alive instead. A frame
    caught in a reference cycle (as reading its side data makes) would wait for the collector."""
    import gc

    clip = tmp_path / "phone.mp4"
    write_turned_clip(clip, 90, frames=30)  # a display matrix: its side data is read
    gc.collect()
    gc.disable()
    try:
        alive = []
        for _ in read_frames(clip):
            alive.append(sum(isinstance(thing, av.VideoFrame) for thing in gc.get_objects()))
    finally:
        gc.enable()
    assert len(alive) == 30 and max(alive) <= 8, alive  # a few in the decoder's threads; not one per frame
