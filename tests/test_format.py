"""The pages' shared wording (app/format.py) and the core's list of offered file types."""

from __future__ import annotations

import math

import pytest

from app.format import duration_text, file_stem, percent, percent_points, plural, upload_types_text
from fer_core.file_types import IMAGE_SUFFIXES, VIDEO_SUFFIXES, suffix_names


def test_plural_adds_an_s_except_for_one_and_groups_thousands() -> None:
    assert [plural(count, "face") for count in (0, 1, 2, 1204)] == ["0 faces", "1 face", "2 faces", "1,204 faces"]


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "-"),
        (math.nan, "-"),
        (math.inf, "-"),
        (-3, "0 s"),
        (45.2, "45 s"),
        (59.6, "1 min 00 s"),  # rounded first: never "60 s"
        (125, "2 min 05 s"),
        (3599.7, "1 h 00 min"),  # never "59 min 60 s"
        (3780, "1 h 03 min"),
    ],
)
def test_durations_read_in_the_largest_sensible_units(seconds: float | None, expected: str) -> None:
    assert duration_text(seconds) == expected


def test_percentages_have_one_decimal_and_none_is_a_dash() -> None:
    assert (percent(0.65), percent(1 / 30), percent(None)) == ("65.0%", "3.3%", "-")
    assert (percent_points(0.655), percent_points(None)) == (65.5, None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("holiday photo.jpg", "holiday_photo"),
        ("été-1_a.PNG", "été-1_a"),
        ("archive.tar.gz", "archive_tar"),
        ("no suffix", "no_suffix"),
        ("folder/clip.mp4", "clip"),
        (".jpg", "fallback"),
        ("", "fallback"),
    ],
)
def test_a_file_stem_is_safe_for_a_download_name(name: str, expected: str) -> None:
    assert file_stem(name, "fallback") == expected


def test_the_offered_file_types_read_as_a_list() -> None:
    assert upload_types_text((".mp4", ".webm", ".mov")) == "MP4, WEBM or MOV"
    assert upload_types_text((".png",)) == "PNG"
    assert suffix_names((".jpg", ".png")) == "jpg, png"
    assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
