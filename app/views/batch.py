"""Batch: a folder of photos and clips (or uploaded files, or a zip) analysed by ``python -m fer_core batch``
in the background, with a per-file table, the overall emotion distribution, each clip's timeline, the
errors, and the tables as Parquet or CSV.

The job runs as its own process (fer_core.batch_jobs), one at a time; this page only reads the job
folders, so a reload or a second tab finds a running job again, and Stop and Resume work as on the
Training page. Jobs are kept in the jobs folder beside the runs, listed, reopened and deleted here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
import streamlit as st

from app.access import admin_only_note, is_admin, require_admin
from app.charts.batch import emotion_distribution_figure, video_timeline_figure
from app.format import CHART_CONFIG, PERCENT_FORMAT, BadgeColor, duration_text, plural
from app.model_picker import detection_ui, model_caption_ui, model_picker_ui, smoothing_ui
from app.state import cached_batch_tables, confidence_threshold_ui, escape_markdown, printable
from fer_core import batch_jobs
from fer_core.batch import PARTS_DIR, SHARE_COLUMNS, STOP_FILE, BatchError, BatchSettings, JobRecord
from fer_core.batch_jobs import Job
from fer_core.detect import PHOTO_PRESET
from fer_core.errors import FerError
from fer_core.labels import EMOTIONS, UNCERTAIN
from fer_core.model_store import ModelInfo
from fer_core.records import RecordError
from fer_core.settings import allowed_data_roots, is_allowed_data_path

REFRESH_S = 2.0  # while a job runs
IDLE_REFRESH_S = 10.0  # otherwise: notices a job started from another tab
FOLDER_INPUT = "A folder under the data roots"
UPLOAD_INPUT = "Upload files or a zip"
EVERY_FRAME = "Every frame"
EVERY_NTH = "Every Nth frame"
AT_MOST_FPS = "At most N frames a second"
OPENED_JOB_KEY = "batch_opened_job"
LIVE_KEY = "batch_live_key"
FRAGMENT_RAN_KEY = "batch_fragment_ran"
STATE_BADGES: dict[str, BadgeColor] = {
    "starting": "gray",
    "running": "blue",
    "finished": "green",
    "stopped": "orange",
    "interrupted": "orange",
    "failed": "red",
}
LABELS = (*EMOTIONS, UNCERTAIN)
SORT_COLUMNS = {
    "File": "file",
    "Status": "status",
    "Dominant emotion": "dominant",
    "Faces": "faces",
    "Frames analysed": "frames",
    **{f"Share of {label}": f"share_{label}" for label in LABELS},
}


# ---------------------------------------------------------------- settings and input


def settings_ui(info: ModelInfo) -> BatchSettings | None:
    """The sidebar's settings as BatchSettings (None, with an st.error, when they do not fit together)."""
    with st.sidebar:
        st.subheader("Batch")
        threshold = confidence_threshold_ui("batch_threshold")
        smoothing = smoothing_ui("batch")
        sampling = st.selectbox(
            "Video frames",
            [EVERY_FRAME, EVERY_NTH, AT_MOST_FPS],
            key="batch_sampling",
            help="Analysing fewer frames of long clips is faster; a face's emotion rarely changes within a fraction of a second.",
        )
        every, fps = 1, None
        if sampling == EVERY_NTH:
            every = int(st.number_input("N", min_value=2, max_value=1000, value=5, key="batch_every"))
        elif sampling == AT_MOST_FPS:
            fps = float(st.number_input("Frames a second", min_value=0.1, max_value=120.0, value=5.0, key="batch_fps"))
    preset = detection_ui("batch", PHOTO_PRESET)
    try:
        return BatchSettings(
            model=str(info.path),
            detector=preset.detector,
            # The photo preset's own smallest face means "each preset's own" (photos 40, video 48 pixels).
            min_face=None if preset.min_face_size == PHOTO_PRESET.min_face_size else preset.min_face_size,
            align=preset.align,
            threshold=threshold,
            smoothing=smoothing,
            every=every,
            fps=fps,
        )
    except BatchError as error:
        st.error(f"These settings cannot be used: {error}.")
        return None


def workers_ui() -> int:
    cores = os.cpu_count() or 1
    return int(
        st.number_input(
            "Workers",
            min_value=1,
            max_value=max(1, cores),
            value=max(1, cores),
            key="batch_workers",
            help="Processes that analyse files side by side, each with its own copy of the model. "
            f"This machine has {plural(cores, 'core')}.",
        )
    )


