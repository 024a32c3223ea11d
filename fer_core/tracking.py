"""Faces followed from one video frame to the next, so live labels do not flicker.

:class:`FaceTracker` matches each frame's face boxes to the tracks of earlier frames by box overlap
(IoU), gives every track an id, and smooths each track's class probabilities with an exponential
moving average. A track that is not seen for more than ``max_missed`` frames is dropped; until then
it keeps its last box, so a face the detector misses for a frame or two does not blink.

    tracker = FaceTracker(smoothing=0.6)
    for bgr_frame in frames:
        predictions = predictor.predict(bgr_frame)
        faces = tracker.update([p.box for p in predictions], [p.scores for p in predictions])

Every frame is detected in full (:mod:`fer_core.video`): YuNet on the video preset's half-size scan
costs a few milliseconds, and searching only near known faces between full scans (this module's
``FaceFinder`` until it was measured against it, in scripts/bench_live.py at commit a281f24) was 1.4x
faster per frame but lost the face in 12 of 270 frames where the full scan lost none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from fer_core.detect import Box
from fer_core.labels import EMOTIONS, NUM_CLASSES, UNCERTAIN

DEFAULT_SMOOTHING = 0.6  # weight of the past in the moving average: 0 = no smoothing
DEFAULT_IOU_THRESHOLD = 0.3  # the least overlap for a box to continue a track
DEFAULT_MAX_CENTER_SHIFT = 0.5  # a box not overlapping enough may still continue a track this near
DEFAULT_MAX_MISSED = 5  # frames a track survives unseen


class TrackedFace(NamedTuple):
    track_id: int  # 1, 2, ... in order of appearance; never reused within a tracker
    box: Box  # the latest box, in frame pixels
    scores: npt.NDArray[np.float32]  # smoothed probabilities, one per class in EMOTIONS order, sum 1
    missed: int  # frames since the face was last seen: 0 = in this frame

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(np.argmax(self.scores))]

    @property
    def confidence(self) -> float:
        return float(np.max(self.scores))

    @property
    def area(self) -> int:
        return self.box.width * self.box.height

    def label(self, threshold: float = 0.0) -> str:
        """The emotion, or ``"uncertain"`` when the confidence is below ``threshold``."""
        return self.emotion if self.confidence >= threshold else UNCERTAIN


@dataclass
class _Track:
    track_id: int
    box: Box
    scores: npt.NDArray[np.float32]
    missed: int = 0

    def snapshot(self) -> TrackedFace:
        return TrackedFace(self.track_id, self.box, self.scores.copy(), self.missed)


def match_boxes(
    previous: Sequence[Box],
    current: Sequence[Box],
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_center_shift: float = DEFAULT_MAX_CENTER_SHIFT,
) -> list[tuple[int, int]]:
    """Pairs ``(previous index, current index)``, each box used at most once.

    Best overlap (IoU) first; then, for boxes still unpaired, the nearest centres, when they moved
    less than ``max_center_shift`` times the box width and the size changed less than 1.5 times: at
    a low frame rate a face can move out of its old box between two processed frames. Greedy
    matching is enough for the handful of faces in a webcam frame.
    """
    by_overlap = sorted(
        (
            (previous_box.iou(current_box), i, j)
            for i, previous_box in enumerate(previous)
            for j, current_box in enumerate(current)
        ),
        reverse=True,
    )
    pairs: list[tuple[int, int]] = []
    used_previous: set[int] = set()
    used_current: set[int] = set()
    for overlap, i, j in by_overlap:
        if overlap < iou_threshold or overlap <= 0.0:
            break
        if i not in used_previous and j not in used_current:
            pairs.append((i, j))
            used_previous.add(i)
            used_current.add(j)
    by_distance = sorted(
        (_center_shift(previous[i], current[j]), i, j)
        for i in range(len(previous))
        for j in range(len(current))
        if i not in used_previous and j not in used_current and _similar_size(previous[i], current[j])
    )
    for shift, i, j in by_distance:
        if shift > max_center_shift:
            break
        if i not in used_previous and j not in used_current:
            pairs.append((i, j))
            used_previous.add(i)
            used_current.add(j)
    return pairs


def _center_shift(first: Box, second: Box) -> float:
    """How far the centres are apart, in widths of the larger box."""
    dx = (first.x + first.width / 2) - (second.x + second.width / 2)
    dy = (first.y + first.height / 2) - (second.y + second.height / 2)
    return float(np.hypot(dx, dy)) / max(1, first.width, second.width)


def _similar_size(first: Box, second: Box) -> bool:
    return max(first.width, second.width) <= 1.5 * max(1, min(first.width, second.width))


class FaceTracker:
    """Face tracks across frames: ids, IoU matching, per-track moving average of probabilities.

    ``smoothing`` is the weight the average keeps from the past at each frame (0 <= s < 1):
    0 shows every frame's raw probabilities, 0.8 settles over about five frames.
    """

    def __init__(
        self,
        *,
        smoothing: float = DEFAULT_SMOOTHING,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_missed: int = DEFAULT_MAX_MISSED,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be 0 or more frames, got {max_missed}")
        self.smoothing = smoothing
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def smoothing(self) -> float:
        return self._smoothing

    @smoothing.setter
    def smoothing(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {value}")
        self._smoothing = float(value)

    def update(
        self, boxes: Sequence[Box], scores: Sequence[npt.NDArray[np.float32]] | npt.NDArray[np.float32]
    ) -> list[TrackedFace]:
        """Feed one frame's faces; returns every live track (seen now or lately), oldest first."""
        score_rows = np.asarray(scores, dtype=np.float32).reshape(-1, NUM_CLASSES)
        if len(boxes) != len(score_rows):
            raise ValueError(f"got {len(boxes)} boxes but {len(score_rows)} rows of scores")
        pairs = match_boxes([track.box for track in self._tracks], boxes, self.iou_threshold)
        matched_tracks = {i for i, _ in pairs}
        matched_boxes = {j for _, j in pairs}
        for i, j in pairs:
            track = self._tracks[i]
            track.box = boxes[j]
            track.scores = _normalized(self._smoothing * track.scores + (1.0 - self._smoothing) * score_rows[j])
            track.missed = 0
        for i, track in enumerate(self._tracks):
            if i not in matched_tracks:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= self.max_missed]
        for j, box in enumerate(boxes):
            if j not in matched_boxes:
                self._tracks.append(_Track(self._next_id, box, _normalized(score_rows[j])))
                self._next_id += 1
        return self.faces()

    def faces(self) -> list[TrackedFace]:
        return [track.snapshot() for track in self._tracks]

    def reset(self) -> None:
        """Forget every track; ids keep counting up so old records stay unambiguous."""
        self._tracks = []


def _normalized(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    total = float(scores.sum())
    if total <= 0.0 or not np.isfinite(total):
        return np.full(NUM_CLASSES, 1.0 / NUM_CLASSES, np.float32)
    return (scores / total).astype(np.float32)
