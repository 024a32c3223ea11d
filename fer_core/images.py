"""Decoding user images safely: any common format, EXIF rotation honoured, size limits enforced
from the header before any pixel is decoded (decompression-bomb safe).

Only the decoders of :data:`ACCEPTED_FORMATS` ever see a file's bytes, whatever its name says: the
format is told from the first bytes, and Pillow is asked for that one format. Pillow's other
decoders (EPS, which starts Ghostscript; PSD; ICNS; FITS; ...) and OpenCV's (Sun raster, PFM,
Radiance HDR, ...) are never reached, for uploads and for data-set files alike.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, cast

import cv2  # untyped here (pyproject.toml): cast() states the array each call returns
import numpy as np
import numpy.typing as npt

from fer_core.errors import InvalidImageError

if TYPE_CHECKING:
    from PIL import Image

MAX_PIXELS = 40_000_000  # 40 megapixels: larger images are refused before decoding
MAX_BYTES = 50 * 1024 * 1024
# The formats the app decodes, by Pillow's name for each (PPM stands for the PBM/PGM/PPM family).
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
NOT_AN_IMAGE = "this is not an image file (or a format this app cannot read)"
_OPENCV_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "PPM"})  # data-set files OpenCV decodes (fast)
EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how a photo is turned
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders


def image_format(data: bytes) -> str | None:
    """Which of :data:`ACCEPTED_FORMATS` ``data`` is, told from its first bytes; None for anything else."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in _TIFF_SIGNATURES:
        return "TIFF"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if (
        len(head) >= 3
        and head[:1] == b"P"
        and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6")
        and head[2:3].isspace()
    ):
        return "PPM"
    return None


def rescale(image: npt.NDArray[np.uint8], scale: float, interpolation: int = cv2.INTER_AREA) -> npt.NDArray[np.uint8]:
    """``image`` resized by ``scale``, every side at least one pixel.

    ``cv2.resize(image, None, fx=scale, fy=scale)`` rounds the short side of a very thin image (a
    3000 x 1 banner, say) down to zero and fails; this never does.
    """
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cast("npt.NDArray[np.uint8]", cv2.resize(image, size, interpolation=interpolation))


def decode_image(data: bytes) -> npt.NDArray[np.uint8]:
    """Decode image bytes into a BGR uint8 array of shape (H, W, 3).

    Accepts JPEG (CMYK too), PNG (16-bit, alpha, palette), WebP, BMP, TIFF (16-bit and float too),
    GIF and PGM/PPM, whatever the file's extension says; any other format is refused before a decoder
    sees it. The EXIF orientation of phone photos is applied. Raises :class:`InvalidImageError` with
    a readable reason for empty, corrupt, non-image, unsupported or oversized input.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidImageError("the file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise InvalidImageError(f"the file is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
    format_name = image_format(data)
    if format_name is None:
        raise InvalidImageError(NOT_AN_IMAGE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=[format_name])
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise InvalidImageError(
                    f"the image is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                    f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels"
                )
            image = _apply_exif_orientation(opened)
            image.load()
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidImageError(_reason(error)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InvalidImageError(f"the image data is damaged or truncated ({error})") from None
    return _to_bgr(image)


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Turn a phone photo upright as its EXIF orientation says; a damaged EXIF block is ignored."""
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(image) or image
    except (KeyError, TypeError, ValueError, SyntaxError, struct.error):
        return image


def _reason(error: Exception) -> str:
    text = str(error)
    if "cannot identify image file" in text:
        return NOT_AN_IMAGE
    pixels = re.search(r"Image size \((\d+) pixels\)", text)
    if pixels or "decompression bomb" in text:
        size = f" ({int(pixels.group(1)) / 1e6:.0f} megapixels)" if pixels else ""
        return f"the image is too large{size}; the limit is {MAX_PIXELS / 1e6:.0f} megapixels"
    return text