def folder_problem(typed: str) -> str | None:
    """Why a typed folder cannot be analysed, or None."""
    roots = ", ".join(str(root) for root in allowed_data_roots())
    if "\x00" in typed:
        return (
            "That location contains a NUL character (\\x00), which no folder name can hold. Type it again, without it."
        )
    if not is_allowed_data_path(typed):
        return f"{typed} is outside the folders this app may read. Allowed: {roots}. Set FER_DATA_ROOTS to change that."
    path = Path(typed).expanduser()
    if not path.exists():
        return f"{typed} does not exist. Type a folder under {roots}."
    if not path.is_dir():
        return f"{typed} is a file, not a folder. Type the folder that holds it."
    return None


def input_ui() -> tuple[str, Any]:
    """The input: ``("folder", path)`` or ``("upload", files)``; the value is None until there is one."""
    choice = st.radio("Input", [FOLDER_INPUT, UPLOAD_INPUT], key="batch_input", horizontal=True)
    if choice == FOLDER_INPUT:
        roots = ", ".join(str(root) for root in allowed_data_roots())
        typed = st.text_input(
            "Folder",
            key="batch_folder",
            placeholder=str(allowed_data_roots()[0]) if allowed_data_roots() else "/data/sessions",
            help=f"Every photo and clip in it and its subfolders (hidden files skipped). Allowed under: {roots}",
        ).strip()
        if not typed:
            st.caption(f"Type a folder under {roots}.")
            return "folder", None
        problem = folder_problem(typed)
        if problem:
            st.error(printable(problem), icon=":material/folder_off:")
            return "folder", None
        return "folder", str(Path(typed).expanduser())
    limit_mb = int(st.get_option("server.maxUploadSize"))
    uploads = st.file_uploader(
        "Photos, clips or a zip",
        accept_multiple_files=True,
        key="batch_uploads",
        help=f"Up to {limit_mb} MB a file. A zip is extracted into the job's own folder (up to "
        f"{batch_jobs.MAX_UPLOAD_FILES:,} files, {batch_jobs.MAX_UPLOAD_BYTES / 1024**3:.0f} GB).",
    )
    return "upload", uploads or None


def new_job_ui(info: ModelInfo, settings: BatchSettings | None, busy: Job | None) -> None:
    kind, value = input_ui()
    workers = workers_ui()
    model_caption_ui(info)
    why_not = (
        f"Job {busy.name} is running: one job at a time."
        if busy
        else "Choose the input first."
        if value is None
        else "Fix the settings first."
        if settings is None
        else None
    )
    if not st.button(
        "Start", type="primary", icon=":material/play_arrow:", key="batch_start", disabled=bool(why_not), help=why_not
    ):
        return
    require_admin("start batch jobs")  # refused on the server too, whatever the browser sent
    assert settings is not None and value is not None  # the button is disabled otherwise
    label = Path(value).name if kind == "folder" else Path(value[0].name).stem if len(value) == 1 else "upload"
    job = batch_jobs.new_job(label)
    try:
        if kind == "upload":
            batch_jobs.save_uploads(((upload.name, upload.getvalue()) for upload in value), job.inputs_dir)
            inputs = [str(job.inputs_dir)]
        else:
            inputs = [value]
        batch_jobs.start_job(job, inputs, settings, workers=workers)
    except (FerError, OSError) as error:
        shutil.rmtree(job.path, ignore_errors=True)  # our own new folder: nothing of the user's is in it
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        st.error(printable(f"Could not start the job: {reason}"), icon=":material/error:")
        return
    st.session_state[OPENED_JOB_KEY] = job.name
    st.rerun()


# ---------------------------------------------------------------- progress


def version(job: Job, state: str) -> tuple[Any, ...]:
    """Changes when the results do: a finished unit (the parts folder's modification time) or the job's
    state (its end writes the final tables), not at each heartbeat of job.json."""
    try:
        stamp = (job.results / PARTS_DIR).stat().st_mtime_ns
    except OSError:
        stamp = 0
    return (stamp, state)


class Reading(NamedTuple):
    """One job as read once per refresh: the jobs table and the opened job are drawn from it, so they agree."""

    status: str
    record: JobRecord | None
    problem: str | None  # why job.json cannot be read


