"""Running a job: :func:`analyze_batch`, which resumes an earlier run of the job, hands the units to an
engine, keeps ``job.json`` current and writes the final tables."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fer_core.batch.engines import _import_ray, _run_local, _run_ray
from fer_core.batch.inputs import InputFile, Unit, UnitResult, check_output, collect_inputs, plan_units
from fer_core.batch.job import BatchProgress, BatchSummary, _fingerprint, _job_lock, _what_changed, read_job
from fer_core.batch.settings import (
    ENGINES,
    ERROR,
    FACES_FILE,
    FILES_FILE,
    HEARTBEAT_S,
    JOB_FILE,
    JOB_VERSION,
    PARTS_DIR,
    RESULTS_WRITE_S,
    STOP_FILE,
    TRACKS_FILE,
    BatchError,
    BatchSettings,
    ModelFiles,
    load_model_files,
)
from fer_core.batch.tables import (
    PART_FACES_SUFFIXES,
    _clear_parts,
    _face_schema,
    _files_schema,
    _tracks_schema,
    _write_json,
    _write_parquet,
    file_rows,
    read_part_faces,
    read_parts,
    track_rows,
    write_part,
)
from fer_core.batch.worker import peak_rss_mb
from fer_core.errors import FerError
from fer_core.face_table import PHOTO, VIDEO
from fer_core.files import is_temporary, replace_atomically

FACES_ROW_GROUP = 20_000  # face rows per row group of faces.parquet (under 10 MB in memory while written)


def analyze_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: BatchSettings | None = None,
    *,
    workers: int | None = None,
    engine: str = "local",
    address: str | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
    csv: bool = False,
    stop: threading.Event | None = None,
) -> BatchSummary:
    """Analyse every file of ``inputs`` into the job folder ``out_dir`` (see :mod:`fer_core.batch`),
    resuming what an earlier run of the same job did. ``stop`` (or a STOP file, :func:`request_stop`)
    ends the job early with state ``stopped``. Raises :class:`BatchError` when the job cannot start
    (no inputs, an output inside an input, a job already running there, Ray missing)."""
    settings = settings or BatchSettings()
    if engine not in ENGINES:
        raise BatchError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise BatchError(f"workers must be at least 1, got {workers}")
    if engine == "ray":
        _import_ray()
    if not inputs:
        raise BatchError("no inputs: give files, folders, glob patterns or a manifest CSV")
    files = collect_inputs(inputs)
    if not files:
        raise BatchError(f"no files found in {', '.join(map(str, inputs))}")
    folder = Path(out_dir).expanduser()
    check_output(folder, inputs, files)
    if folder.exists() and not folder.is_dir():
        raise BatchError(f"the output {out_dir} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with _job_lock(folder):
        return _Job(
            folder, list(map(str, inputs)), files, settings, workers, engine, address, progress, csv, stop
        ).run()


class _Job:
    def __init__(
        self,
        folder: Path,
        inputs: list[str],
        files: list[InputFile],
        settings: BatchSettings,
        workers: int | None,
        engine: str,
        address: str | None,
        progress: Callable[[BatchProgress], None] | None,
        csv: bool,
        stop: threading.Event | None,
    ) -> None:
        self.folder, self.inputs, self.files, self.settings = folder, inputs, files, settings
        self.workers, self.engine, self.address = workers, engine, address
        self.progress, self.csv, self.stop = progress, csv, stop or threading.Event()
        self.started = time.time()
        self.job: dict[str, Any] = {}
        self.last_write = 0.0

    def run(self) -> BatchSummary:
        (self.folder / STOP_FILE).unlink(missing_ok=True)
        for stale in (self.folder / PARTS_DIR).glob(".*") if (self.folder / PARTS_DIR).is_dir() else []:
            if is_temporary(stale):
                stale.unlink(missing_ok=True)
        try:
            model = load_model_files(self.settings)
        except FerError as error:  # said in job.json too, for a page that started this job in the background
            _write_json(
                self.folder / JOB_FILE,
                {"version": JOB_VERSION, "state": "failed", "error": str(error), "pid": os.getpid(),
                 "started_at": self.started, "updated_at": time.time(), "inputs": self.inputs,
                 "settings": self.settings.to_json()},
            )  # fmt: skip
            raise
        fingerprint = _fingerprint(self.settings, model)
        units = plan_units(self.files, self.settings)
        done, message = self._resume(units, fingerprint, model)
        todo = [unit for unit in units if unit.key not in done]
        self.done: dict[str, dict[str, Any]] = done
        self.units = units
        self.units_run = 0
        self.frames_run = 0
        self.photos_run = 0
        self.work_run = 0.0
        self.worker_peak_rss_mb = 0.0  # the largest worker's peak memory (job.json: memory)
        self.work_todo = sum(unit.work for unit in todo)
        self.skipped_files = len({summary["path"] for summary in done.values()} - {unit.path for unit in todo})
        self._tally_all()
        workers = self.workers or (os.cpu_count() or 1)
        self.job = {
            "version": JOB_VERSION,
            "state": "running",
            "error": None,
            "message": message,
            "pid": os.getpid(),
            "started_at": self.started,
            "updated_at": self.started,
            "finished_at": None,
            "inputs": self.inputs,
            "engine": self.engine,
            "workers": workers,
            "address": self.address,
            "settings": self.settings.to_json(),
            "fingerprint": fingerprint,
            "model": {
                "path": model.source,
                "sha256": model.sha256,
                "keras_sha256": model.keras_sha256,
                "temperature": model.temperature,
            },
            "detector": {"name": model.detector, "sha256": model.detector_sha256},
        }
        self._update(last_file=None, force=True)
        engine_timings: dict[str, Any] = {}  # the Ray engine's teardown
        try:
            if self.engine == "local":
                startup = _run_local(todo, model, self.settings, workers, self._on_result, self._should_stop)
            else:
                startup = _run_ray(
                    todo,
                    model,
                    self.settings,
                    self.workers,
                    self.address,
                    self._on_result,
                    self._should_stop,
                    engine_timings,
                )
        except BaseException as error:
            state = "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
            self.job.update(state=state, error=None if state == "stopped" else f"{type(error).__name__}: {error}")
            self._update(last_file=None, force=True)
            raise
        self.job.setdefault("timings", {}).update(engine_timings, startup_s=startup)
        stopped = self._should_stop() and len(self.done) < len(units)
        if stopped:
            self.job.update(state="stopped")
        else:
            self._finish()
            self.job.update(state="finished", finished_at=time.time())
        self._update(last_file=None, force=True)
        (self.folder / STOP_FILE).unlink(missing_ok=True)
        counts = self._counts()
        return BatchSummary(
            self.folder,
            self.job["state"],
            counts["files_total"],
            counts["files_done"] - counts["files_errors"],
            counts["files_errors"],
            self.skipped_files,
            self.job["frames"],
            self.job["faces"],
            time.time() - self.started,
            message,
        )

    def _resume(
        self, units: Sequence[Unit], fingerprint: str, model: ModelFiles
    ) -> tuple[dict[str, dict[str, Any]], str | None]:
        """The units already done by an earlier run that still hold, and what the resume says."""
        previous = None
        with contextlib.suppress(FerError):
            previous = read_job(self.folder)
        parts = read_parts(self.folder)
        for name in (FACES_FILE, FILES_FILE, TRACKS_FILE):  # outputs of an earlier finish are rebuilt at the end
            (self.folder / name).unlink(missing_ok=True)
        if not parts:
            return {}, None
        if previous is None or previous.fingerprint != fingerprint:
            changed = _what_changed(previous, self.settings, model)
            _clear_parts(self.folder)
            return {}, f"{changed} since the last run: redoing all {len(self.files)} files"
        wanted = {unit.key: unit for unit in units}
        done: dict[str, dict[str, Any]] = {}
        changed_files = set()
        for key, summary in parts.items():
            unit = wanted.get(key)
            if unit is None:
                continue  # a file no longer among the inputs, or cut into other segments: not reported
            if summary.get("size") != unit.size or summary.get("mtime_ns") != unit.mtime_ns:
                changed_files.add(unit.path)
                continue
            if summary.get("retry"):
                continue
            done[key] = summary
        for key in [key for key, summary in done.items() if summary["path"] in changed_files]:
            del done[key]
        # Parts not kept are removed, so the final tables hold only this job's current units.
        for key in set(parts) - set(done):
            for suffix in (".json", *PART_FACES_SUFFIXES):
                (self.folder / PARTS_DIR / f"{key}{suffix}").unlink(missing_ok=True)
        message = f"resuming: {len({summary['path'] for summary in done.values()})} files already done"
        if changed_files:
            message += f", {len(changed_files)} changed since the last run and redone"
        return done, message

    def _should_stop(self) -> bool:
        if not self.stop.is_set() and (self.folder / STOP_FILE).exists():
            self.stop.set()
        if time.time() - self.last_write >= HEARTBEAT_S and self.job:
            self._update(last_file=None)
        return self.stop.is_set()

    def _on_result(self, result: UnitResult) -> None:
        write_part(self.folder, result)
        again = result.unit.key in self.done
        self.done[result.unit.key] = result.summary
        if again:  # a unit done twice in one run (never expected): count everything afresh
            self._tally_all()
        else:
            self._tally(result.summary)
        self.units_run += 1
        self.work_run += result.unit.work
        self.frames_run += result.summary["frames"] if result.unit.kind == VIDEO else 0
        self.photos_run += result.unit.kind == PHOTO
        self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, result.worker_peak_rss_mb)
        self._update(last_file=result.unit.file, every=RESULTS_WRITE_S)

    def _tally_all(self) -> None:
        """The counts of the finished units, from scratch (then :meth:`_tally` keeps them per result, so a
        result costs the same whether it is the 10th or the 100,000th)."""
        self.segments = Counter(unit.path for unit in self.units)
        self.parts_by_path: dict[str, list[dict[str, Any]]] = {}
        self.files_done = self.files_errors = self.frames_done = self.faces_done = 0
        for summary in self.done.values():
            self._tally(summary)

    def _tally(self, summary: dict[str, Any]) -> None:
        parts = self.parts_by_path.setdefault(summary["path"], [])
        parts.append(summary)
        if len(parts) == self.segments[summary["path"]]:  # the file's last segment: the file is done
            self.files_done += 1
            self.files_errors += any(part["status"] == ERROR for part in parts)
        self.frames_done += summary["frames"] if summary["kind"] == VIDEO else 0
        self.faces_done += sum((summary.get("labels") or {}).values())

    def _counts(self) -> dict[str, int]:
        return {"files_total": len(self.files), "files_done": self.files_done, "files_errors": self.files_errors}

    def _update(self, *, last_file: str | None, force: bool = False, every: float = HEARTBEAT_S) -> None:
        """Bring job.json up to date (when ``force``d or ``every`` seconds have passed since it was last
        written) and report progress (on a result, every time)."""
        now = time.time()
        write = force or now - self.last_write >= every
        if not write and last_file is None:
            return
        elapsed = now - self.started
        counts = self._counts()
        rate = self.work_run / elapsed if elapsed > 0 and self.work_run else 0.0
        remaining = max(0.0, self.work_todo - self.work_run)
        eta = remaining / rate if rate > 0 else None
        self.job.update(
            updated_at=now,
            files={
                "total": counts["files_total"],
                "done": counts["files_done"],
                "errors": counts["files_errors"],
                "skipped": self.skipped_files,
            },
            units={"total": len(self.units), "done": len(self.done)},
            frames=self.frames_done,
            faces=self.faces_done,
            work={"total": self.work_todo, "done": self.work_run},
            timings={
                **self.job.get("timings", {}),
                "elapsed_s": round(elapsed, 3),
                "frames_per_s": round(self.frames_run / elapsed, 3) if elapsed > 0 else 0.0,
                "photos_per_s": round(self.photos_run / elapsed, 3) if elapsed > 0 else 0.0,
                "eta_s": None if eta is None or self.job.get("state") != "running" else round(eta, 1),
            },
        )
        if write:
            self.job["memory"] = {
                "job_peak_rss_mb": round(peak_rss_mb(), 1),
                "worker_peak_rss_mb": round(self.worker_peak_rss_mb, 1),
            }
            _write_json(self.folder / JOB_FILE, self.job)
            self.last_write = now
        if self.progress is not None:
            self.progress(
                BatchProgress(
                    state=self.job["state"],
                    files_total=counts["files_total"],
                    files_done=counts["files_done"],
                    files_errors=counts["files_errors"],
                    units_total=len(self.units),
                    units_done=len(self.done),
                    frames=self.job["frames"],
                    faces=self.job["faces"],
                    elapsed_s=elapsed,
                    frames_per_s=self.job["timings"]["frames_per_s"],
                    eta_s=self.job["timings"]["eta_s"],
                    last_file=last_file,
                )
            )

    def _finish(self) -> None:
        """faces.parquet (parts gathered into row groups of up to FACES_ROW_GROUP rows: bounded memory, and
        a file other tools read well), files.parquet, tracks.parquet, and the CSVs."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _face_schema()
        ordered = [self.done[unit.key] for unit in self.units if unit.key in self.done]

        def write_faces(temporary: Path) -> None:
            with pq.ParquetWriter(temporary, schema) as writer:
                gathered: list[pa.Table] = []
                rows = 0
                for summary in ordered:
                    part = read_part_faces(self.folder, summary["key"])
                    if part is not None:  # a part of an older version may have other column types
                        gathered.append(part if part.schema.equals(schema) else part.cast(schema))
                        rows += part.num_rows
                    if rows >= FACES_ROW_GROUP:
                        writer.write_table(pa.concat_tables(gathered))
                        gathered, rows = [], 0
                if gathered:
                    writer.write_table(pa.concat_tables(gathered))

        replace_atomically(self.folder / FACES_FILE, write_faces)
        files = pa.Table.from_pylist(file_rows(ordered), schema=_files_schema())
        tracks = pa.Table.from_pylist(track_rows(ordered), schema=_tracks_schema())
        _write_parquet(self.folder / FILES_FILE, files)
        _write_parquet(self.folder / TRACKS_FILE, tracks)
        if self.csv:
            import pyarrow.csv as pacsv

            def write_faces_csv(temporary: Path) -> None:
                with pacsv.CSVWriter(temporary, schema) as writer:
                    for batch in pq.ParquetFile(self.folder / FACES_FILE).iter_batches():
                        writer.write_batch(batch)

            replace_atomically(self.folder / "faces.csv", write_faces_csv)
            replace_atomically(self.folder / "files.csv", lambda temporary: pacsv.write_csv(files, temporary))
            replace_atomically(self.folder / "tracks.csv", lambda temporary: pacsv.write_csv(tracks, temporary))
