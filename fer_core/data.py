"""Loading FER2013 (and data sets shaped like it) into one in-memory form.

Three layouts are understood, all producing a :class:`FaceDataset`:

* the Kaggle folder layout: ``<root>/train/<class>/*.jpg``, ``<root>/test/<class>/*``, optional ``val/``;
* a single folder of class subfolders (``<root>/<class>/*``), loaded as one split;
* the original challenge CSV (``emotion,pixels,Usage``).

Decoded arrays are cached on disk, keyed by every file's path, size and mtime, so a second
load of the 35,887 FER2013 images takes a fraction of a second.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.errors import DatasetError
from fer_core.labels import EMOTIONS, label_from_name
from fer_core.preprocess import FACE_SIZE, to_gray48

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm"})
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
CACHE_VERSION = 1
_PIXELS_PER_FACE = FACE_SIZE * FACE_SIZE


@dataclass(frozen=True)
class LoadReport:
    """What the loader noticed and worked around. Nothing in here stopped the load."""

    unreadable: tuple[str, ...] = ()  # files that could not be decoded (skipped)
    resized: tuple[str, ...] = ()  # images that were not 48x48 (converted with to_gray48)
    skipped_folders: tuple[str, ...] = ()  # folders that are not a FER2013 class (e.g. contempt)
    bad_rows: tuple[str, ...] = ()  # CSV rows skipped, each "line N: reason"

    @property
    def problem_count(self) -> int:
        return len(self.unreadable) + len(self.bad_rows) + len(self.skipped_folders)


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
        n = len(self.images)
        if self.images.shape[1:] != (FACE_SIZE, FACE_SIZE) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, 48, 48), got {self.images.dtype} {self.images.shape}")
        if not (len(self.labels) == len(self.splits) == len(self.source_ids) == n):
            raise ValueError("images, labels, splits and source_ids must have the same length")

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
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path} is a file but not a .csv: point at a FER2013 CSV or a folder of class folders")
        return _cached(path, [path], lambda: load_csv(path), cache_dir, use_cache)
    layout = _folder_layout(path, split)
    files = [file for _, _, file in layout]
    return _cached(path, files, lambda: _load_files(path, layout), cache_dir, use_cache, extra=repr(split))


def _class_folders(folder: Path) -> tuple[list[tuple[int, Path]], list[str]]:
    classes: list[tuple[int, Path]] = []
    skipped: list[str] = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        label = label_from_name(child.name)
        if label is None:
            skipped.append(str(child))
        else:
            classes.append((label, child))
    return classes, skipped


_SKIPPED_KEY = "__skipped__"


def _folder_layout(root: Path, split: str | None) -> list[tuple[str, int, Path]]:
    """(split, label, file) for every image file under ``root``, in a stable order."""
    split_dirs = [
        (SPLIT_FOLDERS[child.name.lower()], child)
        for child in sorted(root.iterdir())
        if child.is_dir() and child.name.lower() in SPLIT_FOLDERS
    ]
    if not split_dirs:
        default_split = normalize_split(split) if split else SPLIT_FOLDERS.get(root.name.lower(), "train")
        split_dirs = [(default_split, root)]
    entries: list[tuple[str, int, Path]] = []
    skipped: list[str] = []
    for split_name, split_dir in split_dirs:
        classes, skipped_here = _class_folders(split_dir)
        skipped.extend(skipped_here)
        for label, class_dir in classes:
            for file in sorted(class_dir.iterdir()):
                if file.is_file() and not file.name.startswith("."):
                    entries.append((split_name, label, file))
    if not entries:
        expected = ", ".join(EMOTIONS)
        raise DatasetError(
            f"{root} has no images in class folders. Expected train/<class>/*.jpg and test/<class>/*.jpg "
            f"(Kaggle layout) or <class>/*.jpg, with <class> one of: {expected}"
        )
    # Skipped folders travel with the layout so the loader can report them.
    entries.extend((_SKIPPED_KEY, -1, Path(folder)) for folder in skipped)
    return entries


def _read_gray(file: Path) -> npt.NDArray[np.uint8] | None:
    data = np.fromfile(file, dtype=np.uint8)
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return image if image is not None and image.size else None


def _load_files(root: Path, layout: Sequence[tuple[str, int, Path]]) -> FaceDataset:
    skipped = tuple(str(file) for split_name, _, file in layout if split_name == _SKIPPED_KEY)
    entries = [entry for entry in layout if entry[0] != _SKIPPED_KEY]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        decoded = list(pool.map(_read_gray, (file for _, _, file in entries), chunksize=256))
    images: list[npt.NDArray[np.uint8]] = []
    keep: list[int] = []
    unreadable: list[str] = []
    resized: list[str] = []
    for index, (image, (_, _, file)) in enumerate(zip(decoded, entries, strict=True)):
        source_id = file.relative_to(root).as_posix()
        if image is None:
            unreadable.append(source_id)
            continue
        if image.shape != (FACE_SIZE, FACE_SIZE):
            resized.append(source_id)
            image = to_gray48(image)
        images.append(image)
        keep.append(index)
    if not images:
        raise DatasetError(f"none of the {len(entries)} files under {root} could be read as an image")
    kept = [entries[i] for i in keep]
    return FaceDataset(
        images=np.stack(images),
        labels=np.array([label for _, label, _ in kept], dtype=np.int64),
        splits=np.array([split_name for split_name, _, _ in kept]),
        source_ids=np.array([file.relative_to(root).as_posix() for _, _, file in kept]),
        name=root.name,
        report=LoadReport(unreadable=tuple(unreadable), resized=tuple(resized), skipped_folders=skipped),
    )


def load_csv(path: str | os.PathLike[str]) -> FaceDataset:
    """Load the original ``fer2013.csv``. Malformed rows are skipped and reported by line number."""
    csv_path = Path(path)
    images: list[npt.NDArray[np.uint8]] = []
    labels: list[int] = []
    splits: list[str] = []
    source_ids: list[str] = []
    bad_rows: list[str] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        missing = [name for name in ("emotion", "pixels") if name not in columns]
        if missing:
            found = ", ".join(reader.fieldnames or []) or "nothing"
            raise DatasetError(f"{csv_path.name} lacks the column(s) {', '.join(missing)} (found: {found})")
        usage_column = columns.get("usage")
        for row in reader:
            line = reader.line_num
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
    except ValueError:
        raise ValueError("pixels are not all integers") from None
    if values.size != _PIXELS_PER_FACE:
        raise ValueError(f"{values.size} pixel values, expected {_PIXELS_PER_FACE}")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values outside 0-255")
    return label, values.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE)


def _fingerprint(files: Iterable[Path], extra: str) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{extra}".encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _cached(
    root: Path,
    files: Sequence[Path],
    load: Callable[[], FaceDataset],
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool,
    extra: str = "",
) -> FaceDataset:
    if not use_cache:
        return load()
    cache_file = Path(cache_dir or default_cache_dir()) / f"dataset-{_fingerprint(files, extra)}.npz"
    if cache_file.exists():
        try:
            return _read_cache(cache_file)
        except (OSError, ValueError, KeyError):
            cache_file.unlink(missing_ok=True)  # a damaged cache is rebuilt, never trusted
    dataset = load()
    with contextlib.suppress(OSError):  # a read-only cache location only costs speed
        _write_cache(cache_file, dataset)
    return dataset


def _write_cache(cache_file: Path, dataset: FaceDataset) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    report = dataset.report
    temporary = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        temporary,
        images=dataset.images,
        labels=dataset.labels,
        splits=dataset.splits,
        source_ids=dataset.source_ids,
        name=np.array(dataset.name),
        synthetic=np.array(dataset.synthetic),
        unreadable=np.array(report.unreadable, dtype=str),
        resized=np.array(report.resized, dtype=str),
        skipped_folders=np.array(report.skipped_folders, dtype=str),
        bad_rows=np.array(report.bad_rows, dtype=str),
    )
    os.replace(temporary, cache_file)


def _read_cache(cache_file: Path) -> FaceDataset:
    with np.load(cache_file, allow_pickle=False) as stored:
        return FaceDataset(
            images=stored["images"],
            labels=stored["labels"],
            splits=stored["splits"],
            source_ids=stored["source_ids"],
            name=str(stored["name"]),
            synthetic=bool(stored["synthetic"]),
            report=LoadReport(
                unreadable=tuple(stored["unreadable"].tolist()),
                resized=tuple(stored["resized"].tolist()),
                skipped_folders=tuple(stored["skipped_folders"].tolist()),
                bad_rows=tuple(stored["bad_rows"].tolist()),
            ),
        )
