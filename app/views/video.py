"""Video: upload a clip; every face is found, followed and classified through it (``fer_core.video``).

The result is the annotated clip to play and download, each face's emotion over time, the time each
face spent in each emotion, and the records as CSV and JSON: what ``python -m fer_core video`` gives.
A clip is analysed once per file and settings (the result is kept for the session).
"""

from __future__ import annotations

import errno
import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app.access import is_admin, visitor_key
from app.charts.timelines import clip_timeline_figure, time_by_emotion_figure
from app.format import CHART_CONFIG, file_stem, upload_types_text
from app.limits import video_analysis_slot
from app.model_picker import (
    classifier_or_stop,
    detection_ui,
    landmarks_ui,
    model_caption_ui,
    model_picker_ui,
    model_version,
    smoothing_ui,
)
from app.state import confidence_threshold_ui, escape_markdown, or_stop, printable
from fer_core.detect import VIDEO_PRESET, check_detector
from fer_core.errors import FerError, InvalidVideoError
from fer_core.face_table import FaceRecord, records_to_csv
from fer_core.file_types import VIDEO_SUFFIXES
from fer_core.inference import EmotionClassifier
from fer_core.labels import EMOTIONS, UNCERTAIN
from fer_core.model_store import ModelInfo
from fer_core.video import (
    DecodeReport,
    FaceSummary,
    VideoInfo,
    VideoSettings,
    analyze_video,
    probe_video,
    records_to_json,
    summarize,
)

MAX_SECONDS = 60.0  # longer clips are analysed up to here (about a minute of CPU per minute of 640x480 video)
# The most work one clip may take on the page, in pixels x frames: a minute of 720p at 30 fps. A clip of
# larger frames is analysed up to the frames that fit (a 4K clip: its first 13 s at 30 fps).
MAX_PIXEL_FRAMES = 1280 * 720 * 30 * 60
MEMO_KEY = "video_results"
PROGRESS_EVERY = 5  # frames between progress-bar updates


class ClipResult(NamedTuple):
    info: VideoInfo
    frames: int  # frames analysed
    analysed_s: float  # seconds of the clip analysed
    capped: bool  # the clip went on past MAX_SECONDS
    frame_limit: int | None  # the clip went on past the frames of its size that MAX_PIXEL_FRAMES allows
    records: list[FaceRecord]
    summaries: list[FaceSummary]
    annotated_mp4: bytes
    decoding: DecodeReport  # damage met (skipped or damaged frames, broken timestamps), rotation, duration


def settings_ui() -> VideoSettings:
    with st.sidebar:
        st.subheader("Video")
        threshold = confidence_threshold_ui("video_threshold")
        smoothing = smoothing_ui("video")
    preset = detection_ui("video", VIDEO_PRESET)
    landmarks = landmarks_ui("video", preset)
    return VideoSettings(preset=preset, smoothing=smoothing, threshold=threshold, landmarks=landmarks)


class ClipStorageError(Exception):
    """The clip could not be analysed on this server (its temporary folder is full or cannot be written):
    the message says so in words, without the server's paths."""


