"""The Video page through AppTest: a generated clip of a real FER2013 face is analysed into an annotated
video, a timeline, a per-face summary and downloads; bad clips get an error naming them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from photo_samples import detectable_faces, fer_faces, fixture_model, upscale
from streamlit.testing.v1 import AppTest

from fer_core.labels import EMOTIONS
from fer_core.video import AnnotatedVideoWriter, probe_video

PAGE = str(PROJECT_ROOT / "app" / "views" / "video.py")


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory: pytest.TempPathFactory, fer2013_dir: Path) -> bytes:
    """Two seconds at 10 fps: one face drifting right on a plain background."""
    [face] = detectable_faces(fer_faces(fer2013_dir), size=180, count=1)
    path = tmp_path_factory.mktemp("clips") / "drift.mp4"
    with AnnotatedVideoWriter(path, 640, 480, 10.0) as writer:
        for index in range(20):
            frame = np.full((480, 640, 3), 110, np.uint8)
            x = 150 + 6 * index
            frame[130:310, x : x + 180] = cv2.cvtColor(upscale(face, 180), cv2.COLOR_GRAY2BGR)
            writer.write(frame)
    return path.read_bytes()


@pytest.fixture
def promoted(isolated_runs_dir: Path) -> Path:
    """A promoted model that calls every face "surprise" (the shipped one is never loaded)."""
    return fixture_model("surprise", isolated_runs_dir / "promoted.keras")


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="video_upload").set_value([(name, data, "video/mp4")])
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_empty_page_says_what_to_do(promoted: Path) -> None:
    at = run_page()
    assert at.title[0].value == "Video"
    assert "Add a clip to start" in at.info[0].value and "60 seconds" in at.info[0].value
    assert "promoted" in at.caption[0].value
    uploader = at.file_uploader(key="video_upload")
    assert set(uploader.allowed_type) >= {".mp4", ".webm", ".mov", ".avi"}
    assert at.sidebar.slider(key="video_min_face").value == 48  # the video preset's
    assert at.sidebar.toggle(key="video_landmarks").value is False  # drawn on the copy only when asked for


@pytest.mark.fer2013
def test_a_clip_is_analysed_into_video_timeline_summary_and_downloads(
    promoted: Path, clip_bytes: bytes, tmp_path: Path
) -> None:
    at = upload(run_page(), "drift.mp4", clip_bytes)
    assert not at.error
    assert [metric.value for metric in at.metric] == ["1", "20", "2.0"]
    assert len(at.get("video")) == 1  # the annotated clip, to play
    assert len(at.get("plotly_chart")) == 2  # time in each emotion, and the timeline
    (summary,) = [frame.value for frame in at.dataframe]
    assert list(summary["face"]) == ["#1"] and list(summary["mostly"]) == ["surprise"]
    assert summary["surprise"][0] == pytest.approx(2.0, abs=0.3)
    columns = json.loads(at.dataframe[0].proto.columns)
    assert {columns[label]["type_config"]["format"] for label in (*EMOTIONS, "uncertain")} == {"%.1f s"}  # units
    time_chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [trace["name"] for trace in time_chart["data"]] == ["surprise"]
    assert time_chart["layout"]["showlegend"] is True  # one emotion still gets its legend
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels == ["Annotated video (MP4)", "Every face in every frame (CSV)", "Summary and records (JSON)"]
    (result,) = at.session_state["video_results"].values()
    assert len(result.records) >= 18 and {record.face for record in result.records} == {1}
    annotated = tmp_path / "annotated.mp4"
    annotated.write_bytes(result.annotated_mp4)
    info = probe_video(annotated)
    assert (info.frame_count, info.fps, info.codec) == (20, 10.0, "h264")  # browsers play H.264 MP4


@pytest.mark.fer2013
def test_the_clip_is_analysed_once_per_settings(promoted: Path, clip_bytes: bytes) -> None:
    at = upload(run_page(), "drift.mp4", clip_bytes)
    (first,) = at.session_state["video_results"].values()
    at.run()  # a rerun with nothing changed: the same result, no new analysis
    (same,) = at.session_state["video_results"].values()
    assert same is first
    at.sidebar.slider(key="video_threshold").set_value(80).run()  # drawn into the clip: analysed again
    assert not at.exception
    (again,) = at.session_state["video_results"].values()
    assert again is not first and len(again.records) == len(first.records)
    assert {record.label for record in again.records} == {"surprise"}  # the tiny model is ~100% sure


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("empty.mp4", b"", "not a video file"),
        ("notes.mp4", b"hello, this is text", "not a video file"),
        ("[link](http://x).mp4", b"\x00" * 2048, "not a video file"),
    ],
)
def test_a_bad_clip_gets_an_error_naming_it(promoted: Path, name: str, data: bytes, problem: str) -> None:
    at = upload(run_page(), name, data)
    (error,) = at.error
    assert problem in error.value
    assert "\\[link\\]\\(http://x\\)" in error.value or "[link]" not in name  # the name is plain text
    assert not at.get("video")


def test_a_clip_longer_than_the_cap_is_analysed_up_to_it_with_a_message(promoted: Path, tmp_path: Path) -> None:
    long_clip = tmp_path / "long.mp4"
    with AnnotatedVideoWriter(long_clip, 160, 120, 1.0) as writer:  # 65 seconds at one frame a second
        for index in range(65):
            writer.write(np.full((120, 160, 3), 60 + index, np.uint8))
    at = upload(run_page(), "long.mp4", long_clip.read_bytes())
    assert "the first 60 s were analysed" in at.warning[0].value
    assert at.metric[1].value == "60"  # frames analysed: one a second
    assert "No face was found" in at.info[0].value


def small_clip(path: Path, frames: int = 6, size: tuple[int, int] = (160, 120)) -> bytes:
    with AnnotatedVideoWriter(path, *size, 10.0) as writer:
        for index in range(frames):
            writer.write(np.full((size[1], size[0], 3), 60 + 5 * index % 180, np.uint8))
    return path.read_bytes()


def test_a_full_temporary_folder_gives_a_clear_error_and_leaves_nothing_behind(
    promoted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import tempfile

    data = small_clip(tmp_path / "clip.mp4")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def disk_full(self: AnnotatedVideoWriter, bgr_frame: object, time_s: float | None = None) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(AnnotatedVideoWriter, "write", disk_full)
    at = upload(run_page(), "holiday.mp4", data)
    (error,) = at.error
    assert "Could not analyse **holiday.mp4**" in error.value and "temporary folder is full" in error.value
    assert str(scratch) not in error.value and "annotated" not in error.value  # no server paths
    assert list(scratch.iterdir()) == []  # the temporary folder and its files are gone
    assert not at.get("video")


@pytest.mark.parametrize(
    ("name", "shown"),
    [("holiday.mp4", "holiday.mp4"), ("my clip [1].mov", "my clip \\[1\\].mov")],
)
def test_errors_name_the_uploaded_file_never_the_temporary_one(
    promoted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, shown: str
) -> None:
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    data = small_clip(tmp_path / "clip.mp4", frames=30)
    at = upload(run_page(), name, data[: len(data) // 3])  # cut short: the index is missing
    (error,) = at.error
    assert error.value.count(shown) == 2, error.value  # in "Could not use" and in the reason
    assert "clip.mp4" not in error.value and "my clip _1_" not in error.value and str(scratch) not in error.value


def test_the_page_caps_the_work_on_a_clip_of_large_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pixels x frames: a clip of large frames is analysed up to the frames of its size that fit, saying so."""
    from fakes import FixedClassifier

    from app.views import video as page
    from fer_core.video import VideoSettings

    data = small_clip(tmp_path / "clip.mp4", frames=12)
    monkeypatch.setattr(page, "MAX_PIXEL_FRAMES", 160 * 120 * 5)
    result = page.analyse_clip(data, "big.mp4", FixedClassifier(), VideoSettings())  # type: ignore[arg-type]
    assert result.frames == 5 and result.frame_limit == 5 and not result.capped
    (message,) = page.limit_messages(result)
    assert "160x120" in message and "up to 5 frames of that size" in message and "first 0.5 s" in message
    monkeypatch.setattr(page, "MAX_PIXEL_FRAMES", 160 * 120 * 12)
    whole = page.analyse_clip(data, "big.mp4", FixedClassifier(), VideoSettings())  # type: ignore[arg-type]
    assert whole.frames == 12 and whole.frame_limit is None and page.limit_messages(whole) == []