def _to_bgr(image: Image.Image) -> npt.NDArray[np.uint8]:
    from PIL import Image

    if image.mode == "F":
        return cast(
            "npt.NDArray[np.uint8]",
            cv2.cvtColor(_float_to_gray(np.asarray(image, dtype=np.float64)), cv2.COLOR_GRAY2BGR),
        )
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        high = array.max() if array.size else 1.0
        array = array / (65535.0 if high > 255 else 255.0) * 255.0 if high > 0 else array
        gray = np.clip(array, 0, 255).astype(np.uint8)
        return cast("npt.NDArray[np.uint8]", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return cast("npt.NDArray[np.uint8]", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _float_to_gray(array: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Floating-point pixels as 8-bit gray: 0-1 (the usual range of float images) is scaled to 0-255,
    0-255 is kept; anything else (NaN, negative, beyond 255) is refused, as no scale is safe to guess."""
    if not np.isfinite(array).all():
        raise InvalidImageError("the image has floating-point pixels that are not numbers (NaN or infinity)")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise InvalidImageError(
            f"the image has floating-point pixels from {low:g} to {high:g}; only 0-1 or 0-255 can be shown"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(np.round(array * scale), 0, 255).astype(np.uint8)


def decode_gray(data: bytes) -> npt.NDArray[np.uint8]:
    """Decode a data-set file into 8-bit gray ``(H, W)``; :class:`InvalidImageError` if it is not an
    image of an accepted format, or is damaged.

    JPEG, PNG, WebP, BMP and PGM go through ``cv2.imdecode`` (fast, and thread-parallel: FER2013 is
    35,887 files); TIFF and GIF through :func:`decode_image`, so a 16-bit or float TIFF is scaled the
    way an upload is. The format check comes first either way, so no other decoder runs.
    """
    format_name = image_format(data)
    if format_name is None:
        raise InvalidImageError(NOT_AN_IMAGE)
    if format_name not in _OPENCV_FORMATS:
        return cast("npt.NDArray[np.uint8]", cv2.cvtColor(decode_image(data), cv2.COLOR_BGR2GRAY))
    gray_image = cast(
        "npt.NDArray[np.uint8] | None", cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    )
    if gray_image is None or not gray_image.size:
        raise InvalidImageError("the image data is damaged or truncated")
    return gray_image


def image_damage(data: bytes) -> str | None:
    """Why an image that decodes is nevertheless damaged, or None.

    A JPEG whose data is cut or corrupted partway still decodes in Pillow (and OpenCV): libjpeg fills
    what it could not read with grey and only warns. libjpeg-turbo (through simplejpeg) is asked to
    treat those warnings as errors, at 1/8 scale (the whole stream is still read, a fraction decoded).
    Other formats raise on damage in :func:`decode_image` itself.
    """
    if image_format(data) != "JPEG":
        return None
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, strict=True, min_factor=8)
    except ValueError as error:
        try:  # a JPEG this decoder cannot read at all (Pillow could) is not a sign of damage
            simplejpeg.decode_jpeg(data, strict=False, min_factor=8)
        except ValueError:
            return None
        return f"the image data is damaged ({str(error).rstrip('.')}): part of it may be grey or smeared"
    return None


class CheckedImage(NamedTuple):
    bgr_image: npt.NDArray[np.uint8]
    warning: str | None  # the image decoded, but is damaged (:func:`image_damage`)


def decode_checked_image(data: bytes) -> CheckedImage:
    """:func:`decode_image` and :func:`image_damage` in one.

    A plain JPEG (YCbCr or gray, with no EXIF turn: what cameras and most tools write) is decoded once,
    by libjpeg-turbo with its warnings as errors, which answers both at once: the same pixels as Pillow's,
    in about 40 % of the time of the two (a 640x480 photo: 1.6 ms against 3.9). Every other image, and a
    JPEG that warns, takes both, so a damaged file gets the same message either way.
    """
    plain = _plain_jpeg(data)
    if plain is not None:
        return CheckedImage(plain, None)
    return CheckedImage(decode_image(data), image_damage(data))


def _plain_jpeg(data: bytes) -> npt.NDArray[np.uint8] | None:
    """The BGR pixels of an undamaged plain JPEG within the limits, else None (let the careful path decide)."""
    if image_format(data) != "JPEG" or len(data) > MAX_BYTES:
        return None
    import simplejpeg
    from PIL import Image, UnidentifiedImageError

    try:
        height, width, colorspace, _subsampling = simplejpeg.decode_jpeg_header(data)
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as opened:  # reads the headers only
            orientation = opened.getexif().get(EXIF_ORIENTATION, 1)
    except (ValueError, OSError, SyntaxError, UnidentifiedImageError, struct.error):
        return None
    if colorspace not in ("YCbCr", "Gray") or width * height > MAX_PIXELS or orientation != 1:
        return None
    try:
        if colorspace == "Gray":
            gray = simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
            return cast("npt.NDArray[np.uint8]", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
        return cast("npt.NDArray[np.uint8]", simplejpeg.decode_jpeg(data, colorspace="BGR", strict=True))
    except ValueError:  # damaged, or a JPEG this decoder cannot read: the careful path says which
        return None


def read_checked_image(path: str | os.PathLike[str]) -> CheckedImage:
    """:func:`read_image`, with the damage found in data that still decoded (:func:`image_damage`)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidImageError(f"{file} does not exist or is not a file")
    try:
        size = file.stat().st_size
        if size > MAX_BYTES:
            raise InvalidImageError(f"the file is {size / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
        data = file.read_bytes()
    except OSError as error:
        raise InvalidImageError(f"cannot read {file}: {error.strerror or error}") from None
    return decode_checked_image(data)


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read an image file into BGR uint8; missing or unreadable files raise :class:`InvalidImageError`."""
    return read_checked_image(path).bgr_image


def encode_png(bgr_image: npt.NDArray[np.uint8]) -> bytes:
    ok, buffer = cv2.imencode(".png", bgr_image)
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return cast(bytes, buffer.tobytes())
