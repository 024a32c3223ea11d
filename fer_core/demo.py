"""The built-in demo data set: synthetic 48x48 cartoon faces, drawn by this module.

It exists so a fresh machine has something to browse, train on and test with, with no download.
Every face is drawn from a fixed seed, so the set is identical everywhere. Expressions differ the
way real ones do (mouth curvature and opening, brow angle and height, eye opening), with random
pose, lighting, contrast, blur and noise on top, so a small CNN learns it well but not trivially.
It is written once to the cache folder in the Kaggle layout and then loaded through the same code
path as FER2013. It is synthetic: nothing learnt from it says anything about real faces.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2  # untyped here (pyproject.toml): cast() states the array each call returns
import numpy as np
import numpy.typing as npt

from fer_core.files import temporary_path
from fer_core.labels import EMOTIONS
from fer_core.preprocess import FACE_SIZE

DEMO_VERSION = 1
DEMO_SEED = 2013
DEMO_COUNTS = {"train": 240, "test": 60}  # per class
DEMO_NAME = "demo (synthetic)"
_COMPLETE_MARKER = ".complete"  # written last: a folder without it is incomplete
_SCALE = 4  # draw at 4x and downsample, for smooth anti-aliased strokes


@dataclass(frozen=True)
class Expression:
    mouth_curve: float  # + smile, - frown (pixels at 48x48)
    mouth_open: float  # height of the open mouth
    mouth_width: float
    brow_tilt: float  # + inner ends down (angry), - inner ends up (sad, fear)
    brow_raise: float  # + higher above the eyes
    eye_open: float  # eye height
    asymmetry: float = 0.0  # one-sided lip raise (disgust)


EXPRESSIONS: dict[str, Expression] = {
    "angry": Expression(mouth_curve=-1.0, mouth_open=0.0, mouth_width=9, brow_tilt=3.0, brow_raise=-1.0, eye_open=1.6),
    "disgust": Expression(
        mouth_curve=-1.5, mouth_open=1.0, mouth_width=10, brow_tilt=1.5, brow_raise=-1.5, eye_open=1.2, asymmetry=2.5
    ),
    "fear": Expression(mouth_curve=-0.5, mouth_open=3.0, mouth_width=12, brow_tilt=-2.0, brow_raise=2.0, eye_open=3.2),
    "happy": Expression(mouth_curve=3.5, mouth_open=1.0, mouth_width=13, brow_tilt=0.0, brow_raise=0.5, eye_open=1.8),
    "sad": Expression(mouth_curve=-3.0, mouth_open=0.0, mouth_width=10, brow_tilt=-2.5, brow_raise=0.5, eye_open=1.8),
    "surprise": Expression(mouth_curve=0.0, mouth_open=6.0, mouth_width=7, brow_tilt=0.0, brow_raise=3.5, eye_open=3.5),
    "neutral": Expression(mouth_curve=0.0, mouth_open=0.0, mouth_width=10, brow_tilt=0.0, brow_raise=0.5, eye_open=2.2),
}


def draw_face(emotion: str, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """One 48x48 uint8 face showing ``emotion``, varied by ``rng``."""
    base = EXPRESSIONS[emotion]
    jitter = lambda value, spread: value + rng.normal(0, spread)  # noqa: E731
    size = FACE_SIZE * _SCALE
    background = rng.uniform(20, 200)
    canvas = np.full((size, size), background, np.float32)
    canvas += np.linspace(-1, 1, size)[None, :] * rng.uniform(-30, 30)  # side lighting
    skin = float(np.clip(background + rng.choice([-1, 1]) * rng.uniform(40, 90), 60, 235))
    ink = max(0.0, skin - rng.uniform(70, 120))

    def p(x: float, y: float) -> tuple[int, int]:
        return round(x * _SCALE), round(y * _SCALE)

    cx, cy = 24 + rng.normal(0, 1.5), 25 + rng.normal(0, 1.5)
    face_w, face_h = rng.uniform(15, 18), rng.uniform(19, 22)
    cv2.ellipse(canvas, p(cx, cy), p(face_w, face_h), 0, 0, 360, skin, -1, cv2.LINE_AA)
    stroke = max(1, round(rng.uniform(0.8, 1.3) * _SCALE))

    eye_y = cy - 4 + rng.normal(0, 0.5)
    eye_dx = rng.uniform(6, 7.5)
    eye_open = max(0.5, jitter(base.eye_open, 0.35))
    brow_raise = jitter(base.brow_raise, 0.5)
    brow_tilt = jitter(base.brow_tilt, 0.5)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(canvas, p(ex, eye_y), p(2.6, eye_open), 0, 0, 360, ink, -1, cv2.LINE_AA)
        brow_y = eye_y - 4.5 - brow_raise
        inner = (ex - side * 2.5, brow_y + brow_tilt / 2)
        outer = (ex + side * 3.5, brow_y - brow_tilt / 2)
        cv2.line(canvas, p(*inner), p(*outer), ink, stroke, cv2.LINE_AA)
    nose_y = cy + 3
    cv2.line(canvas, p(cx, eye_y + 2), p(cx - 1, nose_y), ink * 0.5 + skin * 0.5, stroke, cv2.LINE_AA)

    mouth_y = cy + 9 + rng.normal(0, 0.5)
    half_width = max(3.0, jitter(base.mouth_width, 1.0)) / 2
    curve = jitter(base.mouth_curve, 0.5)
    opening = max(0.0, jitter(base.mouth_open, 0.5))
    lift = jitter(base.asymmetry, 0.5) * rng.choice([-1, 1]) if base.asymmetry else 0.0
    xs = np.linspace(-half_width, half_width, 24)
    lip = mouth_y - curve * (1 - (xs / half_width) ** 2) * -1 - curve
    lip = lip - lift * (xs / half_width + 1) / 2
    upper = np.stack([cx + xs, lip - opening / 2], axis=1)
    lower = np.stack([cx + xs, lip + opening / 2], axis=1)[::-1]
    if opening > 1.0:
        polygon = (np.concatenate([upper, lower]) * _SCALE).round().astype(np.int32)
        cv2.fillPoly(canvas, [polygon], ink * 0.6, cv2.LINE_AA)
    else:
        cv2.polylines(canvas, [(upper * _SCALE).round().astype(np.int32)], False, ink, stroke, cv2.LINE_AA)

    angle = rng.normal(0, 7)
    scale = rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    canvas = cv2.warpAffine(canvas, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
    face = cast("npt.NDArray[np.float32]", cv2.resize(canvas, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA))
    if rng.random() < 0.5:
        face = cv2.GaussianBlur(face, (3, 3), rng.uniform(0.3, 1.0))
    mean = float(face.mean())
    face = (face - mean) * rng.uniform(0.7, 1.2) + mean
    face += rng.normal(0, rng.uniform(3, 10), face.shape)
    return np.clip(face, 0, 255).astype(np.uint8)


def demo_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the demo set in the Kaggle layout (once) and return its folder.

    The faces are drawn into a private temporary folder that is renamed into place when complete, so
    another process (the app and a test run, say) never reads a half-written set.
    """
    from fer_core.data import default_cache_dir

    root = Path(cache_dir or default_cache_dir()) / f"demo-v{DEMO_VERSION}"
    if (root / _COMPLETE_MARKER).exists():
        return root
    temporary = temporary_path(root)
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write_demo_faces(temporary)
        if root.exists() and not (root / _COMPLETE_MARKER).exists():
            shutil.rmtree(root, ignore_errors=True)  # left behind by an interrupted older version
        with contextlib.suppress(OSError):  # another process got there first: its copy is identical
            temporary.rename(root)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root


def _write_demo_faces(root: Path) -> None:
    rng = np.random.default_rng(DEMO_SEED)
    for split_name, per_class in DEMO_COUNTS.items():
        for emotion in EMOTIONS:
            folder = root / split_name / emotion
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                cv2.imwrite(str(folder / f"demo_{split_name}_{emotion}_{index:04d}.png"), draw_face(emotion, rng))
    (root / _COMPLETE_MARKER).touch()
