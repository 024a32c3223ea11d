"""Drawing faces onto images and video frames: a box and a caption per face, coloured by emotion.

    annotated = draw_predictions(bgr_image, predictions, threshold=0.4)     # a photo: an annotated copy
    draw_tracked_faces(bgr_frame, tracked_faces, threshold=0.4)             # a video frame: in place,
                                                                            # with a confidence bar per face
    draw_landmarks(bgr_frame, detection.landmarks)                          # YuNet's five points, in place

Line widths and text grow with the image, so labels read the same once the image is shown at screen
size, whether it is a webcam frame or a 12-megapixel photo. A face below the confidence threshold is
grey and captioned "uncertain".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Box, Landmarks
from fer_core.inference import FacePrediction
from fer_core.labels import label_color_rgb, label_text
from fer_core.tracking import TrackedFace

FONT = cv2.FONT_HERSHEY_SIMPLEX
REFERENCE_SIDE = 1000  # at this longer side, text is drawn at REFERENCE_FONT_SCALE
REFERENCE_FONT_SCALE = 0.9
MIN_FONT_SCALE = 0.45  # below this OpenCV's font is hard to read
BAR_TRACK_BGR = (45, 45, 45)
# One colour per landmark, as OpenCV's YuNet demo (opencv_zoo) draws them: right eye blue, left eye red,
# nose tip green, right mouth corner magenta, left mouth corner yellow (BGR; "right" is the person's right).
LANDMARK_COLORS_BGR = ((255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255))


class Classified(Protocol):
    """What a caption needs: a :class:`~fer_core.inference.FacePrediction` or a tracked face."""

    @property
    def emotion(self) -> str: ...

    @property
    def confidence(self) -> float: ...

    def label(self, threshold: float = 0.0) -> str: ...


def text_color_bgr(background_bgr: tuple[int, int, int]) -> tuple[int, int, int]:
    """Dark text on a light background, white on a dark one."""
    blue, green, red = background_bgr
    return (20, 20, 20) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else (255, 255, 255)


def face_caption(face: Classified, threshold: float = 0.0, index: int | None = None) -> str:
    """``"#1 happy 87%"``, or ``"#1 uncertain (happy 34%)"`` below ``threshold``."""
    prefix = f"#{index} " if index is not None else ""
    return prefix + label_text(face.label(threshold), face.emotion, face.confidence)


class _Style:
    """Sizes for one image: font, line and bar thickness grow with its longer side."""

    def __init__(self, image: npt.NDArray[np.uint8]) -> None:
        size = max(image.shape[:2])
        self.font_scale = max(MIN_FONT_SCALE, REFERENCE_FONT_SCALE * size / REFERENCE_SIDE)
        self.thickness = max(1, round(size / 400))
        self.text_thickness = max(1, round(self.font_scale * 1.6))
        self.bar_height = max(4, round(size / 90))


def _bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


def _draw_face(
    image: npt.NDArray[np.uint8],
    box: Box,
    caption: str,
    color: tuple[int, int, int],
    style: _Style,
    *,
    thickness: int,
    confidence: float | None = None,
) -> None:
    x, y, box_width, box_height = box
    cv2.rectangle(image, (x, y), (x + box_width, y + box_height), color, thickness, cv2.LINE_AA)
    _draw_caption(image, caption, box, color, style)
    if confidence is not None:
        _draw_bar(image, box, confidence, color, style)


def _label_size(caption: str, style: _Style) -> tuple[int, int]:
    """Width and height of a caption's filled label, padding included."""
    (text_width, text_height), baseline = cv2.getTextSize(caption, FONT, style.font_scale, style.text_thickness)
    pad = max(2, round(text_height * 0.3))
    return text_width + 2 * pad, text_height + baseline + 2 * pad


