"""fer_core.batch and ``python -m fer_core batch``: a small mixed folder (photos of FER2013 faces, two
short clips, three bad files) through the local and the Ray engine, resume after kill -9 and after a
stop, changed files and settings, refusals, frame sampling, segments and memory on a long clip."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT, fer2013_path

from fer_core import batch
from fer_core.batch import (
    BATCH_FACE_COLUMNS,
    FILE_COLUMNS,
    BatchError,
    BatchSettings,
    FrameSampler,
    analyze_batch,
    collect_inputs,
    read_faces,
    read_files,
    read_job,
    read_tracks,
)
from fer_core.detect import YUNET_SHA256
from fer_core.labels import EMOTIONS
from fer_core.settings import SHIPPED_MODEL_PATH
from fer_core.video import AnnotatedVideoWriter

BAD_FILES = ("notes.txt", "broken.jpg", "empty.mp4")
SEGMENT_S = 1.5  # clip_b (3 s) is cut in two: its track ids restart in the second segment
ORDER = ["file", "segment", "frame", "face"]


def face_frames(count: int) -> list[np.ndarray]:
    from photo_samples import detectable_faces, fer_faces

    fer2013 = fer2013_path()
    if fer2013 is None:
        pytest.skip("FER2013 not found: set FER2013_DIR or put it at ../shared/fer2013")
    return detectable_faces(fer_faces(fer2013), size=120, count=count)


def write_face_clip(path: Path, faces: list[np.ndarray], frames: int, fps: float = 10.0) -> Path:
    """A 320x240 clip with one FER2013 face (120 px) drifting right."""
    from photo_samples import upscale

    with AnnotatedVideoWriter(path, 320, 240, fps) as writer:
        for index in range(frames):
            frame = np.full((240, 320, 3), 110, np.uint8)
            x = 40 + (index % 60)
            frame[40:160, x : x + 120] = cv2.cvtColor(upscale(faces[index % len(faces)], 120), cv2.COLOR_GRAY2BGR)
            writer.write(frame)
    return path


def write_bad_files(folder: Path) -> None:
    (folder / "notes.txt").write_text("not a photo, not a video")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(60))  # a JPEG's first bytes, then nothing
    (folder / "empty.mp4").write_bytes(b"")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four photos (three with two faces, one 48x48 crop), two clips (2 s and 3 s at 10 fps), three bad files."""
    from photo_samples import encode, group_photo

    faces = face_frames(4)
    folder = tmp_path_factory.mktemp("mixed")
    for index in range(3):
        image, _ = group_photo(faces[index : index + 2], seed=index)
        (folder / f"photo{index}.jpg").write_bytes(encode(image, ".jpg"))
    (folder / "crop.png").write_bytes(encode(cv2.cvtColor(faces[3], cv2.COLOR_GRAY2BGR)))
    clips = folder / "clips"
    clips.mkdir()
    write_face_clip(clips / "clip_a.mp4", faces[:2], frames=20)
    write_face_clip(clips / "clip_b.mp4", faces[2:], frames=30)
    write_bad_files(folder)
    return folder


@pytest.fixture(scope="module")
def reference(mixed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mixed folder analysed once by the local engine, two workers."""
    out = tmp_path_factory.mktemp("reference") / "job"
    summary = analyze_batch([mixed], out, BatchSettings(segment_s=SEGMENT_S), workers=2)
    assert summary.state == "finished"
    return out


def sorted_faces(out: Path) -> pd.DataFrame:
    return read_faces(out).sort_values(ORDER).reset_index(drop=True)


def sorted_files(out: Path) -> pd.DataFrame:
    return read_files(out).drop(columns=["seconds"]).sort_values("file").reset_index(drop=True)


def run_cli(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fer_core", "batch", *arguments],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def start_cli(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fer_core", "batch", *arguments],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(condition: object, process: subprocess.Popen[str], what: str, limit_s: float = 240) -> None:
    """Poll ``condition`` (a callable) until it holds; fail if the process ends first (a safety limit only)."""
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        if process.poll() is not None:
            raise AssertionError(f"the job ended before {what}: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} after {limit_s} s")
        time.sleep(0.02)


def forkserver_processes() -> set[int]:
    """The processes of multiprocessing's forkserver (the local engine's workers and their server)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"multiprocessing.forkserver" in (entry / "cmdline").read_bytes():
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def finished_parts(out: Path) -> int:
    return len(list((out / "parts").glob("*.json"))) if (out / "parts").is_dir() else 0


