"""``python -m fer_core predict`` and ``video`` refuse, before any work, options that would lose data or
cannot work: an output that is the input (under any spelling), two outputs that are one file, an output
that cannot be written (a folder, a read-only place), an annotated copy in a format it is not written in,
a threshold outside [0, 1]. The input is left byte for byte as it was."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from fakes import SQUARE, square_frame

from fer_core import cli
from fer_core.video import AnnotatedVideoWriter


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    with AnnotatedVideoWriter(path, 64, 48, 10.0) as writer:
        for _ in range(3):
            writer.write(square_frame(SQUARE)[:48, :64])
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "in.jpg"
    cv2.imwrite(str(path), np.full((40, 40, 3), 128, np.uint8))
    return path


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = cli.EXIT_USAGE) -> str:
    assert cli.main(argv) == status
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "Traceback" not in error
    return error


@pytest.mark.parametrize("option", ["--output", "--csv", "--json"])
@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "link"])
def test_an_output_that_is_the_input_clip_is_refused_and_the_clip_kept(
    clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    spelling: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mp4").symlink_to(clip)
    output = {"same": str(clip), "dot": "./in.mp4", "dotdot": "sub/../in.mp4", "link": "link.mp4"}[spelling]
    before = clip.read_bytes()
    error = refused(["video", "in.mp4", option, output], capsys)
    assert f"{option} {Path(output)} is the input file" in error and "choose another name" in error
    assert clip.read_bytes() == before


def test_a_hard_link_to_the_input_is_the_input(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.link(clip, tmp_path / "other.mp4")
    refused(["video", str(clip), "--output", str(tmp_path / "other.mp4")], capsys)


def test_two_outputs_that_are_one_file_are_refused(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    error = refused(["video", "in.mp4", "--csv", "faces.txt", "--json", "./faces.txt"], capsys)
    assert "--csv and --json are the same file" in error
    assert not (tmp_path / "faces.txt").exists()


@pytest.mark.parametrize("name", ["o.webm", "o.gif", "o.jpg", "o"])
def test_an_annotated_copy_in_another_format_is_refused_up_front(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    error = refused(["video", str(clip), "--output", str(tmp_path / name)], capsys)
    assert "H.264 MP4" in error and "ending in .mp4" in error
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("option", "target", "problem"),
    [("--csv", "folder", "it is a folder"), ("--output", "/proc/x.mp4", "No such file or directory")],
)
def test_an_output_that_cannot_be_written_is_named(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, target: str, problem: str
) -> None:
    (tmp_path / "folder").mkdir()
    output = str(tmp_path / target)  # an absolute target stays as it is
    error = refused(["video", str(clip), option, output], capsys, status=cli.EXIT_ERROR)
    assert f"{option} {output}" in error and problem in error


def test_a_failed_analysis_leaves_an_existing_output_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 4096)
    earlier = tmp_path / "annotated.mp4"
    earlier.write_bytes(b"an earlier result")
    refused(["video", str(bad), "--output", str(earlier)], capsys, status=cli.EXIT_ERROR)
    assert earlier.read_bytes() == b"an earlier result"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["annotated.mp4", "bad.mp4"]  # no partial file


@pytest.mark.parametrize("spelling", ["same", "dot"])
def test_a_predict_csv_that_is_an_input_photo_is_refused(
    photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    monkeypatch.chdir(tmp_path)
    before = photo.read_bytes()
    output = str(photo) if spelling == "same" else "./in.jpg"
    error = refused(["predict", "in.jpg", "--csv", output], capsys)
    assert "is the input file" in error
    assert photo.read_bytes() == before


@pytest.mark.parametrize("command", ["predict", "video"])
@pytest.mark.parametrize("value", ["5", "nan", "-1", "inf", "x"])
def test_a_threshold_outside_zero_to_one_is_a_usage_error(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "input", "--threshold", value])
    assert stopped.value.code == cli.EXIT_USAGE
    assert "--threshold" in capsys.readouterr().err


def test_a_damaged_jpeg_is_classified_with_a_warning_in_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from photo_samples import jpeg_cut_short, textured_background

    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(jpeg_cut_short(textured_background(240, 320)))
    sound = tmp_path / "sound.jpg"
    cv2.imwrite(str(sound), textured_background(240, 320))
    assert cli.main(["predict", str(damaged), str(sound), "--json"]) == 0  # kept, with the warning
    captured = capsys.readouterr()
    first, second = json.loads(captured.out)
    assert first["error"] is None and "premature end of data segment" in first["warning"]
    assert second["warning"] is None
    assert f"warning: {damaged}: the image data is damaged" in captured.err
    assert cli.main(["predict", str(damaged)]) == 0
    assert "  warning: the image data is damaged" in capsys.readouterr().out