def _draw_caption(
    image: npt.NDArray[np.uint8], caption: str, box: Box, color: tuple[int, int, int], style: _Style
) -> None:
    """The caption above the box (inside its top where there is no room above)."""
    label_width, label_height = _label_size(caption, style)
    height, width = image.shape[:2]
    left = min(max(0, box.x), max(0, width - label_width))
    above = box.y - label_height
    top = above if above >= 0 else max(0, min(box.y, height - label_height))  # no room above: inside the box
    _draw_label(image, caption, (left, top), color, style)


def _draw_label(
    image: npt.NDArray[np.uint8], caption: str, corner: tuple[int, int], color: tuple[int, int, int], style: _Style
) -> None:
    """A filled label with ``caption`` in it, its top-left corner at ``corner``."""
    (_, text_height), _ = cv2.getTextSize(caption, FONT, style.font_scale, style.text_thickness)
    pad = max(2, round(text_height * 0.3))
    label_width, label_height = _label_size(caption, style)
    left, top = corner
    cv2.rectangle(image, (left, top), (left + label_width, top + label_height), color, cv2.FILLED)
    origin = (left + pad, top + pad + text_height)
    cv2.putText(
        image, caption, origin, FONT, style.font_scale, text_color_bgr(color), style.text_thickness, cv2.LINE_AA
    )


def _overlap(first: Box, second: Box) -> int:
    """The area two rectangles share (0 if they only touch)."""
    width = min(first.x + first.width, second.x + second.width) - max(first.x, second.x)
    height = min(first.y + first.height, second.y + second.height) - max(first.y, second.y)
    return max(0, width) * max(0, height)


