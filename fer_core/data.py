"""Loading FER2013 (and data sets shaped like it) into one in-memory form.

Three layouts are understood, all producing a :class:`FaceDataset`:

* the Kaggle folder layout: ``<root>/train/<class>/*.jpg``, ``<root>/test/<class>/*``, optional ``val/``;
* a single folder of class subfolders (``<root>/<class>/*``), loaded as one split;
* the original challenge CSV (``emotion,pixels,Usage``).

Decoded arrays are cached on disk, keyed by every file's path, size and mtime, so a second
load of the 32,298 FER2013 images takes a fraction of a second.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.errors import DatasetError, InvalidImageError
from fer_core.files import temporary_path
from fer_core.images import decode_gray
from fer_core.labels import EMOTIONS, label_from_name
from fer_core.preprocess import FACE_SIZE, to_gray48

SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "publictest": "test",
    "privatetest": "private_test",
}
CSV_USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "test", "PrivateTest": "private_test"}
SPLIT_ORDER = ("train", "val", "test", "private_test")
# 3: data-set files decoded by accepted format only (float TIFFs scaled; Sun raster, PFM, HDR refused)
# 4: meta.json holds each cached array's SHA-256, checked on every load
CACHE_VERSION = 4
_PIXELS_PER_FACE = FACE_SIZE * FACE_SIZE
LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    """What the loader noticed and worked around. Nothing in here stopped the load."""

    unreadable: tuple[str, ...] = ()  # files that could not be read or decoded (skipped)
    resized: tuple[str, ...] = ()  # images that were not 48x48 (converted with to_gray48)
    skipped_folders: tuple[str, ...] = ()  # folders that are not a FER2013 class (e.g. train/contempt)
    bad_rows: tuple[str, ...] = ()  # CSV rows skipped, each "line N: reason"
    # Folders that could not be opened, and entries whose type could not be read (a symlink loop),
    # each "path: reason", e.g. "train/happy: permission denied". Their images are not loaded.
    unreadable_folders: tuple[str, ...] = ()

    @property
    def problem_count(self) -> int:
        return len(self.unreadable) + len(self.bad_rows) + len(self.skipped_folders) + len(self.unreadable_folders)


@dataclass(frozen=True)
class FaceDataset:
    """Faces as uint8 ``(N, 48, 48)`` with a label code, split name and source id per face."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    splits: npt.NDArray[np.str_]
    source_ids: npt.NDArray[np.str_]
    name: str
    synthetic: bool = False
    report: LoadReport = field(default_factory=LoadReport)

    def __post_init__(self) -> None:
        if self.images.shape[1:] != (FACE_SIZE, FACE_SIZE) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, 48, 48), got {self.images.dtype} {self.images.shape}")
        if any(array.ndim != 1 for array in (self.labels, self.splits, self.source_ids)):
            raise ValueError("labels, splits and source_ids must be one-dimensional")
        if not (len(self.labels) == len(self.splits) == len(self.source_ids) == len(self.images)):
            raise ValueError("images, labels, splits and source_ids must have the same length")
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"labels must be integer codes, got {self.labels.dtype}")
        if self.labels.size and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(EMOTIONS):
            raise ValueError(
                f"labels must be codes 0-{len(EMOTIONS) - 1}, got {int(self.labels.min())} to {int(self.labels.max())}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def split_names(self) -> list[str]:
        present = set(np.unique(self.splits).tolist())
        return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))

    def subset(self, mask_or_indices: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> FaceDataset:
        return replace(
            self,
            images=self.images[mask_or_indices],
            labels=self.labels[mask_or_indices],
            splits=self.splits[mask_or_indices],
            source_ids=self.source_ids[mask_or_indices],
        )

    def indices(self, *, split: str | None = None, emotion: str | None = None) -> npt.NDArray[np.int64]:
        """Positions, in order, of the faces in ``split`` labelled ``emotion`` (None: any split, any emotion).

        An absent split selects nothing; an emotion that is not one of :data:`EMOTIONS` raises ``ValueError``.
        """
        mask = np.ones(len(self), dtype=bool)
        if split is not None:
            mask &= self.splits == split
        if emotion is not None:
            if emotion not in EMOTIONS:
                raise ValueError(f"unknown emotion {emotion!r}; expected one of: {', '.join(EMOTIONS)}")
            mask &= self.labels == EMOTIONS.index(emotion)
        return np.flatnonzero(mask).astype(np.int64)

    def split(self, name: str) -> FaceDataset:
        """The faces of one split; unknown split names raise ``DatasetError`` listing the present ones."""
        key = normalize_split(name)
        if key not in self.split_names:
            raise DatasetError(f"{self.name} has no {name!r} split; it has: {', '.join(self.split_names)}")
        return self.subset(self.splits == key)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """``{split: {emotion: count}}`` for every split, every emotion present as a key."""
        counts: dict[str, dict[str, int]] = {}
        for split_name in self.split_names:
            labels = self.labels[self.splits == split_name]
            per_class = np.bincount(labels, minlength=len(EMOTIONS))
            counts[split_name] = {emotion: int(per_class[i]) for i, emotion in enumerate(EMOTIONS)}
        return counts


def normalize_split(name: str) -> str:
    key = name.strip().lower().replace("-", "").replace("_", "")
    return SPLIT_FOLDERS.get(key, name.strip().lower())


def default_cache_dir() -> Path:
    configured = os.environ.get("FER_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fer_studio"


def load_dataset(
    source: str | os.PathLike[str],
    *,
    split: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> FaceDataset:
    """Load a data set from a Kaggle-layout folder, a folder of class subfolders or a FER2013 CSV.

    ``split`` names the split a single folder of class subfolders stands for (default ``"train"``,
    or the folder's own name when it is ``train``/``val``/``test``); it is ignored for the other layouts.
    Bad locations raise :class:`DatasetError` with a message that says what was expected.
    """
    if "\x00" in os.fspath(source):
        raise DatasetError(f"{os.fspath(source)!r} contains a NUL character, which no file name can hold")
    path = Path(source).expanduser()
    try:
        path_stat = path.stat()
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DatasetError(f"{path} does not exist") from None
        raise DatasetError(f"cannot read {path}: {_os_reason(error)}") from None
    if stat.S_ISREG(path_stat.st_mode):
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path} is a file but not a .csv: point at a FER2013 CSV or a folder of class folders")
        file_stats = np.array([[path_stat.st_size, path_stat.st_mtime_ns]], dtype=np.int64)
        fingerprint = _fingerprint(path, [path.name], file_stats, extra="csv")
        return _cached(path, "csv", fingerprint, lambda: load_csv(path), cache_dir, use_cache)
    if not stat.S_ISDIR(path_stat.st_mode):
        raise DatasetError(f"{path} is neither a folder nor a .csv file")
    layout = _scan_folders(path, split)
    fingerprint = _fingerprint(path, layout.source_ids, layout.file_stats, extra=repr(split))
    return _cached(path, repr(split), fingerprint, lambda: _load_files(layout), cache_dir, use_cache, layout)


@dataclass(frozen=True)
class _FolderLayout:
    """Every file in the class folders under ``root``, in a stable order, as the listing saw it."""

    root: Path
    source_ids: list[str]  # posix paths relative to root, e.g. "train/happy/Training_1.jpg"
    splits: list[str]
    labels: list[int]
    file_stats: npt.NDArray[np.int64]  # (N, 2): size in bytes and mtime in ns, for the cache fingerprint
    skipped_folders: tuple[str, ...]  # relative paths of folders that are not a FER2013 class
    unreadable: tuple[str, ...] = ()  # files seen in a class folder but not stat-able (skipped)
    unreadable_folders: tuple[str, ...] = ()  # "path: reason" for folders or links that could not be opened


def _os_reason(error: OSError) -> str:
    """A short reason for ``error``, in words: "permission denied", "a symbolic link loop"."""
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    return (error.strerror or type(error).__name__).lower()


class _Listing(NamedTuple):
    folders: list[os.DirEntry[str]]  # sorted by name, hidden ones left out
    files: list[os.DirEntry[str]]


def _list_folder(folder: str, relative: str, problems: list[str]) -> _Listing:
    """The subfolders and files of ``folder``. An entry whose type cannot be read (a symlink loop, say)
    is noted in ``problems`` as ``"<relative><name>: reason"`` and left out; an unreadable ``folder``
    raises ``OSError``. Other entries (sockets, dangling links) are left out silently."""
    folders: list[os.DirEntry[str]] = []
    files: list[os.DirEntry[str]] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    folders.append(entry)
                elif entry.is_file():
                    files.append(entry)
            except OSError as error:
                problems.append(f"{relative}{entry.name}: {_os_reason(error)}")
    return _Listing(sorted(folders, key=lambda entry: entry.name), sorted(files, key=lambda entry: entry.name))


def _scan_folders(root: Path, split: str | None) -> _FolderLayout:
    """List ``root`` in the Kaggle layout (``<split>/<class>/*``) or as one split of ``<class>/*``.

    ``os.scandir`` gives file types without a ``stat`` per file; the one ``stat`` per image (size and
    mtime, for the cache fingerprint) is the main cost of a cached load (~0.1-0.3 s for FER2013).
    A split or class folder that cannot be opened (no permission, a symlink loop) is skipped and
    reported in ``unreadable_folders``, as the Dataset page and the training CLI then show; only an
    unreadable ``root`` raises :class:`DatasetError`.
    """
    problems: list[str] = []
    try:
        top = _list_folder(str(root), "", problems)
    except OSError as error:
        raise DatasetError(f"cannot read the folder {root}: {_os_reason(error)}") from None
    split_dirs = [
        (SPLIT_FOLDERS[entry.name.lower()], entry.path, f"{entry.name}/")
        for entry in top.folders
        if entry.name.lower() in SPLIT_FOLDERS
    ]
    class_dirs: list[tuple[str, str, list[os.DirEntry[str]]]] = []  # (split, prefix, class folders)
    if split_dirs:
        for split_name, split_path, prefix in split_dirs:
            try:
                class_dirs.append((split_name, prefix, _list_folder(split_path, prefix, problems).folders))
            except OSError as error:
                problems.append(f"{prefix.rstrip('/')}: {_os_reason(error)}")
    else:
        default_split = normalize_split(split) if split else SPLIT_FOLDERS.get(root.name.lower(), "train")
        class_dirs.append((default_split, "", top.folders))
    source_ids: list[str] = []
    splits: list[str] = []
    labels: list[int] = []
    stats: list[tuple[int, int]] = []
    skipped: list[str] = []
    unreadable: list[str] = []
    for split_name, prefix, folders in class_dirs:
        for class_dir in folders:
            label = label_from_name(class_dir.name)
            if label is None:
                skipped.append(f"{prefix}{class_dir.name}")
                continue
            relative = f"{prefix}{class_dir.name}/"
            try:
                files = _list_folder(class_dir.path, relative, problems).files
            except OSError as error:
                problems.append(f"{prefix}{class_dir.name}: {_os_reason(error)}")
                continue
            for file in files:
                try:
                    file_stat = file.stat()
                except OSError:  # removed since the listing, say
                    unreadable.append(f"{relative}{file.name}")
                    continue
                source_ids.append(f"{relative}{file.name}")
                splits.append(split_name)
                labels.append(label)
                stats.append((file_stat.st_size, file_stat.st_mtime_ns))
    if problems:
        LOGGER.warning("%s: skipped what could not be read: %s", root, "; ".join(problems))
    if not source_ids:
        expected = ", ".join(EMOTIONS)
        found = f" It only has folders that are not FER2013 classes: {', '.join(skipped)}." if skipped else ""
        if problems:
            found += f" Could not read: {'; '.join(problems)}."
        raise DatasetError(
            f"{root} has no images in class folders. Expected train/<class>/*.jpg and test/<class>/*.jpg "
            f"(Kaggle layout) or <class>/*.jpg, with <class> one of: {expected}.{found}"
        )
    return _FolderLayout(
        root=root,
        source_ids=source_ids,
        splits=splits,
        labels=labels,
        file_stats=np.array(stats, dtype=np.int64).reshape(-1, 2),
        skipped_folders=tuple(skipped),
        unreadable=tuple(unreadable),
        unreadable_folders=tuple(problems),
    )


def _read_gray(file: str) -> npt.NDArray[np.uint8] | None:
    """The file as 8-bit gray, or None if it cannot be read or is not an image of an accepted format."""
    try:
        with open(file, "rb") as handle:
            return decode_gray(handle.read())
    except (OSError, InvalidImageError):
        return None


def _read_gray_batch(files: Sequence[str]) -> list[npt.NDArray[np.uint8] | None]:
    return [_read_gray(file) for file in files]


_DECODE_BATCH = 512  # files per thread task: one task per file costs more in overhead than decoding


def _load_files(layout: _FolderLayout) -> FaceDataset:
    root = str(layout.root)
    paths = [f"{root}/{source_id}" for source_id in layout.source_ids]
    batches = [paths[start : start + _DECODE_BATCH] for start in range(0, len(paths), _DECODE_BATCH)]
    # cv2.imdecode and file reads release the GIL, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        decoded = [image for batch in pool.map(_read_gray_batch, batches) for image in batch]
    images: list[npt.NDArray[np.uint8]] = []
    keep: list[int] = []
    unreadable = list(layout.unreadable)
    resized: list[str] = []
    for index, (image, source_id) in enumerate(zip(decoded, layout.source_ids, strict=True)):
        if image is None:
            unreadable.append(source_id)
            continue
        if image.shape != (FACE_SIZE, FACE_SIZE):
            resized.append(source_id)
            image = to_gray48(image)
        images.append(image)
        keep.append(index)
    if not images:
        raise DatasetError(f"none of the {len(paths)} files under {root} could be read as an image")
    kept = np.array(keep, dtype=np.int64)
    return FaceDataset(
        images=np.stack(images),
        labels=np.array(layout.labels, dtype=np.int64)[kept],
        splits=np.array(layout.splits)[kept],
        source_ids=np.array(layout.source_ids)[kept],
        name=layout.root.name,
        report=LoadReport(
            unreadable=tuple(unreadable),
            resized=tuple(resized),
            skipped_folders=layout.skipped_folders,
            unreadable_folders=layout.unreadable_folders,
        ),
    )


def load_csv(path: str | os.PathLike[str]) -> FaceDataset:
    """Load the original ``fer2013.csv``. Malformed rows are skipped and reported by line number; a
    file that cannot be read raises :class:`DatasetError` naming the reason."""
    csv_path = Path(path)
    try:
        return _read_csv(csv_path)
    except OSError as error:  # no permission, a read error mid-file
        raise DatasetError(f"cannot read {csv_path}: {_os_reason(error)}") from None


def _read_csv(csv_path: Path) -> FaceDataset:
    images: list[npt.NDArray[np.uint8]] = []
    labels: list[int] = []
    splits: list[str] = []
    source_ids: list[str] = []
    bad_rows: list[str] = []
    # A stray non-UTF-8 byte becomes U+FFFD, so its row is reported as malformed instead of ending the load.
    with csv_path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        missing = [name for name in ("emotion", "pixels") if name not in columns]
        if missing:
            found = ", ".join(reader.fieldnames or []) or "nothing"
            raise DatasetError(f"{csv_path.name} lacks the column(s) {', '.join(missing)} (found: {found})")
        usage_column = columns.get("usage")
        try:
            for row in reader:
                line = reader.line_num
                if any("\ufffd" in (value or "") for value in row.values() if isinstance(value, str)):
                    bad_rows.append(f"line {line}: bytes that are not UTF-8 text")
                    continue
                try:
                    label, image = _parse_row(row[columns["emotion"]], row[columns["pixels"]])
                except ValueError as error:
                    bad_rows.append(f"line {line}: {error}")
                    continue
                usage = (row.get(usage_column) or "Training").strip() if usage_column else "Training"
                images.append(image)
                labels.append(label)
                splits.append(CSV_USAGE_SPLITS.get(usage, normalize_split(usage)))
                source_ids.append(f"{csv_path.name}:{line}")
        except csv.Error as error:  # e.g. an unclosed quote that swallows the rest of the file
            raise DatasetError(f"{csv_path.name} is not readable as CSV near line {reader.line_num}: {error}") from None
    if not images:
        raise DatasetError(f"{csv_path.name} has no valid rows ({len(bad_rows)} malformed)")
    return FaceDataset(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        splits=np.array(splits),
        source_ids=np.array(source_ids),
        name=csv_path.stem,
        report=LoadReport(bad_rows=tuple(bad_rows)),
    )


def _parse_row(emotion: str | None, pixels: str | None) -> tuple[int, npt.NDArray[np.uint8]]:
    try:
        label = int((emotion or "").strip())
    except ValueError:
        raise ValueError(f"emotion {emotion!r} is not an integer") from None
    if not 0 <= label < len(EMOTIONS):
        raise ValueError(f"emotion {label} is outside 0-{len(EMOTIONS) - 1}")
    try:
        values = np.array((pixels or "").split(), dtype=np.int64)
    except (ValueError, OverflowError):  # OverflowError: a value too large for int64
        raise ValueError("pixels are not all integers") from None
    if values.size != _PIXELS_PER_FACE:
        raise ValueError(f"{values.size} pixel values, expected {_PIXELS_PER_FACE}")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values outside 0-255")
    return label, values.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)


def _fingerprint(root: Path, names: Sequence[str], file_stats: npt.NDArray[np.int64], extra: str) -> str:
    """A digest of every file's relative path, size and mtime (ns).

    Any added, removed, renamed or rewritten file changes it. Hashing folder mtimes instead would skip
    the per-file ``stat`` but miss a file overwritten in place (same name, new pixels), which leaves
    its folder's mtime alone, so the per-file ``stat`` stays.
    """
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{root.resolve()}|{extra}\n".encode())
    digest.update("\n".join(names).encode("utf-8", "surrogateescape"))
    digest.update(np.ascontiguousarray(file_stats, dtype=np.int64).tobytes())
    return digest.hexdigest()[:24]


_CACHED_ARRAYS = ("images", "labels", "splits", "source_ids")


def _cached(
    root: Path,
    extra: str,
    fingerprint: str,
    load: Callable[[], FaceDataset],
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
    layout: _FolderLayout | None = None,
) -> FaceDataset:
    """``load()``, or its result from a previous call with the same fingerprint.

    Each entry is a folder of plain ``.npy`` files (one per array, read at disk speed; an ``.npz`` goes
    through ``zipfile`` and was several times slower) plus ``meta.json`` for the name and load report.
    Entries for the same source with an older fingerprint are deleted once a new one is written.
    What is read back is checked (types, shapes, label codes, split names and, for folders, each
    face's label and split against ``layout``); an entry that fails is deleted and rebuilt.
    """
    if not use_cache:
        return load()
    folder = Path(cache_dir or default_cache_dir())
    source_key = hashlib.sha256(f"{root.resolve()}|{extra}".encode()).hexdigest()[:12]
    entry = folder / f"dataset-{source_key}-{fingerprint}"
    if entry.is_dir():
        try:
            return _read_cache(entry, layout)
        except (OSError, ValueError, KeyError, TypeError) as error:
            LOGGER.warning("%s: the cached copy in %s is invalid (%s); rebuilding it", root, entry, error)
            shutil.rmtree(entry, ignore_errors=True)  # a damaged cache is rebuilt, never trusted
    dataset = load()
    with contextlib.suppress(OSError):  # a read-only cache location only costs speed
        _write_cache(entry, dataset)
        for stale in folder.glob(f"dataset-{source_key}-*"):
            if stale != entry and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
    return dataset


def _write_cache(entry: Path, dataset: FaceDataset) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(entry)
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        for name in _CACHED_ARRAYS:
            np.save(temporary / f"{name}.npy", getattr(dataset, name), allow_pickle=False)
        meta = {
            "name": dataset.name,
            "synthetic": dataset.synthetic,
            "report": asdict(dataset.report),
            "sha256": {name: _array_digest(getattr(dataset, name)) for name in _CACHED_ARRAYS},
        }
        (temporary / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        temporary.rename(entry)  # atomic; fails if another process wrote the same entry first
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _read_cache(entry: Path, layout: _FolderLayout | None) -> FaceDataset:
    """The data set stored in ``entry``, if it is one a load could have written: ``ValueError`` (or
    ``OSError``, ``KeyError``, ``TypeError``) naming the first problem otherwise."""
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    if not (isinstance(meta["name"], str) and isinstance(meta["synthetic"], bool) and isinstance(meta["report"], dict)):
        raise ValueError("meta.json holds values of the wrong type")
    report_fields = {report_field.name for report_field in fields(LoadReport)}
    for key, values in meta["report"].items():
        if key not in report_fields or not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"meta.json has a bad load report entry {key!r}")
    report = LoadReport(**{key: tuple(values) for key, values in meta["report"].items()})
    arrays = {name: np.load(entry / f"{name}.npy", allow_pickle=False) for name in _CACHED_ARRAYS}
    digests = meta["sha256"]
    if not isinstance(digests, dict):
        raise ValueError("meta.json holds no checksums")
    for name, array in arrays.items():  # edits that stay within valid values (labels permuted, pixels inverted)
        if digests.get(name) != _array_digest(array):
            raise ValueError(f"{name}.npy does not match its checksum in meta.json (edited or damaged)")
    if arrays["labels"].dtype != np.int64:
        raise ValueError(f"labels are {arrays['labels'].dtype}, not int64")
    for name in ("splits", "source_ids"):
        if arrays[name].dtype.kind != "U":
            raise ValueError(f"{name} are {arrays[name].dtype}, not text")
    dataset = FaceDataset(**arrays, name=meta["name"], synthetic=meta["synthetic"], report=report)
    bad_splits = [name for name in np.unique(dataset.splits).tolist() if not name or normalize_split(name) != name]
    if bad_splits:
        raise ValueError(f"unknown split names {bad_splits}")
    if layout is not None:
        _check_against_layout(dataset, layout)
    return dataset


def _array_digest(array: npt.NDArray[np.generic]) -> str:
    """SHA-256 of an array's type, shape and bytes (~55 ms for FER2013's 83 MB of faces; hashlib's
    SHA-256 runs on the CPU's SHA instructions, faster here than BLAKE2 or MD5)."""
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}\n".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _check_against_layout(dataset: FaceDataset, layout: _FolderLayout) -> None:
    """Every cached face must be a listed file, with the label and split its folders give it."""
    if len(dataset) + len(dataset.report.unreadable) != len(layout.source_ids) + len(layout.unreadable):
        raise ValueError("the number of faces does not match the files listed")
    source_ids = dataset.source_ids.tolist()
    if len(set(source_ids)) != len(source_ids):
        raise ValueError("a file appears twice")
    expected = dict(zip(layout.source_ids, zip(layout.splits, layout.labels, strict=True), strict=True))
    for source_id, split_name, label in zip(source_ids, dataset.splits.tolist(), dataset.labels.tolist(), strict=True):
        if expected.get(source_id) != (split_name, label):
            raise ValueError(f"{source_id} has a split or label its folders do not give it")
