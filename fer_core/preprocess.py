"""The one preprocessing path shared by the data loaders, training and inference.

Every face the model sees, in training or in the app, goes through :func:`to_gray48`:
a mismatch between the two is the classic silent bug of FER projects. Scaling to [0, 1]
happens inside the model (a ``Rescaling`` layer), so a saved model is self-contained.
"""

from __future__ import annotations

from typing import cast

import cv2  # untyped here (pyproject.toml): cast() states the array each call returns
import numpy as np
import numpy.typing as npt

FACE_SIZE = 48


def to_gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Return a 2-D grayscale view of a BGR, BGRA or already-gray uint8 image."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cast("npt.NDArray[np.uint8]", cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    if image.ndim == 3 and image.shape[2] == 4:
        return cast("npt.NDArray[np.uint8]", cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY))
    raise ValueError(f"expected a gray, BGR or BGRA image, got an array of shape {image.shape}")


def to_gray48(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Convert any face image to the model's 48x48 uint8 grayscale form.

    Downscaling uses area interpolation (no aliasing); upscaling uses bilinear.
    """
    gray = to_gray(image)
    if gray.shape == (FACE_SIZE, FACE_SIZE):
        return np.ascontiguousarray(gray)
    shrinking = gray.shape[0] > FACE_SIZE or gray.shape[1] > FACE_SIZE
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cast("npt.NDArray[np.uint8]", cv2.resize(gray, (FACE_SIZE, FACE_SIZE), interpolation=interpolation))


def face_batch(gray_faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Stack 48x48 uint8 faces into the model's float input of shape (N, 48, 48, 1), values 0-255."""
    faces = np.asarray(gray_faces)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.shape[1:] != (FACE_SIZE, FACE_SIZE):
        raise ValueError(f"expected faces of shape (N, 48, 48), got {faces.shape}")
    return faces.astype(np.float32)[..., None]
