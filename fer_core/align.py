"""From a detected face to the 48x48 crop the model sees, framed the way FER2013's faces are.

FER2013's faces are square crops, roughly upright, the eyes a little above the middle. Pasting 189
training faces into scenes and running YuNet on them gave where its five landmarks fall in the
original 48x48 crop, on average (``CANONICAL_LANDMARKS``, in fractions of the side; made symmetric).

- :func:`face_crop` with ``align=True`` (and landmarks, from YuNet) finds the rotation, scale and shift
  that put the face's five landmarks where FER2013's faces have them (a least-squares similarity
  transform), so a tilted head comes out upright and framed like the training faces.
- Without landmarks (Haar) or with ``align=False`` it takes the square the detector's box calls for
  (:func:`fer_core.detect.face_square`), unrotated.

Either way the last step is :func:`fer_core.preprocess.to_gray48`, the resize the data loaders use.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.detect import Detection, Landmarks, face_square
from fer_core.preprocess import FACE_SIZE, to_gray48

# Right eye, left eye, nose tip, right and left mouth corner (the person's right: the image's left).
CANONICAL_LANDMARKS = np.array(
    [[0.305, 0.368], [0.695, 0.368], [0.494, 0.564], [0.332, 0.725], [0.668, 0.725]], np.float64
)
MAX_UPSAMPLE = 4  # the aligned face is drawn at up to 4 x 48 pixels, then area-resized like training faces


def eye_angle(landmarks: Landmarks) -> float:
    """How far the eye line is turned from level, in degrees (positive: clockwise in the image)."""
    (right_x, right_y), (left_x, left_y) = landmarks.right_eye, landmarks.left_eye
    return math.degrees(math.atan2(left_y - right_y, left_x - right_x))


def similarity_transform(source: npt.NDArray[np.float64], target: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The 2x3 matrix of the rotation, uniform scale and shift that best maps ``source`` points onto
    ``target`` points (least squares; Umeyama, 1991)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.diag([1.0, float(np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0)])
    rotation = u @ reflection @ vt
    variance = float((source_centred**2).sum() / len(source))
    scale = float(np.trace(np.diag(singular) @ reflection) / variance) if variance > 0 else 1.0
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


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
    _, _, side = face_square(detection)
    drawn = FACE_SIZE * int(np.clip(round(side / FACE_SIZE), 1, MAX_UPSAMPLE))
    source = np.asarray(detection.landmarks, np.float64)
    matrix = similarity_transform(source, CANONICAL_LANDMARKS * drawn)
    face = cv2.warpAffine(gray_image, matrix, (drawn, drawn), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return to_gray48(face)
