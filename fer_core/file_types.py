"""The files the pages' uploaders and the CLIs' help offer, by name, defined once.

Reading goes by content, not by name: :func:`fer_core.images.decode_image` also reads TIFF, GIF and
PGM/PPM files (and a PNG named ``.jpg``), and a clip is whatever PyAV can open.
"""

from __future__ import annotations

from collections.abc import Iterable

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")


def suffix_names(suffixes: Iterable[str]) -> str:
    """``(".jpg", ".png")`` as ``"jpg, png"``, for help texts."""
    return ", ".join(suffix.lstrip(".") for suffix in suffixes)