def read_job_state(job: Job) -> Reading:
    status = job.status()
    try:
        return Reading(status, job.record(), None)
    except RecordError as error:
        return Reading(status, None, str(error))


def progress_ui(job: Job, status: str, record: JobRecord | None) -> None:
    if status == "starting":
        st.progress(0.0, text="Starting: listing the files and loading the model...")
    elif status == "running" and record is not None:
        eta = f" · about {duration_text(record.eta_s)} left" if record.eta_s is not None else ""
        speed = f" · {record.frames_per_s:,.0f} frames/s" if record.frames_per_s else ""
        st.progress(
            record.progress,
            text=f"{record.files_done:,} / {record.files_total:,} files · {record.progress:.0%}{speed}{eta}",
        )
    elif status == "running":
        st.progress(0.0, text="Running...")
    if record is not None:
        files, faces, errors, elapsed = st.columns(4)
        files.metric("Files", f"{record.files_done:,} / {record.files_total:,}")
        faces.metric(
            "Faces found", f"{record.faces:,}", help="One for each face in a photo or an analysed video frame."
        )
        errors.metric("Errors", f"{record.files_errors:,}")
        elapsed.metric("Time", duration_text(record.elapsed_s))
    if status in batch_jobs.ACTIVE_STATES:
        stop_ui(job)
    elif status == "finished" and record is not None:
        st.success(
            f"Finished in {duration_text(record.elapsed_s)}: {plural(record.files_total, 'file')}, "
            f"{plural(record.faces, 'face')}, {plural(record.files_errors, 'file')} with errors.",
            icon=":material/check_circle:",
        )
    elif status == "stopped":
        st.warning("Stopped. What was analysed is kept; Resume carries on from there.", icon=":material/stop_circle:")
        resume_ui(job)
    elif status == "interrupted":
        st.warning(
            "The job's process ended without finishing (it was killed, or the server restarted). "
            "What was analysed is kept; Resume carries on from there.",
            icon=":material/warning:",
        )
        resume_ui(job)
    elif status == "failed":
        reason = (record.error if record is not None else None) or job.log_error() or "the command ended at once"
        st.error(printable(f"This job failed: {reason}"), icon=":material/error:")
        st.caption(f"The job's log is in `{job.path / batch_jobs.LOG_FILE}`.")
        resume_ui(job)
    if record is not None and record.message:
        st.info(printable(record.message), icon=":material/info:")


def stop_ui(job: Job) -> None:
    if (job.results / STOP_FILE).exists():
        st.warning("Stopping: the files in flight are dropped...", icon=":material/pending:")
    elif is_admin() and st.button(
        "Stop",
        icon=":material/stop_circle:",
        key=f"batch-stop-{job.name}",
        help="Stop the job; Resume carries on later.",
    ):
        require_admin("stop batch jobs")
        batch_jobs.stop_job(job)
        st.rerun()


def resume_ui(job: Job) -> None:
    if not is_admin() or not st.button(
        "Resume", icon=":material/resume:", key=f"batch-resume-{job.name}", help="Analyse the files not done yet."
    ):
        return
    require_admin("resume batch jobs")
    try:
        batch_jobs.resume_job(job)
    except (FerError, OSError) as error:
        st.error(printable(f"Could not resume: {error}"))
        return
    st.rerun()


# ---------------------------------------------------------------- results


def file_table(
    files: pd.DataFrame, statuses: Sequence[str], emotions: Sequence[str], sort: str, descending: bool
) -> pd.DataFrame:
    """The files table filtered by status and dominant emotion, sorted, shares as percent."""
    shown = files
    if statuses:
        shown = shown[shown["status"].isin(statuses)]
    if emotions:
        shown = shown[shown["dominant"].isin(emotions)]
    shown = shown.sort_values(SORT_COLUMNS[sort], ascending=not descending, na_position="last", kind="stable")
    columns = [
        "file",
        "kind",
        "status",
        "faces",
        "frames",
        "duration_s",
        "dominant",
        *shares_present(files),
        "warning",
        "error",
    ]
    table = shown[columns].copy()
    for column in shares_present(files):
        table[column] = table[column] * 100
    return table.reset_index(drop=True)


def shares_present(table: pd.DataFrame) -> list[str]:
    """The share columns of the labels some row has (a table of 8 empty share columns is hard to read)."""
    return [column for column in SHARE_COLUMNS if (table[column].fillna(0) > 0).any()]


