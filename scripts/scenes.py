"""Synthetic scenes for the benchmarks: real FER2013 faces, upscaled, pasted into 640x480 textured
scenes, upright or rotated, alone or in groups, or squeezed to look turned. The truth (where each face
is, its label, its original 48x48 crop) comes with each scene. Deterministic for a seed.

Nothing here is used by the app or the tests; ``bench_detection.py``, ``bench_photo.py`` and
``bench_live.py`` build their inputs with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Box
from fer_core.labels import EMOTIONS

WIDTH, HEIGHT = 640, 480
KINDS = ("upright", "rotated", "small", "large", "group", "turned", "empty")


@dataclass(frozen=True)
class PastedFace:
    box: Box  # the pasted square before rotation, in scene pixels
    label: int
    gray_face: npt.NDArray[np.uint8]  # the original 48x48 face
    angle: float  # degrees, counter-clockwise


@dataclass(frozen=True)
class Scene:
    kind: str
    bgr_image: npt.NDArray[np.uint8]
    faces: tuple[PastedFace, ...]


def load_faces(fer2013_dir: Path, split: str, per_class: int, seed: int = 0) -> list[tuple[npt.NDArray[np.uint8], int]]:
    """``per_class`` faces of each class of ``split`` (fewer where a class has fewer), shuffled."""
    rng = np.random.default_rng(seed)
    faces = []
    for label, emotion in enumerate(EMOTIONS):
        files = sorted((fer2013_dir / split / emotion).glob("*.jpg"))
        for index in rng.permutation(len(files))[:per_class]:
            faces.append((cv2.imread(str(files[index]), cv2.IMREAD_GRAYSCALE), label))
    order = rng.permutation(len(faces))
    return [faces[index] for index in order]


def textured_background(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> npt.NDArray[np.uint8]:
    """Blotches, stripes and grain: something for a detector to work through."""
    blotches = cv2.resize(rng.uniform(60, 200, (height // 40 + 2, width // 40 + 2, 3)), (width, height))
    grain = rng.normal(0, 12, (height, width, 3))
    stripes = 15 * np.sin(np.arange(width) / rng.uniform(5, 9))[None, :, None]
    return np.clip(blotches + grain + stripes, 0, 255).astype(np.uint8)


def paste(
    bgr_image: npt.NDArray[np.uint8],
    gray_face: npt.NDArray[np.uint8],
    box: Box,
    *,
    angle: float = 0.0,
    squeeze: float = 1.0,
) -> None:
    """Paste ``gray_face`` upscaled into ``box`` (in place), rotated by ``angle`` degrees about its centre
    and squeezed horizontally towards one side by ``squeeze`` (< 1: a head turned away)."""
    size = box.width
    face = cv2.resize(gray_face, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    mask = np.ones((size, size), np.float32)
    if squeeze != 1.0:  # a perspective squeeze: the far side of the face gets narrower and shorter
        near, far = size, size * squeeze
        source = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
        inset = (size - far) / 2
        target = np.float32(
            [[0, 0], [near * (0.5 + squeeze / 2), inset], [near * (0.5 + squeeze / 2), size - inset], [0, size]]
        )
        matrix = cv2.getPerspectiveTransform(source, target)
        face = cv2.warpPerspective(face, matrix, (size, size), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(mask, matrix, (size, size), flags=cv2.INTER_LINEAR)
    if angle:
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        face = cv2.warpAffine(face, matrix, (size, size), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(mask, matrix, (size, size), flags=cv2.INTER_LINEAR)
    region = bgr_image[box.y : box.y + size, box.x : box.x + size].astype(np.float32)
    blended = region * (1 - mask[..., None]) + face[..., None] * mask[..., None]
    bgr_image[box.y : box.y + size, box.x : box.x + size] = np.clip(blended, 0, 255).astype(np.uint8)


def _place(rng: np.random.Generator, size: int, taken: Sequence[Box]) -> Box | None:
    for _ in range(50):
        x, y = int(rng.integers(0, WIDTH - size + 1)), int(rng.integers(0, HEIGHT - size + 1))
        box = Box(x, y, size, size)
        if all(box.iou(other) == 0 and not _near(box, other) for other in taken):
            return box
    return None


def _near(first: Box, second: Box) -> bool:
    gap = 10
    return not (
        first.x + first.width + gap < second.x
        or second.x + second.width + gap < first.x
        or first.y + first.height + gap < second.y
        or second.y + second.height + gap < first.y
    )


def make_scene(kind: str, faces: Sequence[tuple[npt.NDArray[np.uint8], int]], rng: np.random.Generator) -> Scene:
    """One scene of ``kind`` (see ``KINDS``) with faces taken from the front of ``faces``."""
    bgr_image = textured_background(rng)
    count = {"group": int(rng.integers(2, 4)), "empty": 0}.get(kind, 1)
    pasted: list[PastedFace] = []
    for gray_face, label in faces[:count]:
        size = {
            "small": int(rng.integers(40, 80)),
            "large": int(rng.integers(220, 301)),
            "group": int(rng.integers(80, 150)),
        }.get(kind, int(rng.integers(90, 220)))
        box = _place(rng, size, [face.box for face in pasted])
        if box is None:
            break
        angle = float(rng.choice([-1, 1]) * rng.uniform(10, 25)) if kind == "rotated" else 0.0
        squeeze = float(rng.uniform(0.55, 0.75)) if kind == "turned" else 1.0
        paste(bgr_image, gray_face, box, angle=angle, squeeze=squeeze)
        pasted.append(PastedFace(box, label, gray_face, angle))
    return Scene(kind, bgr_image, tuple(pasted))


def make_scenes(
    faces: Sequence[tuple[npt.NDArray[np.uint8], int]], per_kind: int, seed: int = 0, kinds: Sequence[str] = KINDS
) -> list[Scene]:
    """``per_kind`` scenes of each kind, the faces used in turn (each face once while they last)."""
    rng = np.random.default_rng(seed)
    scenes, position = [], 0
    for kind in kinds:
        for _ in range(per_kind):
            needed = 3 if kind == "group" else 1
            chosen = [faces[(position + offset) % len(faces)] for offset in range(needed)]
            scene = make_scene(kind, chosen, rng)
            position += len(scene.faces)
            scenes.append(scene)
    return scenes


def matches(found: Box, truth: Box) -> bool:
    """A detection is the pasted face when its centre lies in the face's middle half and its height is
    within a factor of two of the face's (detectors frame faces differently: a IoU rule would favour one)."""
    centre_x, centre_y = found.x + found.width / 2, found.y + found.height / 2
    inner = truth.width / 4
    inside = (truth.x + inner <= centre_x <= truth.x + truth.width - inner) and (
        truth.y + inner <= centre_y <= truth.y + truth.height - inner
    )
    return inside and 0.5 <= found.height / truth.height <= 2.0
