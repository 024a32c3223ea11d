"""Batch analysis: folders of photos and hours of video, resumable, on this machine or a Ray cluster.

    from fer_core.batch import BatchSettings, analyze_batch, read_faces, read_job
    summary = analyze_batch(["sessions/", "extra.jpg"], "results/job1", BatchSettings(fps=5), workers=2)
    faces = read_faces("results/job1")          # one row per face, photos and video frames alike
    job = read_job("results/job1")              # state, counts, timings: also while the job runs

or from a shell (what the app's Batch page starts in the background)::

    python -m fer_core batch sessions/ extra.jpg --out results/job1 --workers 2 --fps 5 --csv

**Inputs** are files, folders (read recursively; hidden files skipped), glob patterns, or a manifest CSV
with a ``path`` column (relative paths are relative to the CSV's folder). Whether a file is a photo or a
video is told from its content, as the Photos and Video pages do; anything else becomes an ``error`` row.

**Settings** (:class:`BatchSettings`) are the pages': the detector, the smallest face, alignment, the
confidence threshold, the smoothing of video tracks, and the model. Photos use ``PHOTO_PRESET`` and video
frames ``VIDEO_PRESET`` with those choices. ``every`` (analyse every Nth frame) or ``fps`` (at most F frames a
second) thin out video frames. Frames or photos larger than ``max_pixels`` (40 MP, the photos' limit) are
refused.

**Work units** are photos and video *segments*: a video longer than ``segment_s`` (300 s) is cut into
segments of that length, analysed independently, possibly by different workers. Face track ids therefore
restart at 1 in each segment (the ``segment`` column tells them apart) and smoothing starts afresh at a
segment's start. A worker decodes a segment from the clip's start and skips earlier frames (decoding is
cheap next to detection).

**Engines**: ``local`` (default) is a pool of ``workers`` processes (default: the CPU count); ``ray`` runs one
actor per worker on a Ray cluster (``address``: None starts a local Ray, ``"auto"`` joins the running one,
``"ray://host:10001"`` a remote one). The local engine starts its workers from a clean ``forkserver``
process, so a script that calls :func:`analyze_batch` needs Python's usual ``if __name__ == "__main__":``
guard. Each worker builds one predictor (a LiteRT interpreter and the two
detectors) once, from the model's bytes it is sent (the object store, for Ray), never per file, and is
sent photos a few to a call (:func:`group_calls`). A unit in flight when a local worker dies is run again
alone; one that kills its worker alone, or any unit of a dead Ray actor's call, becomes an error row that
the next run retries. Both engines give the same records.

The job folder (``out_dir``)
----------------------------
::

    out_dir/
      job.json          the job: state, settings, model and detector SHA-256, counts, timings (rewritten
                        atomically as the job advances: another process may read it at any time)
      parts/            one finished work unit each: KEY.json (its file summary) and, when it found faces,
                        KEY.parquet (its face rows). The .json is written last; a unit without it is not done.
      faces.parquet     at the end: every face row (FACE_COLUMNS + segment), files in input order
      files.parquet     at the end: one row per input file (FILE_COLUMNS): status ok/error and message, a
                        warning for damaged data that still decoded,
                        faces, frames analysed, the dominant label and the share of each label
      tracks.parquet    at the end: one row per face track (TRACK_COLUMNS), photos' faces included
      faces.csv, files.csv, tracks.csv     the same, when ``csv=True``
      .lock             held by the running job (:func:`is_job_running`)
      STOP              written by :func:`request_stop`; the job stops after the units in flight are dropped

``job.json`` (read it with :func:`read_job`, which gives a :class:`JobRecord`)::

    {"version": 1, "state": "running" | "finished" | "stopped" | "failed", "error": null, "message": "...",
     "pid": 1234, "started_at": 1.7e9, "updated_at": 1.7e9, "finished_at": null,
     "inputs": ["sessions/"], "engine": "local", "workers": 2, "address": null,
     "settings": {...BatchSettings...}, "fingerprint": "sha256 of settings + model + detector",
     "model": {"path": "...", "sha256": "(LiteRT copy)", "keras_sha256": "...", "temperature": 1.2},
     "detector": {"name": "yunet", "sha256": "..."},
     "files": {"total": 40, "done": 12, "errors": 1, "skipped": 10},   # skipped: done by an earlier run
     "units": {"total": 44, "done": 13},
     "frames": 5120, "faces": 6003,
     "work": {"total": 9000.0, "done": 3000.0},   # ETA inputs: a photo is 1, a video segment its frames to analyse
     "timings": {"elapsed_s": 30.2, "startup_s": 1.1, "teardown_s": 0.0, "frames_per_s": 170.0, "photos_per_s": 20.0,
                 "eta_s": 60.5},
     "memory": {"job_peak_rss_mb": 180.0, "worker_peak_rss_mb": 172.0}}   # peaks so far, each worker's as it reports

Resuming: running the same job again (same ``out_dir``) skips the units already done, redoes the files
whose size or modification time changed, and redoes everything when the model, the detector or the
settings changed (``job.json``'s ``message`` says which). A job killed (even ``kill -9``) loses only
the units in flight: every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

from fer_core.batch.engines import group_calls, ray_runtime_env
from fer_core.batch.inputs import Unit, collect_inputs
from fer_core.batch.job import (
    BatchProgress,
    BatchSummary,
    JobRecord,
    batch_command,
    is_job_running,
    read_job,
    request_stop,
)
from fer_core.batch.runner import analyze_batch
from fer_core.batch.settings import (
    BATCH_FACE_COLUMNS,
    DEFAULT_SEGMENT_S,
    FILE_COLUMNS,
    PARTS_DIR,
    SHARE_COLUMNS,
    STOP_FILE,
    TRACK_COLUMNS,
    BatchError,
    BatchSettings,
)
from fer_core.batch.tables import read_faces, read_files, read_tracks
from fer_core.batch.worker import FrameSampler

__all__ = [
    "BATCH_FACE_COLUMNS",
    "DEFAULT_SEGMENT_S",
    "FILE_COLUMNS",
    "PARTS_DIR",
    "SHARE_COLUMNS",
    "STOP_FILE",
    "TRACK_COLUMNS",
    "BatchError",
    "BatchProgress",
    "BatchSettings",
    "BatchSummary",
    "FrameSampler",
    "JobRecord",
    "Unit",
    "analyze_batch",
    "batch_command",
    "collect_inputs",
    "group_calls",
    "is_job_running",
    "ray_runtime_env",
    "read_faces",
    "read_files",
    "read_job",
    "read_tracks",
    "request_stop",
]
