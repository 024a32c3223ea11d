"""Data-quality facts about a loaded data set: blank images, exact duplicates, label conflicts.

Pure numpy and vectorized, so all 32,298 FER2013 faces are checked in about a second. FER2013 has
all three: a dozen all-black images, placeholders ("this image has been moved or deleted", a warning
triangle) that are nearly one gray value, and over a thousand groups of byte-identical images, some
of them filed under two different emotions or in both train and test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.data import FaceDataset, LoadReport
from fer_core.labels import EMOTIONS
from fer_core.preprocess import FACE_SIZE

NEAR_BLANK_MAX_STD = 2.0  # gray levels: below this an image is one flat tone
NEAR_BLANK_MIN_DOMINANT = 0.8  # share of pixels with the single most common value
_CHUNK = 1024  # images per vectorized step: bounds the temporary arrays to ~20 MB


class PixelStats(NamedTuple):
    std: npt.NDArray[np.float64]  # standard deviation of each image's pixels, in gray levels
    dominant_fraction: npt.NDArray[np.float64]  # share of each image's pixels holding its most common value


class Imbalance(NamedTuple):
    """The most and the least common class of one split."""

    most_common: str
    most_count: int
    least_common: str  # the rarest class that has any faces
    least_count: int
    missing: tuple[str, ...]  # classes with no faces at all

    @property
    def ratio(self) -> float:
        """How many times rarer the least common class is than the most common one."""
        return self.most_count / self.least_count if self.least_count else float("inf")


class MeanFaces(NamedTuple):
    """The average face of each emotion, in :data:`EMOTIONS` order."""

    faces: npt.NDArray[np.uint8]  # (7, 48, 48): the pixel-wise mean, mid-gray (128) for a class with no faces
    counts: tuple[int, ...]  # how many faces went into each mean


class DuplicateGroup(NamedTuple):
    """Images with byte-identical pixels."""

    indices: tuple[int, ...]  # positions in the data set, ascending
    labels: tuple[int, ...]  # label code of each image
    splits: tuple[str, ...]  # split of each image

    @property
    def conflicting(self) -> bool:
        """The same pixels filed under more than one emotion."""
        return len(set(self.labels)) > 1

    @property
    def cross_split(self) -> bool:
        """The same pixels in more than one split (e.g. train and test: a leak)."""
        return len(set(self.splits)) > 1


@dataclass(frozen=True)
class QualityReport:
    """Everything suspicious about one data set, found at load time or by looking at the pixels."""

    near_blank: npt.NDArray[np.int64]  # indices of images that are flat or nearly one value
    duplicate_groups: tuple[DuplicateGroup, ...]  # largest first
    resized: npt.NDArray[np.int64]  # indices of images that were not 48x48 on disk
    load_report: LoadReport

    @property
    def conflicting_groups(self) -> tuple[DuplicateGroup, ...]:
        return tuple(group for group in self.duplicate_groups if group.conflicting)

    @property
    def cross_split_groups(self) -> tuple[DuplicateGroup, ...]:
        return tuple(group for group in self.duplicate_groups if group.cross_split)

    @property
    def duplicate_images(self) -> int:
        """Images in duplicate groups (every copy counted)."""
        return sum(len(group.indices) for group in self.duplicate_groups)

    @property
    def redundant_copies(self) -> int:
        """Images that could be dropped, keeping one of each group."""
        return sum(len(group.indices) - 1 for group in self.duplicate_groups)


def pixel_stats(images: npt.NDArray[np.uint8]) -> PixelStats:
    """Per-image pixel standard deviation and dominant-value share, from one histogram per image."""
    flat = _flatten(images)
    count, pixels = flat.shape
    std = np.empty(count, dtype=np.float64)
    dominant = np.empty(count, dtype=np.float64)
    values = np.arange(256, dtype=np.float64)
    # One bincount over (row * 256 + value) gives every row's 256-bin histogram at once. The index is
    # built as intp in place: bincount would otherwise copy a narrower index array once more.
    offsets = (np.arange(_CHUNK, dtype=np.intp) * 256)[:, None]
    for start in range(0, count, _CHUNK):
        chunk = flat[start : start + _CHUNK]
        rows = len(chunk)
        index = chunk.astype(np.intp)
        index += offsets[:rows]
        histograms = np.bincount(index.ravel(), minlength=rows * 256).reshape(rows, 256)
        mean = histograms @ values / pixels
        mean_square = histograms @ (values * values) / pixels
        std[start : start + rows] = np.sqrt(np.maximum(mean_square - mean * mean, 0.0))
        dominant[start : start + rows] = histograms.max(axis=1) / pixels
    return PixelStats(std=std, dominant_fraction=dominant)


def pixel_histogram(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """How many pixels of ``images`` have each gray level 0-255.

    Counted in chunks: one ``np.bincount`` over all 74 million FER2013 pixels first copies them to a
    600 MB index array and takes seconds; chunk by chunk it takes ~0.2 s.
    """
    flat = _flatten(images)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(flat), _CHUNK):
        counts += np.bincount(flat[start : start + _CHUNK].ravel(), minlength=256)
    return counts


def find_near_blank(
    images: npt.NDArray[np.uint8],
    *,
    max_std: float = NEAR_BLANK_MAX_STD,
    min_dominant_fraction: float = NEAR_BLANK_MIN_DOMINANT,
) -> npt.NDArray[np.int64]:
    """Indices of images that are flat (pixel std below ``max_std``) or nearly all one value
    (at least ``min_dominant_fraction`` of the pixels share one gray level)."""
    if not 0 < min_dominant_fraction <= 1:
        raise ValueError(f"min_dominant_fraction must be in (0, 1], got {min_dominant_fraction}")
    stats = pixel_stats(images)
    blank = (stats.std < max_std) | (stats.dominant_fraction >= min_dominant_fraction)
    return np.flatnonzero(blank).astype(np.int64)


def find_duplicate_groups(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], splits: npt.NDArray[np.str_]
) -> tuple[DuplicateGroup, ...]:
    """Groups of two or more images with identical pixels, largest group first.

    Two random 64-bit linear hashes of each image pick the candidates in one matrix product; the
    candidates are then grouped by their exact bytes, so a hash collision can never merge two
    different images.
    """
    flat = _flatten(images)
    count = len(flat)
    if not len(labels) == len(splits) == count:
        raise ValueError("images, labels and splits must have the same length")
    if count < 2:
        return ()
    keys = _hash_rows(flat)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse.ravel()] > 1)
    if candidates.size == 0:
        return ()
    candidate_rows = np.ascontiguousarray(flat[candidates]).view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, group_of = np.unique(candidate_rows, return_inverse=True)
    group_of = group_of.ravel()
    order = np.lexsort((candidates, group_of))  # by group, then by position in the data set
    boundaries = np.flatnonzero(np.diff(group_of[order])) + 1
    groups = []
    for members in np.split(candidates[order], boundaries):
        if len(members) > 1:
            indices = tuple(int(index) for index in members)
            groups.append(
                DuplicateGroup(
                    indices=indices,
                    labels=tuple(int(labels[index]) for index in indices),
                    splits=tuple(str(splits[index]) for index in indices),
                )
            )
    groups.sort(key=lambda group: (-len(group.indices), group.indices[0]))
    return tuple(groups)


def class_imbalance(counts: Mapping[str, int]) -> Imbalance:
    """The extremes of ``{emotion: count}``; ties go to the first class in the mapping's order."""
    present = {emotion: count for emotion, count in counts.items() if count > 0}
    if not present:
        raise ValueError("no class has any faces")
    most_common = max(present, key=lambda emotion: present[emotion])
    least_common = min(present, key=lambda emotion: present[emotion])
    return Imbalance(
        most_common=most_common,
        most_count=present[most_common],
        least_common=least_common,
        least_count=present[least_common],
        missing=tuple(emotion for emotion, count in counts.items() if count <= 0),
    )