def place_labels(
    boxes: Sequence[Box], label_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]
) -> list[Box]:
    """Where each face's label goes (as a box), so that labels overlap neither each other nor another
    face's box where the image leaves room: above the face, else inside its top, below it, inside its
    bottom, then the same shifted sideways; among places that all overlap something, the least
    covered one. Faces are placed in the order given; ``image_size`` is (width, height)."""
    image_width, image_height = image_size
    placed: list[Box] = []
    for index, (box, (label_width, label_height)) in enumerate(zip(boxes, label_sizes, strict=True)):
        others = [other for other_index, other in enumerate(boxes) if other_index != index]
        rows = (box.y - label_height, box.y, box.y + box.height, box.y + box.height - label_height)
        shifts = (0, box.width - label_width, -label_width // 2, box.width - label_width // 2, -label_width, box.width)
        candidates = [
            Box(
                min(max(0, box.x + shift), max(0, image_width - label_width)),
                min(max(0, top), max(0, image_height - label_height)),
                label_width,
                label_height,
            )
            for shift in shifts
            for top in rows
        ]

        # Covering another label hides its text (4x the cost); covering another face hides that face.
        costs = [
            4 * sum(_overlap(candidate, label) for label in placed)
            + sum(_overlap(candidate, other) for other in others)
            for candidate in candidates
        ]
        placed.append(candidates[costs.index(min(costs))])  # the first of equals: the preferred place
    return placed


def _draw_bar(
    image: npt.NDArray[np.uint8], box: Box, confidence: float, color: tuple[int, int, int], style: _Style
) -> None:
    """A bar under the box, as long as the confidence."""
    height, width = image.shape[:2]
    top = min(box.y + box.height + 4, height - style.bar_height - 1)
    left, right = max(0, box.x), min(box.x + box.width, width - 1)
    cv2.rectangle(image, (left, top), (right, top + style.bar_height), BAR_TRACK_BGR, cv2.FILLED)
    filled = left + round((right - left) * min(max(confidence, 0.0), 1.0))
    cv2.rectangle(image, (left, top), (filled, top + style.bar_height), color, cv2.FILLED)


def draw_predictions(
    bgr_image: npt.NDArray[np.uint8],
    predictions: Sequence[FacePrediction],
    threshold: float = 0.0,
    *,
    numbered: bool = True,
) -> npt.NDArray[np.uint8]:
    """An annotated copy of ``bgr_image``: each face's box and caption in its emotion's colour.

    With ``numbered``, captions start with ``#1``, ``#2``... in the order given (left to right from
    ``Predictor.predict``).
    """
    annotated = np.ascontiguousarray(bgr_image.copy())
    if annotated.ndim == 2:
        annotated = cv2.cvtColor(annotated, cv2.COLOR_GRAY2BGR)
    style = _Style(annotated)
    colors = [_bgr(label_color_rgb(prediction.label(threshold))) for prediction in predictions]
    layout = label_layout(annotated.shape[:2], predictions, threshold, numbered=numbered)
    for prediction, color in zip(predictions, colors, strict=True):  # every box first: no line crosses a label
        x, y, box_width, box_height = prediction.box
        cv2.rectangle(annotated, (x, y), (x + box_width, y + box_height), color, style.thickness, cv2.LINE_AA)
    for (caption, label), color in zip(layout, colors, strict=True):
        _draw_label(annotated, caption, (label.x, label.y), color, style)
    return annotated


def label_layout(
    image_shape: tuple[int, ...],
    predictions: Sequence[FacePrediction],
    threshold: float = 0.0,
    *,
    numbered: bool = True,
) -> list[tuple[str, Box]]:
    """Each face's caption and where :func:`draw_predictions` puts its label on an image of
    ``image_shape`` (height, width, ...): see :func:`place_labels`."""
    style = _Style(np.empty(image_shape[:2], np.uint8))
    captions = [
        face_caption(prediction, threshold, number if numbered else None)
        for number, prediction in enumerate(predictions, start=1)
    ]
    height, width = image_shape[:2]
    sizes = [_label_size(caption, style) for caption in captions]
    labels = place_labels([prediction.box for prediction in predictions], sizes, (width, height))
    return list(zip(captions, labels, strict=True))


def draw_tracked_faces(bgr_frame: npt.NDArray[np.uint8], faces: Sequence[TrackedFace], threshold: float = 0.0) -> None:
    """Draw on a video frame, in place: each tracked face's box (thinner while the face is held unseen),
    a caption with its track number (``#2 happy 87%``) and a bar as long as its confidence."""
    style = _Style(bgr_frame)
    for face in faces:
        color = _bgr(label_color_rgb(face.label(threshold)))
        thickness = style.thickness + 1 if face.missed == 0 else style.thickness
        caption = face_caption(face, threshold, face.track_id)
        _draw_face(bgr_frame, face.box, caption, color, style, thickness=thickness, confidence=face.confidence)


def draw_landmarks(bgr_image: npt.NDArray[np.uint8], landmarks: Landmarks) -> None:
    """A face's five landmarks (eyes, nose tip, mouth corners) as dots, in place, in
    :data:`LANDMARK_COLORS_BGR`."""
    style = _Style(bgr_image)
    radius = max(2, style.thickness + 1)
    for (x, y), color in zip(landmarks, LANDMARK_COLORS_BGR, strict=True):
        cv2.circle(bgr_image, (round(x), round(y)), radius, color, cv2.FILLED, cv2.LINE_AA)


def draw_status(bgr_frame: npt.NDArray[np.uint8], text: str) -> None:
    """A line of text in the top-left corner, on a darkened strip (frame rate and timing on a video)."""
    style = _Style(bgr_frame)
    scale = style.font_scale * 0.85
    (text_width, text_height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    corner = bgr_frame[0 : text_height + baseline + 10, 0 : text_width + 12]
    corner[:] = (corner * 0.35).astype(np.uint8)
    cv2.putText(bgr_frame, text, (6, text_height + 5), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def scale_predictions(predictions: Sequence[FacePrediction], factor: float) -> list[FacePrediction]:
    """The same predictions with boxes (and landmarks) scaled by ``factor``, to draw on a resized copy."""
    return [
        prediction._replace(
            box=prediction.box.scaled(factor),
            landmarks=prediction.landmarks.scaled(factor) if prediction.landmarks is not None else None,
        )
        for prediction in predictions
    ]