def short_name(name: str, base: str | None) -> str:
    """A file's name relative to the job's one input folder (the full path is in the downloads)."""
    if base and name.startswith(base.rstrip(os.sep) + os.sep):
        return name[len(base.rstrip(os.sep)) + 1 :]
    return name


def input_folder(job: Job) -> str | None:
    """The job's input folder when it read one folder (or uploads), else None."""
    inputs = job.launch().get("inputs") or []
    return str(inputs[0]) if len(inputs) == 1 and Path(str(inputs[0])).is_dir() else None


def files_tab(files: pd.DataFrame) -> None:
    if files.empty:
        st.info("No file is done yet.")
        return
    status_column, emotion_column, sort_column, order_column = st.columns([2, 3, 2, 1.4], vertical_alignment="bottom")
    statuses = status_column.multiselect("Status", ["ok", "error"], key="batch_filter_status")
    emotions = emotion_column.multiselect("Dominant emotion", list(LABELS), key="batch_filter_emotion")
    sort = sort_column.selectbox("Sort by", list(SORT_COLUMNS), key="batch_sort")
    descending = order_column.toggle("Descending", key="batch_descending")
    table = file_table(files, statuses, emotions, sort, descending)
    st.caption(f"{plural(len(table), 'file')} of {len(files):,}.")
    st.dataframe(
        table,
        key="batch_files_table",
        hide_index=True,
        width="stretch",
        column_config={
            "faces": st.column_config.NumberColumn(help="Photos: the faces found. Clips: the faces followed (tracks)."),
            "frames": st.column_config.NumberColumn(help="Frames analysed (a photo: 1)."),
            "duration_s": st.column_config.NumberColumn("duration", format="%.1f s"),
            **{
                column: st.column_config.ProgressColumn(
                    column.removeprefix("share_"), format=PERCENT_FORMAT, min_value=0, max_value=100, width="small"
                )
                for column in SHARE_COLUMNS
            },
        },
    )


def emotions_tab(faces: pd.DataFrame, files: pd.DataFrame) -> None:
    if faces.empty:
        st.info("No face found yet." if not files.empty else "No file is done yet.")
        return
    counts = faces["label"].value_counts().to_dict()
    st.caption(
        f"{plural(len(faces), 'face')} in {plural(int((files['faces'] > 0).sum()), 'file')}: every face in every photo "
        "and every analysed video frame."
    )
    st.plotly_chart(emotion_distribution_figure(counts), key="batch-distribution", config=CHART_CONFIG)


def timeline_tab(faces: pd.DataFrame, files: pd.DataFrame, tracks: pd.DataFrame, base: str | None) -> None:
    videos = files[(files["kind"] == "video") & (files["faces"] > 0)]
    if videos.empty:
        st.info("No clip with faces in this job (yet).")
        return
    names = list(videos["file"])
    picked = st.selectbox("Clip", names, key="batch_clip", format_func=lambda name: printable(short_name(name, base)))
    rows = faces[faces["file"] == picked].sort_values(["segment", "face", "time_s"])
    segments = int(videos.loc[videos["file"] == picked, "segments"].iloc[0] or 1)
    names_of = [
        f"segment {segment + 1} face {face}" if segments > 1 else f"face {face}"
        for segment, face in zip(rows["segment"], rows["face"], strict=True)
    ]
    duration = videos.loc[videos["file"] == picked, "duration_s"].iloc[0]
    st.plotly_chart(
        video_timeline_figure(
            [float(value) for value in rows["time_s"]],
            names_of,
            [str(value) for value in rows["label"]],
            None if pd.isna(duration) else float(duration),
        ),
        key="batch-timeline",
        config=CHART_CONFIG,
    )
    if segments > 1:
        st.caption("Long clips are cut into segments analysed apart: face numbers restart in each segment.")
    clip_tracks = tracks[tracks["file"] == picked]
    if not clip_tracks.empty:
        shares = shares_present(clip_tracks)
        columns = ["segment"] * (segments > 1) + ["face", "frames", "first_s", "last_s", "dominant", *shares]
        shown = clip_tracks[columns].copy()
        if segments > 1:
            shown["segment"] += 1  # as the timeline numbers them
        for column in shares:
            shown[column] = shown[column] * 100
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={
                "first_s": st.column_config.NumberColumn("from", format="%.1f s"),
                "last_s": st.column_config.NumberColumn("to", format="%.1f s"),
                **{
                    column: st.column_config.ProgressColumn(
                        column.removeprefix("share_"), format=PERCENT_FORMAT, min_value=0, max_value=100, width="small"
                    )
                    for column in shares
                },
            },
        )


