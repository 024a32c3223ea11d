"""Images and models the inference and Photos tests build: real FER2013 faces pasted on textured
canvases at known places, image files in awkward formats, tiny Keras models, and the committed served
models of tests/fixtures/models. Nothing downloads."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import PHOTO_PRESET, Box, FaceDetector, make_detector
from fer_core.labels import EMOTIONS

FACE_CLASSES = ("happy", "neutral", "surprise")
FIXTURE_MODELS_DIR = Path(__file__).resolve().parent / "fixtures" / "models"


def fer_faces(fer2013_dir: Path, count: int = 60, classes: Sequence[str] = FACE_CLASSES) -> list[npt.NDArray[np.uint8]]:
    """The first ``count`` test-split faces of ``classes`` (interleaved), as 48x48 uint8 arrays."""
    per_class = [sorted((fer2013_dir / "test" / name).glob("*.jpg")) for name in classes]
    files = [file for group in zip(*per_class, strict=False) for file in group][:count]
    return [cv2.imread(str(file), cv2.IMREAD_GRAYSCALE) for file in files]


def detectable_faces(
    faces: Sequence[npt.NDArray[np.uint8]], size: int, count: int, detector: FaceDetector | None = None
) -> list[npt.NDArray[np.uint8]]:
    """The first ``count`` faces the detector (by default the photo preset's) finds where they are when
    upscaled to ``size`` on a plain background. Detectors miss some FER2013 faces (they are small, tight
    crops); the tests choose the ones found, by running the detector."""
    detector = detector or make_detector(PHOTO_PRESET.with_options(min_face_size=min(40, size // 2)))
    chosen = []
    for face in faces:
        canvas = np.full((size * 2, size * 2), 128, np.uint8)
        canvas[size // 2 : size // 2 + size, size // 2 : size // 2 + size] = upscale(face, size)
        target = Box(size // 2, size // 2, size, size)
        if any(is_the_face(found.box, target) for found in detector.detect(canvas)):
            chosen.append(face)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"the detector found only {len(chosen)} of {len(faces)} faces; need {count}")


def is_the_face(found: Box, pasted: Box) -> bool:
    """A detector's box is the pasted face when its centre lies in the face's middle half at about its
    height (YuNet's boxes are narrower than the pasted square, Haar's about as wide)."""
    centre_x, centre_y = found.x + found.width / 2, found.y + found.height / 2
    inner = pasted.width / 4
    inside = (pasted.x + inner <= centre_x <= pasted.x + pasted.width - inner) and (
        pasted.y + inner <= centre_y <= pasted.y + pasted.height - inner
    )
    return inside and 0.6 <= found.height / pasted.height <= 1.6


def upscale(gray_face: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    return cv2.resize(gray_face, (size, size), interpolation=cv2.INTER_CUBIC)


def textured_background(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A BGR background with blotches, stripes and grain: something for a detector to work through."""
    rng = np.random.default_rng(seed)
    blotches = cv2.resize(rng.uniform(60, 200, (height // 40 + 2, width // 40 + 2, 3)), (width, height))
    grain = rng.normal(0, 12, (height, width, 3))
    stripes = 15 * np.sin(np.arange(width) / 7.0)[None, :, None]
    return np.clip(blotches + grain + stripes, 0, 255).astype(np.uint8)


def paste_faces(
    background: npt.NDArray[np.uint8],
    faces: Sequence[npt.NDArray[np.uint8]],
    places: Sequence[tuple[int, int]],
    size: int,
) -> tuple[npt.NDArray[np.uint8], list[Box]]:
    """``background`` with each face upscaled to ``size`` at its (x, y); returns the image and the boxes."""
    image = background.copy()
    boxes = []
    for face, (x, y) in zip(faces, places, strict=True):
        image[y : y + size, x : x + size] = cv2.cvtColor(upscale(face, size), cv2.COLOR_GRAY2BGR)
        boxes.append(Box(x, y, size, size))
    return image, boxes


def group_photo(
    faces: Sequence[npt.NDArray[np.uint8]], size: int = 120, width: int = 900, height: int = 400, seed: int = 0
) -> tuple[npt.NDArray[np.uint8], list[Box]]:
    """Faces in a row on a textured background, spaced evenly, at slightly different heights."""
    step = width // len(faces)
    places = [
        (index * step + (step - size) // 2, (height - size) // 2 + (30 if index % 2 else -30))
        for index in range(len(faces))
    ]
    return paste_faces(textured_background(height, width, seed), faces, places, size)


def encode(bgr_image: npt.NDArray[np.uint8], extension: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(extension, bgr_image)
    assert ok
    return buffer.tobytes()


def png_claiming_size(width: int, height: int) -> bytes:
    """A few hundred bytes whose PNG header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def jpeg_with_orientation(bgr_image: npt.NDArray[np.uint8], orientation: int) -> bytes:
    """A JPEG of ``bgr_image`` as stored, with an EXIF orientation tag saying how to turn it upright."""
    from PIL import Image

    image = Image.fromarray(cv2.cvtColor(bgr_image, cv2.COLOR_BGR2RGB))
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def pil_bytes(mode: str, size: tuple[int, int], color: Any, image_format: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=image_format)
    return buffer.getvalue()


def tiny_model(constant_emotion: str | None = None, seed: int = 0) -> Any:
    """The untrained "tiny" architecture; with ``constant_emotion`` it gives that class ~100% for any face."""
    import keras

    from training.architectures import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("tiny")
    if constant_emotion is not None:
        head = model.get_layer("emotion")
        kernel, bias = head.get_weights()
        bias = np.zeros_like(bias)
        bias[EMOTIONS.index(constant_emotion)] = 12.0
        head.set_weights([np.zeros_like(kernel), bias])
    return model


def save_tiny_model(path: Path, constant_emotion: str | None = None, *, temperature: float = 1.0) -> Path:
    """A tiny model saved at ``path`` (.keras) with the LiteRT copy and record the app serves it from."""
    from training.export import export_tflite

    path.parent.mkdir(parents=True, exist_ok=True)
    model = tiny_model(constant_emotion)
    model.save(path)
    export_tflite(path, temperature=temperature, model=model)
    return path


def fixture_model(emotion: str, destination: Path) -> Path:
    """A copy at ``destination`` (.keras) of a committed served model that gives ``emotion`` for every face
    (``happy`` or ``surprise``, made by scripts/make_test_models.py): no TensorFlow needed."""
    return copy_model(FIXTURE_MODELS_DIR / f"{emotion}.keras", destination)


def copy_model(source: Path, destination: Path) -> Path:
    """Copy a model with its LiteRT copy and record (what ``promote`` does), e.g. to ``promoted.keras``."""
    import shutil

    from fer_core.serving import served_files

    destination.parent.mkdir(parents=True, exist_ok=True)
    for source_file, destination_file in zip(served_files(source), served_files(destination), strict=True):
        shutil.copyfile(source_file, destination_file)
    return destination


def tiny_classifier(constant_emotion: str | None = None, seed: int = 0, *, temperature: float = 1.0) -> Any:
    """An EmotionClassifier (LiteRT) running the tiny architecture, made in memory."""
    from fer_core.inference import EmotionClassifier
    from training.export import convert_to_tflite

    flatbuffer = convert_to_tflite(tiny_model(constant_emotion, seed))
    return EmotionClassifier(flatbuffer, source="tiny", temperature=temperature)


def jpeg_cut_short(bgr_image: npt.NDArray[np.uint8]) -> bytes:
    """A JPEG whose data stops halfway and then says it ended (an end-of-image marker): Pillow and OpenCV
    decode it without an error, the lower part grey, as a broken download or a bad card gives."""
    data = encode(bgr_image, ".jpg")
    return data[: len(data) // 2] + b"\xff\xd9"
