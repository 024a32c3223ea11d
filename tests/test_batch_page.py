"""The Batch page through AppTest: a real small job started from the page (a folder under the data
roots), its results, an uploaded zip, Stop and Resume, bad input, and deleting a job. Also the
uploads' safety (fer_core.batch_jobs.save_uploads). The tests wait for the job's state, never for a time."""

from __future__ import annotations

import io
import json
import stat
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from fer_core import batch, batch_jobs
from fer_core.batch import BatchSettings
from fer_core.batch_jobs import Job, UploadError, save_uploads

PAGE = "views/batch.py"
LIMIT_S = 300  # a safety limit only: the tests wait for states


@pytest.fixture
def jobs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "jobs"
    monkeypatch.setenv("FER_JOBS_DIR", str(folder))
    return folder


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("FER_DATA_ROOTS", str(root))
    return root


def face_images(count: int) -> list[np.ndarray]:
    from conftest import fer2013_path
    from photo_samples import detectable_faces, fer_faces

    fer2013 = fer2013_path()
    if fer2013 is None:
        pytest.skip("FER2013 not found: set FER2013_DIR or put it at ../shared/fer2013")
    return detectable_faces(fer_faces(fer2013), size=120, count=count)


def write_clip(path: Path, faces: list[np.ndarray], frames: int) -> Path:
    from photo_samples import upscale

    from fer_core.video import AnnotatedVideoWriter

    with AnnotatedVideoWriter(path, 320, 240, 10.0) as writer:
        for index in range(frames):
            frame = np.full((240, 320, 3), 110, np.uint8)
            x = 40 + (index % 60)
            frame[40:160, x : x + 120] = cv2.cvtColor(upscale(faces[index % len(faces)], 120), cv2.COLOR_GRAY2BGR)
            writer.write(frame)
    return path


def small_folder(folder: Path) -> Path:
    """Two photos with two faces each, a 2 s clip, and a file that is neither."""
    from photo_samples import encode, group_photo

    faces = face_images(3)
    folder.mkdir(parents=True)
    for index in range(2):
        image, _ = group_photo(faces[index : index + 2], seed=index)
        (folder / f"photo{index}.jpg").write_bytes(encode(image, ".jpg"))
    write_clip(folder / "clip.mp4", faces, frames=20)
    (folder / "notes.txt").write_text("not a photo, not a video")
    return folder


