"""What a batch reads: its input files (files, folders, patterns, manifests), the output folder's check,
and the work units the files are cut into (a photo, or a video segment) with their results."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from fer_core.batch.settings import ERROR, BatchError, BatchSettings
from fer_core.errors import FerError
from fer_core.face_table import PHOTO, VIDEO


class InputFile(NamedTuple):
    path: Path  # as found (what the records' ``file`` column shows)
    resolved: Path


def collect_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[InputFile]:
    """Every file the inputs name, in order, each once: files, folders (recursive, hidden files skipped),
    glob patterns and manifest CSVs (a ``path`` column). Raises :class:`BatchError` for an input that
    does not exist or a manifest without a ``path`` column."""
    found: dict[Path, InputFile] = {}
    for item in inputs:
        for path in _expand(str(item)):
            resolved = path.resolve()
            found.setdefault(resolved, InputFile(path, resolved))
    return list(found.values())


def _expand(item: str) -> list[Path]:
    path = Path(item).expanduser()
    if path.is_dir():
        return sorted(
            file
            for file in path.rglob("*")
            if file.is_file() and not any(part.startswith(".") for part in file.relative_to(path).parts)
        )
    if path.is_file():
        return _manifest(path) if _is_manifest(path) else [path]
    if glob.has_magic(item):
        # glob.glob, not Path.glob: the pattern may be absolute or start with ../
        matches = sorted(Path(match) for match in glob.glob(str(path), recursive=True))  # noqa: PTH207
        files = [match for match in matches if match.is_file()]
        if not files:
            raise BatchError(f"the pattern {item} matches no file")
        return files
    raise BatchError(f"{item} does not exist: give files, folders, glob patterns or a manifest CSV")


def _is_manifest(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    with contextlib.suppress(OSError, UnicodeDecodeError), path.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
        return "path" in [column.strip() for column in header]
    return False


def _manifest(path: Path) -> list[Path]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = []
    for number, row in enumerate(rows, start=2):
        value = (row.get("path") or "").strip()
        if not value:
            raise BatchError(f"{path.name}, line {number}: the path is empty")
        entry = Path(value).expanduser()
        files.append(entry if entry.is_absolute() else path.parent / entry)
    return files


def check_output(
    out_dir: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], files: Sequence[InputFile]
) -> None:
    """Refuse an output folder that is an input, lies inside an input folder, or holds an input file:
    the job would read its own outputs."""
    out = Path(out_dir).expanduser().resolve()
    for item in inputs:
        text = str(item)
        if glob.has_magic(text) and not Path(text).expanduser().exists():
            if "**" not in text:
                continue  # a pattern reads one folder level: the input files' own check below suffices
            prefix = re.split(r"[*?\[]", text, maxsplit=1)[0]
            path = Path(prefix or ".").expanduser() if prefix.endswith(os.sep) or not prefix else Path(prefix).parent
        else:
            path = Path(text).expanduser()
        resolved = path.resolve()
        if resolved.is_dir() and (out == resolved or resolved in out.parents):
            raise BatchError(
                f"the output folder {out_dir} lies inside the input folder {item}, which is being read: "
                "choose an output folder outside it"
            )
        if out == resolved:
            raise BatchError(f"the output folder {out_dir} is an input: choose another output folder")
    for file in files:
        if out in file.resolved.parents:
            raise BatchError(
                f"the input {file.path} lies inside the output folder {out_dir}: choose an output folder "
                "that holds no input"
            )


class Unit(NamedTuple):
    """One piece of work: a photo, or one segment of a video."""

    key: str  # unique in the job; the name of its part files
    file: str  # as the records show it
    path: str  # resolved
    kind: str  # "photo", "video" or "error"
    segment: int
    segments: int
    start_s: float
    end_s: float | None  # None: to the end
    size: int
    mtime_ns: int
    work: float  # ETA weight: 1 for a photo, the frames to analyse for a video segment
    error: str | None = None  # for kind "error": why the file cannot be analysed


def _file_key(resolved: Path) -> str:
    return hashlib.sha256(str(resolved).encode()).hexdigest()[:16]


def plan_units(files: Sequence[InputFile], settings: BatchSettings) -> list[Unit]:
    """The work units of the files, in order: a photo or unreadable file is one, a video one per segment."""
    units = []
    for file in files:
        key = _file_key(file.resolved)
        try:
            stat = file.resolved.stat()
        except OSError as error:
            units.append(_error_unit(key, file, 0, 0, f"cannot read {file.path}: {error.strerror or error}"))
            continue
        kind, duration, fps, problem = _sniff(file.resolved)
        if kind == ERROR:
            units.append(_error_unit(key, file, stat.st_size, stat.st_mtime_ns, problem or "unreadable"))
            continue
        if kind == PHOTO:
            units.append(
                Unit(
                    f"{key}-0",
                    str(file.path),
                    str(file.resolved),
                    PHOTO,
                    0,
                    1,
                    0.0,
                    None,
                    stat.st_size,
                    stat.st_mtime_ns,
                    1.0,
                )
            )
            continue
        length = duration or 0.0
        count = max(1, math.ceil(length / settings.segment_s)) if settings.segment_s > 0 and length > 0 else 1
        rate = settings.fps if settings.fps is not None else (fps or 25.0) / settings.every
        for segment in range(count):
            start = segment * settings.segment_s if count > 1 else 0.0
            end = (segment + 1) * settings.segment_s if segment < count - 1 else None
            seconds = (end if end is not None else length) - start
            units.append(
                Unit(
                    f"{key}-{segment}",
                    str(file.path),
                    str(file.resolved),
                    VIDEO,
                    segment,
                    count,
                    start,
                    end,
                    stat.st_size,
                    stat.st_mtime_ns,
                    max(1.0, seconds * rate),
                )
            )
    return units


def _error_unit(key: str, file: InputFile, size: int, mtime_ns: int, message: str) -> Unit:
    return Unit(f"{key}-0", str(file.path), str(file.resolved), ERROR, 0, 1, 0.0, None, size, mtime_ns, 1.0, message)


def _sniff(path: Path) -> tuple[str, float | None, float | None, str | None]:
    """(kind, duration, fps, problem): a photo by its first bytes, else a video if PyAV can open it."""
    from fer_core.images import image_format
    from fer_core.video import probe_video

    try:
        with path.open("rb") as handle:
            head = handle.read(32)
    except OSError as error:
        return ERROR, None, None, f"cannot read {path.name}: {error.strerror or error}"
    if not head:
        return ERROR, None, None, f"{path.name} is empty"
    if image_format(head) is not None:
        return PHOTO, None, None, None
    try:
        info = probe_video(path)
    except FerError as error:
        return ERROR, None, None, f"{path.name} is neither a photo nor a video this build can read ({error})"
    return VIDEO, info.duration_s, info.fps, None


class UnitResult(NamedTuple):
    """A finished unit: its face rows and its summary (a files-row part). The rows travel as the bytes of
    the Arrow IPC file the job writes as they are (see :func:`fer_core.batch.tables.faces_file`): built by
    the worker, never parsed by the job's process, whose CPU is the batch's one serial share."""

    unit: Unit
    faces: bytes | None  # an Arrow IPC file of BATCH_FACE_COLUMNS; None when the unit found no face
    summary: dict[str, Any]
    worker_peak_rss_mb: float = 0.0  # the peak resident memory of the worker that ran it, so far