def errors_tab(files: pd.DataFrame) -> None:
    errors = files[files["status"] == "error"]
    warnings = files[files["warning"].notna() & (files["status"] != "error")]
    if errors.empty and warnings.empty:
        st.success("No file had an error.")
        return
    if not errors.empty:
        st.caption(f"{plural(len(errors), 'file')} could not be analysed; the rest of the job went on.")
        st.dataframe(errors[["file", "kind", "error"]], key="batch_errors_table", hide_index=True, width="stretch")
    if not warnings.empty:
        st.caption(f"{plural(len(warnings), 'file')} had damaged data that still decoded:")
        st.dataframe(warnings[["file", "kind", "warning"]], hide_index=True, width="stretch")


def as_parquet(frame: pd.DataFrame) -> Callable[[], bytes]:
    return lambda: frame.to_parquet(index=False)


def as_csv(frame: pd.DataFrame) -> Callable[[], bytes]:
    return lambda: frame.to_csv(index=False).encode("utf-8")


def downloads_tab(job: Job, files: pd.DataFrame, faces: pd.DataFrame, tracks: pd.DataFrame) -> None:
    st.caption(
        "Every face (one row per face in a photo or an analysed frame), every file, and every face track. "
        f"The job's folder holds them too: `{printable(str(job.results))}`."
    )
    for title, name, frame in (("Faces", "faces", faces), ("Files", "files", files), ("Tracks", "tracks", tracks)):
        label, parquet, csv = st.columns([2, 2, 2], vertical_alignment="center")
        label.markdown(f"**{title}** ({len(frame):,} rows)")
        parquet.download_button(
            "Parquet",
            data=as_parquet(frame),
            file_name=f"{job.name}-{name}.parquet",
            mime="application/vnd.apache.parquet",
            icon=":material/download:",
            key=f"batch-download-{name}-parquet",
            on_click="ignore",
            disabled=frame.empty,
            width="stretch",
        )
        csv.download_button(
            "CSV",
            data=as_csv(frame),
            file_name=f"{job.name}-{name}.csv",
            mime="text/csv",
            icon=":material/table:",
            key=f"batch-download-{name}-csv",
            on_click="ignore",
            disabled=frame.empty,
            width="stretch",
        )


def results_ui(job: Job, record: JobRecord) -> None:
    try:
        files, faces, tracks = cached_batch_tables(str(job.results), version(job, record.state))
    except (FerError, OSError, ValueError) as error:
        st.error(printable(f"The results of job {job.name} cannot be read: {error}"), icon=":material/error:")
        return
    errors = int((files["status"] == "error").sum()) if not files.empty else 0
    base = input_folder(job)
    if base:
        st.caption(f"Files in `{printable(base)}`:" if base != str(job.inputs_dir) else "Uploaded files:")
    shown_files = files.assign(file=[printable(short_name(name, base)) for name in files["file"]])
    tabs = st.tabs(["Files", "Emotions", "Video timeline", f"Errors ({errors})", "Downloads"])
    with tabs[0]:
        files_tab(shown_files)
    with tabs[1]:
        emotions_tab(faces, files)
    with tabs[2]:
        timeline_tab(faces, files, tracks, base)
    with tabs[3]:
        errors_tab(shown_files)
    with tabs[4]:
        downloads_tab(job, files, faces, tracks)


# ---------------------------------------------------------------- jobs


def jobs_table(jobs: Sequence[Job], readings: dict[str, Reading]) -> pd.DataFrame:
    rows = []
    for job in jobs:
        _, record, problem = readings[job.name]
        launch = job.launch()
        inputs = launch.get("inputs") or []
        rows.append(
            {
                "Job": job.name,
                "Status": f"unreadable: {problem}" if problem else readings[job.name].status,
                "Input": "uploaded files" if inputs == [str(job.inputs_dir)] else ", ".join(map(str, inputs)),
                "Files": record.files_total if record else None,
                "Faces found": record.faces if record else None,
                "Errors": record.files_errors if record else None,
                "Started": datetime.fromtimestamp(launch["launched_at"]) if launch.get("launched_at") else None,
            }
        )
    return pd.DataFrame(rows)