# --- one mixed folder, every output


def test_a_mixed_folder_gives_one_face_table_a_files_table_and_a_job_record(mixed: Path, reference: Path) -> None:
    faces, files, job = read_faces(reference), read_files(reference), read_job(reference)
    assert list(faces.columns) == list(BATCH_FACE_COLUMNS)
    assert job is not None and job.state == "finished" and job.pid == os.getpid()
    assert (job.files_total, job.files_done, job.files_errors) == (9, 9, 3)
    tflite = SHIPPED_MODEL_PATH.with_suffix(".tflite")
    assert job.model_sha256 == hashlib.sha256(tflite.read_bytes()).hexdigest()
    assert job.detector_sha256 == YUNET_SHA256
    by_name = {Path(row.file).name: row for row in files.itertuples()}
    for name in BAD_FILES:
        assert by_name[name].status == "error" and by_name[name].error, name
    assert "empty" in by_name["empty.mp4"].error and "neither a photo nor a video" in by_name["notes.txt"].error
    assert "not an image" in by_name["broken.jpg"].error
    for name in ("photo0.jpg", "photo1.jpg", "photo2.jpg"):
        assert by_name[name].status == "ok" and by_name[name].faces == 2 and by_name[name].kind == "photo"
    assert by_name["crop.png"].faces == 1  # a 48x48 crop: found, or else classified whole
    clip_a, clip_b = by_name["clip_a.mp4"], by_name["clip_b.mp4"]
    assert (clip_a.kind, clip_a.frames, clip_a.segments) == ("video", 20, 2)  # 2 s in 1.5 s segments
    assert (clip_b.frames, clip_b.segments) == (30, 2)
    assert clip_b.dominant is not None and sum(
        getattr(clip_b, column) for column in batch.SHARE_COLUMNS
    ) == pytest.approx(1.0)
    video = faces[faces.kind == "video"]
    assert set(video[video.file.str.endswith("clip_b.mp4")].segment) == {0, 1}
    # track ids restart per segment: the one face is track 1 in both halves of clip_b
    assert set(video[video.file.str.endswith("clip_b.mp4")].groupby("segment").face.min()) == {1}
    photo = faces[faces.kind == "photo"]
    assert (photo.frame == 0).all() and (photo.time_s == 0).all()
    probabilities = faces[[f"p_{emotion}" for emotion in EMOTIONS]].sum(axis=1)
    assert np.allclose(probabilities, 1.0, atol=1e-3)
    tracks = read_tracks(reference)
    assert len(tracks[tracks.file.str.endswith("clip_b.mp4")]) == 2  # one track per segment
    assert set(FILE_COLUMNS) == set(files.columns)


