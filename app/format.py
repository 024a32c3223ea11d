"""How the pages write numbers, names and charts: one helper each, so every page reads the same.

plural(3, "face")             # "3 faces"
duration_text(125)            # "2 min 05 s"
percent(0.65)                 # "65.0%"; tables take percent_points(0.65) with PERCENT_FORMAT
file_stem("my photo.jpg")     # "my_photo", for download names
st.plotly_chart(figure, config=CHART_CONFIG)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any, Literal

# Plotly's mode bar (zoom, pan, download) covers small charts and is not needed on these pages.
CHART_CONFIG: dict[str, Any] = {"displayModeBar": False}
PERCENT_FORMAT = "%.1f%%"  # tables show shares of 0-100 with one decimal, as percent() does
# The colours st.badge accepts (its parameter's Literal, which Streamlit does not export under a name).
BadgeColor = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]


def plural(count: int, noun: str) -> str:
    """``"1 face"``, ``"1,204 faces"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def duration_text(seconds: float | None) -> str:
    """``"45 s"``, ``"2 min 05 s"``, ``"1 h 03 min"``, rounded to the second; ``"-"`` for none or not finite."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def percent(value: float | None) -> str:
    """A share (0-1) with one decimal: ``"65.0%"``, ``"3.3%"``; ``"-"`` for none."""
    return "-" if value is None else f"{value:.1%}"


def percent_points(value: float | None) -> float | None:
    """A share (0-1) as percentage points, for table columns shown with :data:`PERCENT_FORMAT`."""
    return None if value is None else 100 * value


def file_stem(name: str, fallback: str) -> str:
    """An uploaded file's name without its folder and suffix, as a safe start of a download name: letters,
    digits, ``-`` and ``_`` kept, anything else ``_``; ``fallback`` when nothing is left."""
    base = PurePath(name).name
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in stem) or fallback


def upload_types_text(suffixes: Iterable[str]) -> str:
    """``(".mp4", ".webm", ".mov")`` as ``"MP4, WEBM or MOV"``, for an uploader's help."""
    names = [suffix.lstrip(".").upper() for suffix in suffixes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