def open_page() -> AppTest:
    at = AppTest.from_file("../app/main.py", default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def the_job(jobs_dir: Path) -> Job:
    jobs = batch_jobs.list_jobs(jobs_dir)
    assert len(jobs) == 1, jobs
    return jobs[0]


def wait_for_status(job: Job, wanted: set[str]) -> str:
    deadline = time.monotonic() + LIMIT_S
    while (status := job.status()) not in wanted:
        assert status in batch_jobs.ACTIVE_STATES or status in wanted, (status, job.log_error())
        assert time.monotonic() < deadline, f"still {status} after {LIMIT_S} s"
        time.sleep(0.1)
    return status


def table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The shown table whose first columns are these (the keys of st.dataframe do not reach AppTest)."""
    for element in at.dataframe:
        value = element.value
        if list(value.columns[: len(columns)]) == list(columns):
            return value
    raise AssertionError(f"no table starting {', '.join(columns)}")


def files_table(at: AppTest) -> pd.DataFrame:
    return table(at, "file", "kind", "status")


def start_folder_job(at: AppTest, folder: Path) -> None:
    at.radio(key="batch_input").set_value("A folder under the data roots").run()
    at.text_input(key="batch_folder").input(str(folder)).run()
    assert not at.error, [element.value for element in at.error]
    at.number_input(key="batch_workers").set_value(1)
    at.button(key="batch_start").click().run()
    assert not at.exception, at.exception


def test_a_folder_job_runs_in_the_background_and_its_results_are_shown(jobs_dir: Path, data_root: Path) -> None:
    folder = small_folder(data_root / "session")
    at = open_page()
    assert "No jobs yet" in at.info[0].value
    start_folder_job(at, folder)
    job = the_job(jobs_dir)
    assert job.launch()["inputs"] == [str(folder)]
    assert at.button(key="batch_start").disabled or not job.is_active  # one job at a time
    assert wait_for_status(job, {"finished", "failed"}) == "finished", job.log_error()
    at.run()
    assert not at.exception, at.exception

    assert any("Finished" in element.value and "4 files" in element.value for element in at.success)
    files = files_table(at)
    assert sorted(files["file"].map(lambda name: Path(name).name)) == [
        "clip.mp4",
        "notes.txt",
        "photo0.jpg",
        "photo1.jpg",
    ]
    assert set(files["status"]) == {"ok", "error"}
    assert files.loc[files["file"].str.endswith("photo0.jpg"), "faces"].iloc[0] == 2
    # Filter and sort: only the errors; faces, most first.
    at.multiselect(key="batch_filter_status").set_value(["error"]).run()
    assert [Path(name).name for name in files_table(at)["file"]] == ["notes.txt"]
    at.multiselect(key="batch_filter_status").set_value([]).run()
    at.selectbox(key="batch_sort").set_value("Faces")
    at.toggle(key="batch_descending").set_value(True).run()
    faces_column = list(files_table(at)["faces"])
    assert faces_column == sorted(faces_column, reverse=True) != faces_column[::-1]  # most faces first
    assert files.loc[files["file"].str.endswith("clip.mp4"), "frames"].iloc[0] == 20
    dominant = files.loc[files["file"].str.endswith("photo0.jpg"), "dominant"].iloc[0]
    at.multiselect(key="batch_filter_emotion").set_value([dominant]).run()
    assert set(files_table(at)["dominant"]) == {dominant}

    charts = {element.proto.id: element for element in at.get("plotly_chart")}
    assert charts, "no chart"
    distribution = [element for element in at.get("plotly_chart") if "faces" in element.proto.spec]
    assert distribution, "no emotion distribution"
    assert at.selectbox(key="batch_clip").value.endswith("clip.mp4")  # the timeline of the one clip with faces
    assert '"lines+markers"' in at.get("plotly_chart")[-1].proto.spec
    errors = table(at, "file", "kind", "error")
    assert [Path(name).name for name in errors["file"]] == ["notes.txt"]
    assert errors["error"].iloc[0]
    labels = [button.proto.label for button in at.get("download_button")]
    assert labels.count("Parquet") == 3 and labels.count("CSV") == 3
    from app.views.batch import as_csv, as_parquet  # what the download buttons call when clicked

    faces = batch.read_faces(job.results)
    assert len(faces) > 0
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(as_parquet(faces)())), faces)
    assert pd.read_csv(io.BytesIO(as_csv(faces)())).shape == faces.shape
    assert any(element.value.startswith("Jobs") for element in at.header)
    assert list(table(at, "Job", "Status")["Status"]) == ["finished"]

    # Delete, with a confirmation; the folder it read is kept.
    at.button(key=f"batch-delete-{job.name}").click().run()
    assert any("cannot be undone" in element.value for element in at.warning)
    assert job.path.is_dir()
    at.button(key=f"batch-delete-yes-{job.name}").click().run()
    assert not at.exception, at.exception
    assert not job.path.exists() and batch_jobs.list_jobs(jobs_dir) == []
    assert (folder / "photo0.jpg").is_file()
    assert "No jobs yet" in at.info[0].value


def test_an_uploaded_zip_is_extracted_into_the_job_and_analysed(
    jobs_dir: Path, data_root: Path, tmp_path: Path
) -> None:
    folder = small_folder(tmp_path / "to_zip")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(folder.iterdir()):
            bundle.write(file, f"session/{file.name}")
    at = open_page()
    at.radio(key="batch_input").set_value("Upload files or a zip").run()
    at.file_uploader(key="batch_uploads").set_value([("session.zip", archive.getvalue(), "application/zip")]).run()
    at.number_input(key="batch_workers").set_value(1)
    at.button(key="batch_start").click().run()
    assert not at.exception, at.exception
    job = the_job(jobs_dir)
    assert sorted(path.name for path in job.inputs_dir.rglob("*") if path.is_file()) == sorted(
        path.name for path in folder.iterdir()
    )
    assert wait_for_status(job, {"finished", "failed"}) == "finished", job.log_error()
    at.run()
    assert len(files_table(at)) == 4
    assert list(table(at, "Job", "Status")["Input"]) == ["uploaded files"]


def test_stop_then_resume_from_the_page(jobs_dir: Path, data_root: Path) -> None:
    folder = data_root / "long"
    folder.mkdir()
    write_clip(folder / "long.mp4", face_images(2), frames=900)  # 90 s: many seconds of work
    at = open_page()
    start_folder_job(at, folder)
    job = the_job(jobs_dir)
    wait_for_status(job, {"running"})
    while (record := job.record()) is None or record.state != "running":  # job.json follows the lock
        assert job.status() == "running", job.log_error()
        time.sleep(0.05)
    at.run()
    assert not at.exception, at.exception
    (bar,) = at.get("progress")
    assert "/ 1 files" in bar.proto.text, bar.proto.text  # the progress bar, while it runs
    at.button(key=f"batch-stop-{job.name}").click().run()
    assert not at.exception, at.exception
    assert wait_for_status(job, {"stopped", "finished"}) == "stopped"
    at.run()
    assert any("Stopped" in element.value for element in at.warning)
    at.button(key=f"batch-resume-{job.name}").click().run()
    assert not at.exception, at.exception
    assert wait_for_status(job, {"finished", "failed"}) == "finished", job.log_error()
    at.run()
    assert any("Finished" in element.value for element in at.success)
    assert files_table(at)["frames"].iloc[0] == 900


def test_a_folder_outside_the_data_roots_or_missing_is_refused(jobs_dir: Path, data_root: Path, tmp_path: Path) -> None:
    at = open_page()
    at.radio(key="batch_input").set_value("A folder under the data roots").run()
    at.text_input(key="batch_folder").input(str(tmp_path)).run()
    assert "outside the folders this app may read" in at.error[0].value
    assert at.button(key="batch_start").disabled
    at.text_input(key="batch_folder").input(str(data_root / "nowhere")).run()
    assert "does not exist" in at.error[0].value
    assert at.button(key="batch_start").disabled
    (data_root / "one.jpg").write_bytes(b"x")
    at.text_input(key="batch_folder").input(str(data_root / "one.jpg")).run()
    assert "is a file, not a folder" in at.error[0].value
    assert not jobs_dir.exists() or batch_jobs.list_jobs(jobs_dir) == []


def test_a_zip_that_points_outside_is_refused_and_leaves_no_job(jobs_dir: Path, data_root: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../escape.jpg", b"x")
    at = open_page()
    at.radio(key="batch_input").set_value("Upload files or a zip").run()
    at.file_uploader(key="batch_uploads").set_value([("evil.zip", archive.getvalue(), "application/zip")]).run()
    at.button(key="batch_start").click().run()
    assert not at.exception, at.exception
    assert "points outside the zip's folder" in at.error[0].value and "evil.zip" in at.error[0].value
    assert batch_jobs.list_jobs(jobs_dir) == [] and list(jobs_dir.iterdir()) in ([], [jobs_dir / ".launch.lock"])


# --- uploads, without the page


def zip_bytes(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(info, target)
    return archive.getvalue()


def test_uploads_are_saved_under_safe_names_and_zips_extracted_inside(tmp_path: Path) -> None:
    target = tmp_path / "input"
    written = save_uploads(
        [
            ("../a.jpg", b"1"),
            ("a.jpg", b"2"),
            ("pack.zip", zip_bytes({"x/b.png": b"3", "__MACOSX/._b.png": b"", ".hidden": b"", "x/c<d>.mp4": b"4"})),
        ],
        target,
    )
    names = sorted(str(path.relative_to(target)) for path in written)
    assert names == ["a-1.jpg", "a.jpg", "pack/x/b.png", "pack/x/c_d_.mp4"]
    assert all(target in path.parents for path in written)
    assert not (tmp_path / "a.jpg").exists()


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"/etc/x.jpg": b"1"}, None, "points outside"),
        ({"a/../../x.jpg": b"1"}, None, "points outside"),
        ({"C:/x.jpg": b"1"}, None, "points outside"),
        ({}, {"link.jpg": "/etc/passwd"}, "symbolic link"),
    ],
)
def test_unsafe_zip_members_are_refused(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(UploadError, match=message):
        save_uploads([("bad.zip", zip_bytes(members, links))], tmp_path / "input")
    assert not (tmp_path / "x.jpg").exists()


def test_uploads_over_the_caps_and_damaged_zips_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_jobs, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(UploadError, match="more than"):
        save_uploads([("big.zip", zip_bytes({"a.jpg": bytes(600), "b.jpg": bytes(600)}))], tmp_path / "one")
    monkeypatch.setattr(batch_jobs, "MAX_UPLOAD_FILES", 2)
    with pytest.raises(UploadError, match="holds 3 files"):
        save_uploads([("many.zip", zip_bytes({"a": b"", "b": b"", "c": b""}))], tmp_path / "two")
    with pytest.raises(UploadError, match="not a zip file"):
        save_uploads([("broken.zip", b"PK\x03\x04 nothing more")], tmp_path / "three")


def test_the_video_page_points_to_the_batch_page_for_longer_clips() -> None:
    at = AppTest.from_file("../app/main.py", default_timeout=120)
    at.run()
    at.switch_page("views/video.py").run()
    assert not at.exception, at.exception
    (link,) = [element for element in at.get("page_link") if "Batch page" in element.proto.label]
    assert link.proto.page.endswith("batch") and "60 s" in link.proto.label


def test_an_empty_folder_fails_with_the_commands_reason(jobs_dir: Path, data_root: Path) -> None:
    (data_root / "empty").mkdir()
    at = open_page()
    start_folder_job(at, data_root / "empty")
    job = the_job(jobs_dir)
    assert wait_for_status(job, {"failed"}) == "failed"
    at.run()
    assert not at.exception, at.exception
    (error,) = [element.value for element in at.error]
    assert "This job failed" in error and "no files found" in error, error


def test_a_killed_job_is_listed_as_interrupted_and_can_be_resumed(jobs_dir: Path, data_root: Path) -> None:
    folder = small_folder(data_root / "session")
    job = batch_jobs.new_job("killed", jobs_dir)
    (job.path / batch_jobs.LAUNCH_FILE).write_text(
        json.dumps({"inputs": [str(folder)], "settings": {}, "workers": 1, "pid": None, "launched_at": 1.0})
    )
    job.results.mkdir()
    (job.results / "job.json").write_text(json.dumps({"version": 1, "state": "running", "updated_at": 2.0}))
    assert job.status() == "interrupted"
    at = open_page()
    assert any("ended without finishing" in element.value for element in at.warning)
    at.button(key=f"batch-resume-{job.name}").click().run()
    assert not at.exception, at.exception
    assert wait_for_status(job, {"finished", "failed"}) == "finished", job.log_error()
    at.run()
    assert len(files_table(at)) == 4


def test_a_damaged_job_record_is_named_and_the_job_can_still_be_deleted(jobs_dir: Path) -> None:
    job = batch_jobs.new_job("damaged", jobs_dir)
    (job.path / batch_jobs.LAUNCH_FILE).write_text(json.dumps({"inputs": ["/nowhere"], "settings": {}}))
    job.results.mkdir()
    (job.results / "job.json").write_text("{not json")
    at = open_page()
    assert any("cannot be read" in element.value and "job.json" in element.value for element in at.error)
    assert table(at, "Job", "Status")["Status"].iloc[0].startswith("unreadable")
    at.button(key=f"batch-delete-{job.name}").click().run()
    at.button(key=f"batch-delete-yes-{job.name}").click().run()
    assert not at.exception, at.exception
    assert not job.path.exists()


def test_a_job_stopped_while_it_starts_stops(jobs_dir: Path, data_root: Path) -> None:
    folder = small_folder(data_root / "session")
    job = batch_jobs.start_job(batch_jobs.new_job("early", jobs_dir), [str(folder)], BatchSettings(), workers=1)
    assert job.status() in batch_jobs.ACTIVE_STATES
    batch_jobs.stop_job(job)  # most likely before it holds the job (the command is still importing)
    assert wait_for_status(job, {"stopped", "failed", "finished"}) == "stopped", job.log_error()
    assert batch_jobs.active_job(jobs_dir) is None
    batch_jobs.resume_job(job)
    assert wait_for_status(job, {"finished", "failed"}) == "finished", job.log_error()


def test_a_long_clips_timeline_is_thinned_but_keeps_every_change() -> None:
    from app.charts.batch import thinned, video_timeline_figure

    times = [index / 30 for index in range(30 * 600)]  # 10 minutes at 30 fps
    labels = ["happy" if 100 <= index % 900 < 130 else "neutral" for index in range(len(times))]
    kept = thinned(list(zip(times, labels, strict=True)))
    assert len(kept) <= 4 * 600 + 2 * 20 * 2 + 1
    changes = [times[index] for index in range(1, len(times)) if labels[index] != labels[index - 1]]
    assert all(any(time_s == change for time_s, _ in kept) for change in changes)
    assert kept[-1] == (times[-1], labels[-1])
    figure = video_timeline_figure(times, ["face 1"] * len(times), labels, 600.0)
    assert len(figure.data) == 1 and len(figure.data[0].x) == len(kept)