def test_the_work_cap_allows_a_minute_of_720p_and_a_few_seconds_of_8k() -> None:
    from app.views.video import MAX_PIXEL_FRAMES, frame_limit
    from fer_core.video import VideoInfo

    def info(width: int, height: int) -> VideoInfo:
        return VideoInfo(Path("x.mp4"), width, height, 30.0, None, None, "h264")

    assert frame_limit(info(1280, 720)) == 30 * 60
    assert frame_limit(info(7680, 4320)) == MAX_PIXEL_FRAMES // (7680 * 4320) < 60


def test_a_damaged_clip_is_analysed_with_a_warning_and_its_real_length(promoted: Path, tmp_path: Path) -> None:
    from test_video import VARIABLE_TIMES, damage_packets, noisy_clip, write_timed_clip

    clip = noisy_clip(tmp_path / "clip.mp4")
    damage_packets(clip, tmp_path / "damaged.mp4", range(15, 25, 3))
    at = upload(run_page(), "damaged.mp4", (tmp_path / "damaged.mp4").read_bytes())
    assert not at.error
    assert any("The clip is damaged: 4 frames could not be decoded" in warning.value for warning in at.warning)
    assert at.metric[1].value == "36"  # frames analysed: the 4 lost ones are not analysed
    vfr = write_timed_clip(tmp_path / "vfr.mp4", VARIABLE_TIMES)
    at = upload(at, "vfr.mp4", vfr.read_bytes())
    assert not at.warning and [metric.value for metric in at.metric][1:] == ["7", "8.3"]  # not 7 frames at 10 fps
