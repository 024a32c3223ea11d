"""From a detected face to the 48x48 crop the model sees, framed the way FER2013's faces are.

- :func:`face_crop` takes the square the detector's box calls for (:func:`fer_core.detect.face_square`,
  framed like FER2013's faces).
- With ``align=True`` and landmarks (YuNet), that square is first turned about its centre until the eye
  line is level, as FER2013's faces roughly are; its size and centre stay. Without landmarks (Haar) or
  with ``align=False`` it is taken unrotated.

Either way the last step is :func:`fer_core.preprocess.to_gray48`, the resize the data loaders use.

A least-squares similarity transform of all five landmarks onto FER2013's mean landmark positions (which
also moves and scales the face) was tried first. On 1,021 faces in scenes of training faces, with the
current model: plain crop 0.744, similarity transform 0.736, the square turned 0.745 (0.762 against 0.700
on tilted faces); ``scripts/bench_detection.py``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Detection, Landmarks, face_square
from fer_core.preprocess import FACE_SIZE, to_gray48

MAX_UPSAMPLE = 4  # the aligned face is drawn at up to 4 x 48 pixels, then area-resized like training faces


def eye_angle(landmarks: Landmarks) -> float:
    """How far the eye line is turned from level, in degrees (positive: clockwise in the image)."""
    (right_x, right_y), (left_x, left_y) = landmarks.right_eye, landmarks.left_eye
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


def face_crop(gray_image: npt.NDArray[np.uint8], detection: Detection, *, align: bool = True) -> npt.NDArray[np.uint8]:
    """The 48x48 face of ``detection`` in ``gray_image``: aligned by its landmarks when ``align`` and it
    has them, else the FER-like square around its box. Parts outside the image repeat its edge."""
    if align and detection.landmarks is not None:
        return _aligned(gray_image, detection)
    centre_x, centre_y, side = face_square(detection)
    return square_crop(gray_image, centre_x, centre_y, side)


def square_crop(
    gray_image: npt.NDArray[np.uint8], centre_x: float, centre_y: float, side: float
) -> npt.NDArray[np.uint8]:
    """The unrotated square of ``side`` pixels around a centre, resized to 48x48 (edges replicated)."""
    half = max(1, round(side / 2))
    left, top = round(centre_x) - half, round(centre_y) - half
    right, bottom = left + 2 * half, top + 2 * half
    height, width = gray_image.shape[:2]
    border = max(0, -left, -top, right - width, bottom - height)
    if border:
        gray_image = cv2.copyMakeBorder(gray_image, border, border, border, border, cv2.BORDER_REPLICATE)
        left, top, right, bottom = left + border, top + border, right + border, bottom + border
    return to_gray48(gray_image[top:bottom, left:right])


def _aligned(gray_image: npt.NDArray[np.uint8], detection: Detection) -> npt.NDArray[np.uint8]:
    assert detection.landmarks is not None
    centre_x, centre_y, side = face_square(detection)
    drawn = FACE_SIZE * int(np.clip(round(side / FACE_SIZE), 1, MAX_UPSAMPLE))
    # Turned about the square's centre until the eyes are level, scaled to ``drawn`` pixels, the square's
    # centre moved to the middle: the same framing as the plain crop, upright.
    matrix = cv2.getRotationMatrix2D((centre_x, centre_y), eye_angle(detection.landmarks), drawn / side)
    matrix[:, 2] += (drawn / 2 - centre_x, drawn / 2 - centre_y)
    face = cv2.warpAffine(gray_image, matrix, (drawn, drawn), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return to_gray48(face)