def delete_ui(job: Job, status: str) -> None:
    if not is_admin():
        return
    why_not = "A running job cannot be deleted: stop it first." if status in batch_jobs.ACTIVE_STATES else ""
    key = f"batch-confirm-delete-{job.name}"
    if not st.session_state.get(key):
        if st.button(
            "Delete job",
            icon=":material/delete:",
            key=f"batch-delete-{job.name}",
            disabled=bool(why_not),
            help=why_not or "Delete this job's folder: its results and any uploaded files (never a folder it read).",
        ):
            st.session_state[key] = True
            st.rerun()
        return
    st.warning(
        f"Delete job **{escape_markdown(job.name)}**, its results and its uploaded files? This cannot be undone."
    )
    yes, no = st.columns(2)
    if yes.button("Delete for good", type="primary", key=f"batch-delete-yes-{job.name}", width="stretch"):
        st.session_state.pop(key, None)
        require_admin("delete batch jobs")
        try:
            batch_jobs.delete_job(job)
        except (FerError, OSError) as error:
            st.error(printable(f"Could not delete: {error}"))
            return
        st.session_state.pop(OPENED_JOB_KEY, None)
        st.toast(f"Deleted job {job.name}.", icon=":material/delete:")
        st.rerun()
    if no.button("Keep it", key=f"batch-delete-no-{job.name}", width="stretch"):
        st.session_state.pop(key, None)
        st.rerun()


def job_ui(job: Job, reading: Reading) -> None:
    status, record, problem = reading
    with st.container(border=True):
        title, badge = st.columns([5, 1], vertical_alignment="center")
        title.subheader(f"Job {job.name}")
        with badge:
            st.badge(status, color=STATE_BADGES.get(status, "gray"))
        if problem:
            st.error(printable(f"This job cannot be read: {problem}"), icon=":material/error:")
        else:
            progress_ui(job, status, record)
        if record is not None:
            results_ui(job, record)
        delete_ui(job, status)


def batch_page(info: ModelInfo, settings: BatchSettings | None, jobs_dir: Path) -> None:
    """The page body, refreshed as one fragment while a job runs."""
    jobs = batch_jobs.list_jobs(jobs_dir)
    readings = {job.name: read_job_state(job) for job in jobs}
    busy = next((job for job in jobs if readings[job.name].status in batch_jobs.ACTIVE_STATES), None)
    live = busy.name if busy else None
    if live != st.session_state.get(LIVE_KEY):
        st.session_state[LIVE_KEY] = live
        if st.session_state.get(FRAGMENT_RAN_KEY):
            st.rerun()  # a job started or ended: the refresh interval changes too
    st.session_state[FRAGMENT_RAN_KEY] = True
    if not is_admin():  # jobs hold other people's files and server paths: admins only, results included
        admin_only_note("run batch jobs or open their results")
        return
    with st.expander("New job", expanded=not jobs, icon=":material/add_circle:"):
        new_job_ui(info, settings, busy)
    st.header("Jobs")
    if not jobs:
        st.info(f"No jobs yet in `{printable(str(jobs_dir))}`. Choose an input above and press **Start**.")
        return
    st.dataframe(jobs_table(jobs, readings), key="batch_jobs_table", hide_index=True, width="stretch")
    names = [job.name for job in jobs]
    if st.session_state.get(OPENED_JOB_KEY) not in names:  # none yet, or deleted: the running job, else the newest
        st.session_state[OPENED_JOB_KEY] = busy.name if busy else names[0]
    opened = st.selectbox("Open job", names, key=OPENED_JOB_KEY)
    job = jobs[names.index(opened)]
    job_ui(job, readings[job.name])


def main() -> None:
    st.title("Batch")
    st.caption(
        "Analyse a whole folder of photos and clips of any length, or files you upload, in the background: "
        "a table per file, the emotions over all faces, each clip's timeline, and the results as Parquet or CSV. "
        "The same as `python -m fer_core batch`."
    )
    info = model_picker_ui("batch")
    settings = settings_ui(info)
    jobs_dir = batch_jobs.default_jobs_dir()
    st.session_state[FRAGMENT_RAN_KEY] = False
    refresh = REFRESH_S if batch_jobs.active_job(jobs_dir) is not None else IDLE_REFRESH_S
    st.fragment(run_every=refresh)(batch_page)(info, settings, jobs_dir)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