def frame_limit(info: VideoInfo) -> int:
    """How many frames of this clip's size the page analyses (:data:`MAX_PIXEL_FRAMES`)."""
    return max(1, MAX_PIXEL_FRAMES // max(1, info.width * info.height))


def analyse_clip(data: bytes, name: str, classifier: EmotionClassifier, settings: VideoSettings) -> ClipResult:
    """Analyse the uploaded bytes (written to a temporary folder for FFmpeg, removed whatever happens),
    with a progress bar. The temporary file has the upload's name, so messages about it name the upload.
    A full or unwritable temporary folder is a :class:`ClipStorageError`."""
    try:
        with tempfile.TemporaryDirectory(prefix="fer-video-") as folder:
            clip = Path(folder) / temporary_name(name)
            try:
                return _analyse_file(clip, data, name, classifier, settings)
            except FerError as error:  # name the upload, never the server's folder
                message = str(error).replace(f"{folder}/", "").replace(clip.name, name)
                raise type(error)(message) from None
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise ClipStorageError(
                "the server's temporary folder is full (no space left on device); "
                "try a shorter or smaller clip, or ask the server's administrator to free space"
            ) from None
        raise ClipStorageError(
            f"the server could not write its temporary files ({error.strerror or type(error).__name__})"
        ) from None


def temporary_name(name: str) -> str:
    """The upload's name as a safe file name (letters, digits, ``-_.`` and spaces kept), with a video suffix."""
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in VIDEO_SUFFIXES else ".mp4"
    stem = re.sub(r"[^\w\-. ]", "_", Path(name).stem, flags=re.ASCII).strip(" .") or "clip"
    return f"{stem[:100]}{suffix}"


def _analyse_file(
    clip: Path, data: bytes, name: str, classifier: EmotionClassifier, settings: VideoSettings
) -> ClipResult:
    clip.write_bytes(data)
    annotated = clip.with_name(f"{clip.stem}-annotated.mp4")
    info = probe_video(clip)
    limit = frame_limit(info)
    expected = _expected_frames(info, limit)
    progress = st.progress(0.0, text="Analysing the clip...")
    records: list[FaceRecord] = []
    times: list[float] = []  # each analysed frame's own time: durations follow the clip's pace
    report = DecodeReport()
    try:
        for result in analyze_video(
            clip,
            classifier,
            settings,
            annotated_path=annotated,
            max_seconds=MAX_SECONDS,
            info=info,
            max_frames=limit,
            report=report,
        ):
            records.extend(result.records)  # records only: each frame is dropped once drawn into the copy
            times.append(result.time_s)
            if len(times) % PROGRESS_EVERY == 0:
                done = min(1.0, len(times) / expected) if expected else 0.0
                progress.progress(done, text=f"Analysing the clip... {len(times):,} frames, {result.time_s:.1f} s")
    finally:
        progress.empty()  # also when the clip fails partway: the error replaces the bar
    if not times:
        raise InvalidVideoError(f"{name} has no frames that could be decoded")
    interval = 1.0 / info.fps if info.fps else 0.0
    if info.duration_s is not None:
        capped = info.duration_s > MAX_SECONDS + (interval or 0.1)
    else:  # WebM recorded by a browser may not say: reaching the cap's last frame is the sign
        capped = times[-1] + 1.5 * (interval or 0.1) >= MAX_SECONDS
    work_capped = len(times) >= limit and (info.frame_count is None or info.frame_count > limit)
    return ClipResult(
        info=info,
        frames=len(times),
        analysed_s=report.end_s,
        capped=capped and not work_capped,
        frame_limit=limit if work_capped else None,
        records=records,
        summaries=summarize(records, frame_times=times, end_s=report.end_s),
        annotated_mp4=annotated.read_bytes(),
        decoding=report,
    )


def _expected_frames(info: VideoInfo, limit: int) -> int | None:
    if info.frame_count is None and not (info.duration_s and info.fps):
        return None
    total = min(limit, info.frame_count or round((info.duration_s or 0.0) * info.fps))
    return min(total, round(MAX_SECONDS * info.fps)) if info.fps else total


def clip_result(
    data: bytes, name: str, classifier: EmotionClassifier, info: ModelInfo, settings: VideoSettings
) -> ClipResult:
    """The clip's result, analysed once per file, model and settings in this session (the confidence
    threshold is one of them: it is drawn into the annotated clip)."""
    memo: dict[tuple[Any, ...], ClipResult] = st.session_state.setdefault(MEMO_KEY, {})
    key = (hashlib.sha1(data).hexdigest(), str(info.path), model_version(info.path), settings)
    if key not in memo:
        memo.clear()  # one clip's result is kept: videos are large
        with video_analysis_slot(visitor_key()):  # one clip at a time per visitor, or a warning and a stop
            memo[key] = analyse_clip(data, name, classifier, settings)
    return memo[key]


def limit_messages(result: ClipResult) -> list[str]:
    """What the page left out of a clip, and why (its length, or the size of its frames)."""
    info = result.info
    messages = []
    if result.capped:
        length = f"is {info.duration_s:.0f} s long" if info.duration_s else "is longer than that"
        messages.append(
            f"The clip {length}; the first {MAX_SECONDS:.0f} s were analysed."
            + (" The Batch page analyses whole clips." if is_admin() else "")
        )
    if result.frame_limit is not None:
        messages.append(
            f"The clip's frames are {info.width}x{info.height} ({info.width * info.height / 1e6:.1f} megapixels): "
            f"the page analyses up to {result.frame_limit:,} frames of that size, the first "
            f"{result.analysed_s:.1f} s here. Scale the clip down to analyse more of it"
            + (", or use the Batch page, which analyses whole clips." if is_admin() else ".")
        )
    return messages


def summary_rows(summaries: list[FaceSummary]) -> list[dict[str, Any]]:
    rows = []
    for summary in summaries:
        row: dict[str, Any] = {
            "face": f"#{summary.face}",
            "on screen": f"{summary.first_s:.1f}-{summary.last_s:.1f} s",
            "mostly": summary.dominant,
        }
        for label in [*EMOTIONS, UNCERTAIN]:
            row[label] = round(summary.seconds_by_label.get(label, 0.0), 1)
        rows.append(row)
    return rows


def results_ui(result: ClipResult, name: str) -> None:
    info = result.info
    stem = file_stem(name, "clip")
    damage = result.decoding.warning()
    if damage:
        st.warning(f"{damage[0].upper()}{damage[1:]}.", icon=":material/broken_image:")
    for message in limit_messages(result):
        st.warning(message, icon=":material/content_cut:")
    faces, frames, seconds = st.columns(3)
    faces.metric("Faces", len(result.summaries))
    frames.metric("Frames analysed", f"{result.frames:,}")
    turned = f", turned {info.rotation}° upright" if info.rotation else ""
    seconds.metric(
        "Seconds",
        f"{result.analysed_s:.1f}",
        help=f"{info.width}x{info.height}, {result.frames / max(result.analysed_s, 1e-9):.1f} fps on average{turned}",
    )
    video_column, summary_column = st.columns([3, 2], gap="large")
    with video_column:
        st.video(result.annotated_mp4, format="video/mp4")
        st.download_button(
            "Annotated video (MP4)",
            data=result.annotated_mp4,
            file_name=f"{stem}-annotated.mp4",
            mime="video/mp4",
            icon=":material/download:",
            on_click="ignore",
        )
    with summary_column:
        if not result.summaries:
            st.info("No face was found in the clip. Try a smaller *Smallest face* in the sidebar.")
        else:
            st.markdown("**Time in each emotion**")
            st.plotly_chart(time_by_emotion_figure(result.summaries), config=CHART_CONFIG)
    if result.summaries:
        st.markdown("**Each face's emotion through the clip**")
        st.plotly_chart(clip_timeline_figure(result.records, result.analysed_s), config=CHART_CONFIG)
        st.dataframe(
            summary_rows(result.summaries),
            hide_index=True,
            width="stretch",
            column_config={
                label: st.column_config.NumberColumn(label, format="%.1f s", help=f"Seconds labelled {label}")
                for label in [*EMOTIONS, UNCERTAIN]
            },
        )
    csv_column, json_column = st.columns(2)
    csv_column.download_button(
        "Every face in every frame (CSV)",
        data=records_to_csv(result.records),
        file_name=f"{stem}-faces.csv",
        mime="text/csv",
        icon=":material/table:",
        on_click="ignore",
        disabled=not result.records,
        width="stretch",
    )
    json_column.download_button(
        "Summary and records (JSON)",
        data=records_to_json(result.records, result.summaries, info, result.decoding),
        file_name=f"{stem}-faces.json",
        mime="application/json",
        icon=":material/data_object:",
        on_click="ignore",
        disabled=not result.records,
        width="stretch",
    )


def batch_link_ui() -> None:
    """One line for an admin: clips longer than the cap go to the Batch page (visitors cannot run jobs)."""
    if not is_admin():
        return
    label = f"Clips longer than {MAX_SECONDS:.0f} s: the Batch page analyses them whole, in the background."
    try:
        st.page_link("views/batch.py", label=label, icon=":material/folder_copy:")
    except StreamlitAPIException:  # this page run on its own (tests), without the app's navigation
        st.markdown(label)


def main() -> None:
    st.title("Video")
    st.write(
        "Upload a clip: every face is found and followed through it, each with its emotion over time. "
        "You get the annotated video, a timeline per face, the time each face spent in each emotion, "
        "and every record as CSV or JSON."
    )
    batch_link_ui()
    info = model_picker_ui("video")
    settings = settings_ui()
    limit_mb = int(st.get_option("server.maxUploadSize"))
    uploaded = st.file_uploader(
        "Clip",
        type=list(VIDEO_SUFFIXES),
        key="video_upload",
        help=f"{upload_types_text(VIDEO_SUFFIXES)}, up to {limit_mb} MB. The first {MAX_SECONDS:.0f} s are analysed.",
    )
    if uploaded is None:
        model_caption_ui(info)
        st.info(
            f"Add a clip to start (up to {limit_mb} MB; the first {MAX_SECONDS:.0f} seconds are analysed).",
            icon=":material/movie:",
        )
        st.stop()
    classifier, info = classifier_or_stop(info)
    model_caption_ui(info)
    or_stop(lambda: check_detector(settings.preset), "the face detector")  # a clear error, not a traceback
    name = escape_markdown(printable(uploaded.name))
    try:
        result = clip_result(uploaded.getvalue(), uploaded.name, classifier, info, settings)
    except FerError as error:  # the clip cannot be read (corrupt, no video stream, unknown codec, too large)
        st.error(f"Could not use **{name}**: {escape_markdown(printable(str(error)))}.", icon=":material/broken_image:")
        st.stop()
    except ClipStorageError as error:  # the server's side: a full or unwritable temporary folder
        st.error(f"Could not analyse **{name}**: {error}.", icon=":material/error:")
        st.stop()
    st.markdown(f"#### {name}")
    results_ui(result, uploaded.name)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
