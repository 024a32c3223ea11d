"""Drawing predictions onto images: one box and one label per face, coloured by emotion.

    annotated = draw_predictions(bgr_image, predictions, threshold=0.4)

Line widths and text grow with the image, so labels read the same once the image is shown at
screen size, whether it is a webcam frame or a 12-megapixel photo.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Box
from fer_core.inference import UNCERTAIN, FacePrediction
from fer_core.labels import EMOTION_COLORS_RGB

UNCERTAIN_COLOR_RGB = (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE = 1000  # at this longer side, text is drawn at REFERENCE_FONT_SCALE
REFERENCE_FONT_SCALE = 0.9
MIN_FONT_SCALE = 0.45  # below this OpenCV's font is hard to read


def label_color_rgb(label: str) -> tuple[int, int, int]:
    """The colour of an emotion (grey for ``"uncertain"`` or anything unknown)."""
    return EMOTION_COLORS_RGB.get(label, UNCERTAIN_COLOR_RGB)


def face_caption(prediction: FacePrediction, threshold: float = 0.0, index: int | None = None) -> str:
    """``"#1 happy 87%"``, or ``"#1 uncertain (happy 34%)"`` below ``threshold``."""
    prefix = f"#{index} " if index is not None else ""
    if prediction.label(threshold) == UNCERTAIN:
        return f"{prefix}{UNCERTAIN} ({prediction.emotion} {prediction.confidence:.0%})"
    return f"{prefix}{prediction.emotion} {prediction.confidence:.0%}"


def draw_predictions(
    bgr_image: npt.NDArray[np.uint8],
    predictions: Sequence[FacePrediction],
    threshold: float = 0.0,
    *,
    numbered: bool = True,
) -> npt.NDArray[np.uint8]:
    """An annotated copy of ``bgr_image``: each face's box and caption in its emotion's colour.

    Faces below ``threshold`` are drawn in grey and captioned "uncertain". With ``numbered``, captions
    start with ``#1``, ``#2``... in the order given (left to right from ``Predictor.predict``).
    """
    annotated = np.ascontiguousarray(bgr_image.copy())
    if annotated.ndim == 2:
        annotated = cv2.cvtColor(annotated, cv2.COLOR_GRAY2BGR)
    height, width = annotated.shape[:2]
    size = max(height, width)
    font_scale = max(MIN_FONT_SCALE, REFERENCE_FONT_SCALE * size / REFERENCE_SIDE)
    thickness = max(1, round(size / 400))
    text_thickness = max(1, round(font_scale * 1.6))
    for number, prediction in enumerate(predictions, start=1):
        red, green, blue = label_color_rgb(prediction.label(threshold))
        color = (blue, green, red)
        x, y, box_width, box_height = prediction.box
        cv2.rectangle(annotated, (x, y), (x + box_width, y + box_height), color, thickness, cv2.LINE_AA)
        caption = face_caption(prediction, threshold, number if numbered else None)
        _draw_caption(annotated, caption, prediction.box, color, font_scale, text_thickness)
    return annotated


def _draw_caption(
    image: npt.NDArray[np.uint8],
    caption: str,
    box: Box,
    color: tuple[int, int, int],
    font_scale: float,
    thickness: int,
) -> None:
    (text_width, text_height), baseline = cv2.getTextSize(caption, FONT, font_scale, thickness)
    pad = max(2, round(text_height * 0.3))
    label_height = text_height + baseline + 2 * pad
    height, width = image.shape[:2]
    left = min(max(0, box.x), max(0, width - text_width - 2 * pad))
    above = box.y - label_height
    top = above if above >= 0 else max(0, min(box.y, height - label_height))  # no room above: inside the box
    cv2.rectangle(image, (left, top), (left + text_width + 2 * pad, top + label_height), color, cv2.FILLED)
    blue, green, red = color
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    text_color = (20, 20, 20) if luminance > 150 else (255, 255, 255)
    origin = (left + pad, top + pad + text_height)
    cv2.putText(image, caption, origin, FONT, font_scale, text_color, thickness, cv2.LINE_AA)


def scale_predictions(predictions: Sequence[FacePrediction], factor: float) -> list[FacePrediction]:
    """The same predictions with boxes scaled by ``factor`` (to draw on a resized copy of the image)."""
    return [
        prediction._replace(box=Box(*(round(value * factor) for value in prediction.box))) for prediction in predictions
    ]