def test_the_command_writes_csv_and_says_what_it_did(mixed: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "job"
    result = run_cli(str(mixed), "--out", str(out), "--workers", "1", "--segment-seconds", str(SEGMENT_S), "--csv")
    assert result.returncode == 0, result.stderr
    assert "finished: 6 of 9 files analysed, 3 with errors" in result.stdout
    csv_faces = pd.read_csv(out / "faces.csv")
    assert list(csv_faces.columns) == list(BATCH_FACE_COLUMNS) and len(csv_faces) == len(read_faces(reference))
    assert len(pd.read_csv(out / "files.csv")) == 9 and (out / "tracks.csv").is_file()
    pd.testing.assert_frame_equal(sorted_faces(out), sorted_faces(reference))  # 1 worker or 2: the same


# --- engines


@pytest.fixture(scope="module")
def ray_session() -> object:
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        runtime_env=batch.ray_runtime_env(),  # fer_core reaches the workers through Ray, not the disk
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


def test_the_ray_engine_gives_the_same_records_as_the_local_one(
    mixed: Path, reference: Path, tmp_path: Path, ray_session: object
) -> None:
    out = tmp_path / "ray-job"
    summary = analyze_batch([mixed], out, BatchSettings(segment_s=SEGMENT_S), workers=2, engine="ray")
    assert summary.state == "finished" and (summary.files_ok, summary.files_errors) == (6, 3)
    job = read_job(out)
    assert job is not None and job.engine == "ray" and job.startup_s > 0
    pd.testing.assert_frame_equal(sorted_faces(out), sorted_faces(reference))
    pd.testing.assert_frame_equal(sorted_files(out), sorted_files(reference))


def test_asking_for_ray_without_it_says_how_to_install_it(
    mixed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(BatchError, match=r"requirements-ray\.txt"):
        analyze_batch([mixed], tmp_path / "job", engine="ray")
    assert not (tmp_path / "job").exists()


# --- resume, stop, kill -9


def test_a_job_killed_with_sigkill_resumes_where_it_was(mixed: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "job"
    arguments = (str(mixed), "--out", str(out), "--workers", "1", "--segment-seconds", str(SEGMENT_S))
    before = forkserver_processes()
    process = start_cli(*arguments)
    wait_for(lambda: finished_parts(out) >= 1, process, "a finished part")
    workers = forkserver_processes() - before
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    deadline = time.monotonic() + 60  # a safety limit: the workers see the job gone within a second or two
    while forkserver_processes() & workers and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers and not forkserver_processes() & workers  # no orphan goes on analysing
    job = read_job(out)
    assert job is not None and job.state == "running"  # it never got to say otherwise
    assert not batch.is_job_running(out)  # but its lock went with it
    done_before = finished_parts(out)
    assert 1 <= done_before < 10 and len(read_files(out)) >= 1  # readable mid-way
    result = run_cli(*arguments)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "by an earlier run" in result.stdout
    job = read_job(out)
    assert job is not None and job.state == "finished" and job.files_skipped >= 1
    assert not list((out / "parts").glob(".*.tmp*"))
    pd.testing.assert_frame_equal(sorted_faces(out), sorted_faces(reference))


def test_sigterm_stops_the_job_cleanly_and_the_same_command_resumes_it(mixed: Path, tmp_path: Path) -> None:
    out = tmp_path / "job"
    arguments = (str(mixed), "--out", str(out), "--workers", "1", "--segment-seconds", str(SEGMENT_S))
    process = start_cli(*arguments)
    wait_for(lambda: finished_parts(out) >= 1, process, "a finished part")
    batch.request_stop(out)  # what the Batch page's Stop does: a STOP file and SIGTERM
    _, stderr = process.communicate(timeout=120)
    job = read_job(out)
    assert job is not None
    if job.state == "finished":  # the last units ended before the signal landed: nothing left to stop
        pytest.skip("the job finished before the stop arrived")
    assert process.returncode == 130 and "stopping" in stderr
    assert job.state == "stopped" and not batch.is_job_running(out) and not (out / batch.STOP_FILE).exists()
    assert run_cli(*arguments).returncode == 0
    resumed = read_job(out)
    assert resumed is not None and resumed.state == "finished" and resumed.files_done == 9


def test_a_changed_file_is_redone_and_changed_settings_redo_everything(tmp_path: Path) -> None:
    from photo_samples import encode, textured_background

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        (folder / f"scene{index}.png").write_bytes(encode(textured_background(200, 300, seed=index)))
    out = tmp_path / "job"
    updates: list[batch.BatchProgress] = []
    first = analyze_batch([folder], out, workers=1, progress=updates.append)
    assert (first.files_ok, first.files_skipped, first.message) == (3, 0, None)
    assert [update.units_done for update in updates] == sorted(update.units_done for update in updates)
    assert updates[0].state == "running" and updates[-1].state == "finished" and updates[-1].files_done == 3
    assert updates[-1].eta_s is None and any(update.last_file for update in updates)
    os.utime(folder / "scene1.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    second = analyze_batch([folder], out, workers=1)
    assert second.files_skipped == 2 and "1 changed since the last run" in (second.message or "")
    third = analyze_batch([folder], out, BatchSettings(threshold=0.7), workers=1)
    assert third.files_skipped == 0 and "the settings (threshold) changed since the last run: redoing all 3 files" in (
        third.message or ""
    )
    assert read_job(out).settings.threshold == 0.7  # type: ignore[union-attr]


# --- refusals and bad input


def test_a_job_resumed_from_parquet_parts_of_an_older_version_gives_the_same_faces(
    mixed: Path, reference: Path, tmp_path: Path
) -> None:
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    out = tmp_path / "job"

    def stop_after_two(update: batch.BatchProgress) -> None:
        if update.units_done >= 2:
            (out / batch.STOP_FILE).touch()

    analyze_batch([mixed], out, BatchSettings(segment_s=SEGMENT_S), workers=1, progress=stop_after_two)
    assert read_job(out).state == "stopped"  # type: ignore[union-attr]
    arrow_parts = sorted((out / batch.PARTS_DIR).glob("*.arrow"))
    assert arrow_parts and not list((out / batch.PARTS_DIR).glob("*.parquet"))
    for part in arrow_parts:  # as FER Studio wrote them before parts were Arrow IPC files
        pq.write_table(ipc.open_file(part.read_bytes()).read_all(), part.with_suffix(".parquet"))
        part.unlink()
    resumed = analyze_batch([mixed], out, BatchSettings(segment_s=SEGMENT_S), workers=1)
    assert resumed.files_skipped >= 1 and read_job(out).state == "finished"  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(sorted_faces(out), sorted_faces(reference))


def test_a_file_that_kills_its_worker_is_an_error_row_and_the_units_beside_it_are_analysed(
    mixed: Path, tmp_path: Path
) -> None:
    from batch_crash import crash_on_marked_files

    from fer_core.batch.engines import RETRYABLE, _run_local
    from fer_core.batch.inputs import plan_units
    from fer_core.batch.settings import load_model_files

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(9):  # in the same calls as the crash, or in flight beside it
        (folder / f"photo{index}.jpg").write_bytes((mixed / f"photo{index % 3}.jpg").read_bytes())
    (folder / "crash.jpg").write_bytes((mixed / "photo0.jpg").read_bytes())
    settings = BatchSettings()
    units = plan_units(collect_inputs([folder]), settings)
    results: list[batch.UnitResult] = []
    _run_local(units, load_model_files(settings), settings, 2, results.append, lambda: False, crash_on_marked_files)
    by_name = {Path(result.unit.path).name: result for result in results}
    assert len(results) == len(by_name) == 10  # every unit once
    crash = by_name.pop("crash.jpg").summary
    assert (crash["status"], crash["error"], crash["retry"]) == ("error", RETRYABLE, True)
    assert all(result.summary["status"] == "ok" and result.summary["faces"] == 2 for result in by_name.values())


def test_a_model_that_cannot_load_fails_the_job_and_says_so_in_job_json(tmp_path: Path) -> None:
    from fer_core.errors import ModelLoadError

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="no model file"):
        analyze_batch([tmp_path / "in"], tmp_path / "job", BatchSettings(model=str(tmp_path / "none.keras")))
    job = read_job(tmp_path / "job")
    assert job is not None and job.state == "failed" and "no model file" in (job.error or "")
    result = run_cli(str(tmp_path / "in"), "--out", str(tmp_path / "job2"), "--model", str(tmp_path / "none.keras"))
    assert result.returncode == 2 and "error: no model file" in result.stderr and "Traceback" not in result.stderr


def test_an_output_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    result = run_cli(str(folder), "--out", str(folder / "results"))
    assert result.returncode == 2
    assert "error: the output folder" in result.stderr and "lies inside the input folder" in result.stderr
    assert "Traceback" not in result.stderr and not (folder / "results").exists()
    with pytest.raises(BatchError, match="is an input"):
        analyze_batch([folder / "a.jpg"], folder / "a.jpg")
    with pytest.raises(BatchError, match="lies inside the output folder"):
        analyze_batch([tmp_path / "photos" / "a.jpg"], tmp_path)
    with pytest.raises(BatchError, match="lies inside the input folder"):
        analyze_batch([str(tmp_path / "**" / "*.jpg")], folder / "out")


def test_inputs_are_files_folders_globs_and_manifests(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.jpg").write_bytes(b"1")
    (tmp_path / "a" / ".hidden.jpg").write_bytes(b"2")
    (tmp_path / "a" / "deep").mkdir()
    (tmp_path / "a" / "deep" / "two.png").write_bytes(b"3")
    (tmp_path / "three.mp4").write_bytes(b"4")
    (tmp_path / "list.csv").write_text("path,note\na/one.jpg,again\nthree.mp4,\n")
    found = collect_inputs([tmp_path / "a", str(tmp_path / "*.mp4"), tmp_path / "list.csv"])
    assert [file.path.name for file in found] == ["two.png", "one.jpg", "three.mp4"]  # by path, once each, no hidden
    with pytest.raises(BatchError, match="does not exist"):
        collect_inputs([tmp_path / "missing"])
    with pytest.raises(BatchError, match="matches no file"):
        collect_inputs([str(tmp_path / "*.webm")])
    result = run_cli(str(tmp_path / "missing"), "--out", str(tmp_path / "job"))
    assert result.returncode == 2 and "error:" in result.stderr and "does not exist" in result.stderr


def test_photos_and_frames_over_the_pixel_cap_are_error_rows(tmp_path: Path) -> None:
    from photo_samples import encode, textured_background

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "big.png").write_bytes(encode(textured_background(300, 400)))
    with AnnotatedVideoWriter(folder / "big.mp4", 400, 300, 10.0) as writer:
        for _ in range(3):
            writer.write(textured_background(300, 400))
    (folder / "small.png").write_bytes(encode(textured_background(100, 100)))
    out = tmp_path / "job"
    summary = analyze_batch([folder], out, BatchSettings(max_pixels=50_000), workers=1)
    files = read_files(out).set_index(read_files(out).file.map(lambda name: Path(name).name))
    assert files.loc["big.png", "status"] == "error" and "the cap is 0.1" in files.loc["big.png", "error"]
    assert files.loc["big.mp4", "status"] == "error" and "400 x 300" in files.loc["big.mp4", "error"]
    assert files.loc["small.png", "status"] == "ok" and summary.files_ok == 1


def test_nothing_analysable_exits_non_zero(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_bad_files(folder)
    result = run_cli(str(folder), "--out", str(tmp_path / "job"), "--workers", "1")
    assert result.returncode == 1 and "0 of 3 files analysed, 3 with errors" in result.stdout


def test_bad_settings_are_refused_before_anything_runs() -> None:
    with pytest.raises(BatchError, match="either --every or --fps"):
        BatchSettings(every=2, fps=5.0)
    with pytest.raises(BatchError, match="--fps must be a positive number"):
        BatchSettings(fps=float("nan"))
    with pytest.raises(BatchError, match="smallest face"):
        BatchSettings(min_face=4)


def test_the_page_command_round_trips_the_settings(tmp_path: Path) -> None:
    from fer_core.cli import build_parser

    settings = BatchSettings(detector="haar", min_face=60, align=False, threshold=0.5, fps=2.5, segment_s=60.0)
    command = batch.batch_command(["a", "b"], tmp_path / "job", settings, workers=3, engine="ray", address="auto")
    args = build_parser().parse_args(command[3:])
    assert (args.inputs, args.workers, args.engine, args.address) == (["a", "b"], 3, "ray", "auto")
    assert (args.detector, args.min_face, args.no_align, args.threshold, args.fps) == ("haar", 60, True, 0.5, 2.5)
    assert args.segment_seconds == 60.0


# --- frames


def test_every_nth_frame_or_one_frame_per_slot_is_analysed() -> None:
    every = FrameSampler(every=3)
    assert [index for index in range(10) if every.take(index, index / 10)] == [0, 3, 6, 9]
    per_second = FrameSampler(fps=2.0)
    times = [index / 10 for index in range(25)]  # a 10 fps clip
    assert [time_s for index, time_s in enumerate(times) if per_second.take(index, time_s)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert FrameSampler(every=3).interval(10.0) == pytest.approx(0.3)
    assert FrameSampler(fps=2.0).interval(10.0) == pytest.approx(0.5)


def test_memory_stays_flat_on_a_long_clip(tmp_path: Path) -> None:
    faces = face_frames(2)
    for name in ("short", "long"):
        (tmp_path / name).mkdir()
    short = write_face_clip(tmp_path / "short" / "clip.mp4", faces, frames=150, fps=25.0)
    long = write_face_clip(tmp_path / "long" / "clip.mp4", faces, frames=1500, fps=25.0)  # 60 s, ten times as long
    # Every frame is decoded, five a second are analysed (as bench_batch measures it): a clip held in memory
    # instead of streamed would be 1,500 frames of 230 kB, and each analysed frame kept, 300 of them. The
    # worker reports its own peak (a local worker is the forkserver's child: the job cannot wait for it).
    settings = BatchSettings(fps=5.0, segment_s=20.0)
    peaks = {}
    for name, clip in (("short", short), ("long", long)):
        analyze_batch([clip], tmp_path / f"{name}-job", settings, workers=1)
        job = read_job(tmp_path / f"{name}-job")
        assert job is not None and job.worker_peak_rss_mb > 50, job  # a worker with a model and a detector
        peaks[name] = job.worker_peak_rss_mb
    files = read_files(tmp_path / "long-job")
    assert (files.frames[0], files.segments[0]) == (300, 3)  # analysed: five a second of all 60 s
    assert peaks["long"] < peaks["short"] + 40, peaks  # frames are streamed; a segment's rows are small


def test_group_calls_group_photos_and_keep_video_segments_and_errors_alone() -> None:
    def unit(index: int, kind: str) -> batch.Unit:
        return batch.Unit(f"k{index}", f"f{index}", f"/p{index}", kind, 0, 1, 0.0, None, 1, 1, 1.0)

    kinds = ["photo"] * 10 + ["video", "photo", "error", "photo", "photo"]
    units = [unit(index, kind) for index, kind in enumerate(kinds)]
    calls = batch.group_calls(units, photos_per_call=8)
    assert [[u.key for u in call] for call in calls] == [
        [f"k{index}" for index in range(8)],
        ["k8", "k9"],
        ["k10"],  # a video segment alone: it is a call's worth of work by itself
        ["k11"],
        ["k12"],
        ["k13", "k14"],
    ]
    assert [u for call in calls for u in call] == units  # every unit once, in order


def test_ray_ships_the_whole_fer_core_package_to_its_workers() -> None:
    import fer_core

    # A Ray worker on another machine imports fer_core from what runtime_env uploads: the package folder
    # itself, not the batch subpackage (a worker on this machine would find fer_core on disk anyway).
    assert batch.ray_runtime_env() == {"py_modules": [str(Path(fer_core.__file__).resolve().parent)]}
