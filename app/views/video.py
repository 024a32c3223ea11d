"""Video: upload a clip; every face is found, followed and classified through it (``fer_core.video``).

The result is the annotated clip to play and download, each face's emotion over time, the time each
face spent in each emotion, and the records as CSV and JSON: what ``python -m fer_core video`` gives.
A clip is analysed once per file and settings (the result is kept for the session).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import streamlit as st

from app.charts.live import clip_timeline_figure, time_by_emotion_figure
from app.models import (
    classifier_or_stop,
    detection_ui,
    model_caption_ui,
    model_picker_ui,
    model_version,
    smoothing_ui,
)
from app.state import cached_detector, confidence_threshold_ui, escape_markdown, or_stop, printable
from fer_core.detect import VIDEO_PRESET
from fer_core.errors import FerError, InvalidVideoError
from fer_core.inference import EmotionClassifier, ModelInfo
from fer_core.labels import EMOTIONS, UNCERTAIN
from fer_core.video import (
    VIDEO_SUFFIXES,
    FaceRecord,
    FaceSummary,
    VideoInfo,
    VideoSettings,
    analyze_video,
    probe_video,
    records_to_csv,
    records_to_json,
    summarize,
)

MAX_SECONDS = 60.0  # longer clips are analysed up to here (about a minute of CPU per minute of 640x480 video)
MEMO_KEY = "video_results"
PROGRESS_EVERY = 5  # frames between progress-bar updates


class ClipResult(NamedTuple):
    info: VideoInfo
    frames: int  # frames analysed
    analysed_s: float  # seconds of the clip analysed
    capped: bool  # the clip went on past MAX_SECONDS
    records: list[FaceRecord]
    summaries: list[FaceSummary]
    annotated_mp4: bytes


def settings_ui() -> VideoSettings:
    with st.sidebar:
        st.subheader("Video")
        threshold = confidence_threshold_ui("video_threshold")
        smoothing = smoothing_ui("video")
    preset = detection_ui("video", VIDEO_PRESET)
    return VideoSettings(preset=preset, smoothing=smoothing, threshold=threshold)


def analyse_clip(data: bytes, name: str, classifier: EmotionClassifier, settings: VideoSettings) -> ClipResult:
    """Analyse the uploaded bytes (written to a temporary file for FFmpeg), with a progress bar."""
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in VIDEO_SUFFIXES else ".mp4"
    with tempfile.TemporaryDirectory(prefix="fer-video-") as folder:
        clip = Path(folder) / f"clip{suffix}"
        clip.write_bytes(data)
        annotated = Path(folder) / "annotated.mp4"
        info = probe_video(clip)
        expected = _expected_frames(info)
        progress = st.progress(0.0, text="Analysing the clip...")
        records: list[FaceRecord] = []
        frames = 0
        last_time = 0.0
        for result in analyze_video(
            clip, classifier, settings, annotated_path=annotated, max_seconds=MAX_SECONDS, info=info
        ):
            records.extend(result.records)
            frames += 1
            last_time = result.time_s
            if frames % PROGRESS_EVERY == 0:
                done = min(1.0, frames / expected) if expected else 0.0
                progress.progress(done, text=f"Analysing the clip... {frames:,} frames, {last_time:.1f} s")
        progress.empty()
        if frames == 0:
            raise InvalidVideoError(f"{name} has no frames that could be decoded")
        interval = 1.0 / info.fps if info.fps else 0.0
        if info.duration_s is not None:
            capped = info.duration_s > MAX_SECONDS + (interval or 0.1)
        else:  # WebM recorded by a browser may not say: reaching the cap's last frame is the sign
            capped = last_time + 1.5 * (interval or 0.1) >= MAX_SECONDS
        return ClipResult(
            info=info,
            frames=frames,
            analysed_s=frames * interval if interval else last_time,
            capped=capped,
            records=records,
            summaries=summarize(records, interval),
            annotated_mp4=annotated.read_bytes(),
        )


def _expected_frames(info: VideoInfo) -> int | None:
    if info.frame_count is None and not (info.duration_s and info.fps):
        return None
    total = info.frame_count or round((info.duration_s or 0.0) * info.fps)
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
        memo[key] = analyse_clip(data, name, classifier, settings)
    return memo[key]


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
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem) or "clip"
    if result.capped:
        length = f"is {info.duration_s:.0f} s long" if info.duration_s else "is longer than that"
        st.warning(
            f"The clip {length}; the first {MAX_SECONDS:.0f} s were analysed. "
            "`python -m fer_core video` analyses whole clips.",
            icon=":material/content_cut:",
        )
    faces, frames, seconds = st.columns(3)
    faces.metric("Faces", len(result.summaries))
    frames.metric("Frames analysed", f"{result.frames:,}")
    seconds.metric("Seconds", f"{result.analysed_s:.1f}", help=f"{info.width}x{info.height} at {info.fps:.1f} fps")
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
            st.plotly_chart(time_by_emotion_figure(result.summaries), config={"displayModeBar": False})
    if result.summaries:
        st.markdown("**Each face's emotion through the clip**")
        st.plotly_chart(clip_timeline_figure(result.records, result.analysed_s), config={"displayModeBar": False})
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
        data=records_to_json(result.records, result.summaries, info),
        file_name=f"{stem}-faces.json",
        mime="application/json",
        icon=":material/data_object:",
        on_click="ignore",
        disabled=not result.records,
        width="stretch",
    )


def main() -> None:
    st.title("Video")
    st.write(
        "Upload a clip: every face is found and followed through it, each with its emotion over time. "
        "You get the annotated video, a timeline per face, the time each face spent in each emotion, "
        "and every record as CSV or JSON."
    )
    info = model_picker_ui("video")
    settings = settings_ui()
    limit_mb = int(st.get_option("server.maxUploadSize"))
    uploaded = st.file_uploader(
        "Clip",
        type=[suffix.lstrip(".") for suffix in VIDEO_SUFFIXES],
        key="video_upload",
        help=f"MP4, WebM, MOV, AVI or MKV, up to {limit_mb} MB. The first {MAX_SECONDS:.0f} s are analysed.",
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
    or_stop(lambda: cached_detector(settings.preset), "the face detector")  # a clear error, not a traceback
    name = escape_markdown(printable(uploaded.name))
    try:
        result = clip_result(uploaded.getvalue(), uploaded.name, classifier, info, settings)
    except FerError as error:  # the clip cannot be read (corrupt, no video stream, unknown codec)
        st.error(f"Could not use **{name}**: {printable(str(error))}.", icon=":material/broken_image:")
        st.stop()
    st.markdown(f"#### {name}")
    results_ui(result, uploaded.name)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