def mean_faces(dataset: FaceDataset, split: str | None = None) -> MeanFaces:
    """The pixel-wise mean face of each emotion in ``split`` (None: every split), rounded to uint8."""
    in_split = np.ones(len(dataset), dtype=bool) if split is None else dataset.splits == split
    faces = np.full((len(EMOTIONS), FACE_SIZE, FACE_SIZE), 128, dtype=np.uint8)
    counts = []
    for label in range(len(EMOTIONS)):
        members = dataset.images[in_split & (dataset.labels == label)]  # one class at a time: no full copy
        counts.append(len(members))
        if len(members):
            faces[label] = np.round(members.mean(axis=0, dtype=np.float64)).astype(np.uint8)
    return MeanFaces(faces=faces, counts=tuple(counts))


def analyze_quality(dataset: FaceDataset) -> QualityReport:
    """All quality checks on ``dataset``, plus what its loader reported."""
    resized = np.flatnonzero(np.isin(dataset.source_ids, np.array(dataset.report.resized, dtype=str)))
    return QualityReport(
        near_blank=find_near_blank(dataset.images),
        duplicate_groups=find_duplicate_groups(dataset.images, dataset.labels, dataset.splits),
        resized=resized.astype(np.int64),
        load_report=dataset.report,
    )


def _flatten(images: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim < 2:
        raise ValueError(f"expected uint8 images of shape (N, H, W), got {array.dtype} {array.shape}")
    return array.reshape(len(array), int(np.prod(array.shape[1:])))


def _hash_rows(flat: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """Two 64-bit hashes per row (shape (N, 2)): sums of the row's 8-byte words times random odd weights."""
    count, width = flat.shape
    padded_width = -(-width // 8) * 8
    if padded_width != width:
        flat = np.pad(flat, ((0, 0), (0, padded_width - width)))
    words = np.ascontiguousarray(flat).view(np.uint64)
    weights = np.random.default_rng(0).integers(0, 2**63, size=(words.shape[1], 2), dtype=np.uint64) * 2 + 1
    keys = np.empty((count, 2), dtype=np.uint64)
    for start in range(0, count, _CHUNK):
        keys[start : start + _CHUNK] = words[start : start + _CHUNK] @ weights  # wraps modulo 2**64
    return keys
