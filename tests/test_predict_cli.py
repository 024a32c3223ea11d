"""``python -m fer_core predict IMAGE... [--json] [--csv]``: one JSON object per image (each face with its
detector score and landmarks), bad images reported without stopping the others, and an exit status that
says whether every image worked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PROJECT_ROOT
from photo_samples import detectable_faces, fer_faces, fixture_model, group_photo

from fer_core.cli import main
from fer_core.labels import EMOTIONS


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return fixture_model("happy", tmp_path_factory.mktemp("model") / "happy.keras")


@pytest.fixture(scope="module")
def images(tmp_path_factory, fer2013_dir) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    bgr_image, boxes = group_photo(detectable_faces(fer_faces(fer2013_dir), size=120, count=3), width=600)
    group = folder / "group.png"
    cv2.imwrite(str(group), bgr_image)
    crop = folder / "crop.jpg"
    cv2.imwrite(str(crop), cv2.imread(str(next((fer2013_dir / "test" / "happy").glob("*.jpg")))))
    broken = folder / "broken.png"
    broken.write_bytes(b"this is not a png")
    return {"group": group, "crop": crop, "broken": broken, "missing": folder / "missing.jpg", "count": len(boxes)}


def check_face_record(face: dict) -> None:
    assert set(face) == {
        "file", "kind", "frame", "time_s", "face", "box", "label", "emotion", "confidence", "detection_score",
        "whole_image", "landmarks", "scores"
    }  # fmt: skip
    assert (face["kind"], face["frame"], face["time_s"]) == ("photo", 0, 0.0)
    if not face["whole_image"]:
        assert 0 < face["detection_score"] <= 1 and set(face["landmarks"]) == {
            "right_eye", "left_eye", "nose", "mouth_right", "mouth_left"
        }  # fmt: skip
    assert len(face["box"]) == 4 and all(isinstance(value, int) for value in face["box"])
    assert list(face["scores"]) == list(EMOTIONS)
    assert face["emotion"] == max(face["scores"], key=face["scores"].get)
    assert face["confidence"] == pytest.approx(max(face["scores"].values()), abs=1e-6)
    assert sum(face["scores"].values()) == pytest.approx(1.0, abs=1e-4)


def test_json_output_has_one_object_per_image_and_an_error_entry_for_bad_files(model_path, images, capsys) -> None:
    paths = [images["group"], images["broken"], images["missing"]]
    status = main(["predict", *map(str, paths), "--json", "--model", str(model_path)])
    results = json.loads(capsys.readouterr().out)
    assert status == 1
    assert [result["image"] for result in results] == [str(path) for path in paths]
    assert all(set(result) == {"image", "faces", "error", "warning"} for result in results)
    group, broken, missing = results
    assert group["error"] is None
    assert len(group["faces"]) == images["count"]
    for face in group["faces"]:
        check_face_record(face)
        assert face["emotion"] == "happy"
    assert [face["box"][0] for face in group["faces"]] == sorted(face["box"][0] for face in group["faces"])
    assert broken["faces"] == [] and "not an image" in broken["error"]
    assert missing["faces"] == [] and "does not exist" in missing["error"]


def test_all_images_readable_exits_zero(model_path, images, capsys) -> None:
    assert main(["predict", str(images["group"]), "--json", "--model", str(model_path)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["error"] is None


def test_whole_image_mode_classifies_a_face_crop(model_path, images, capsys) -> None:
    assert main(["predict", str(images["crop"]), "--whole-image", "--json", "--model", str(model_path)]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    (face,) = result["faces"]
    assert face["box"] == [0, 0, 48, 48]
    check_face_record(face)


def test_text_output_lists_faces_and_errors(model_path, images, capsys) -> None:
    status = main(["predict", str(images["group"]), str(images["broken"]), "--model", str(model_path)])
    out = capsys.readouterr().out
    assert status == 1
    assert f"{images['group']}: {images['count']} faces" in out
    assert "#1 box=" in out and "happy" in out  # numbered from 1, left to right, as on the Photos page
    assert re.search(r"#1 box=\[\d+, \d+, \d+, \d+\] happy \d+%\n", out)  # "happy 87%", as on the pages
    assert f"{images['broken']}: error:" in out


def test_a_face_below_the_threshold_reads_as_on_the_pages(model_path, images, capsys) -> None:
    assert main(["predict", str(images["crop"]), "--whole-image", "--threshold", "1", "--model", str(model_path)]) == 0
    assert re.search(r"#1 box=\[0, 0, 48, 48\] uncertain \(happy \d+%\)\n", capsys.readouterr().out)


def test_a_missing_model_exits_two(tmp_path, images, capsys) -> None:
    assert main(["predict", str(images["group"]), "--model", str(tmp_path / "none.keras")]) == 2
    assert "no model file" in capsys.readouterr().err


def test_module_entry_point_prints_only_json_on_stdout(model_path, images) -> None:
    arguments = ["predict", str(images["group"]), str(images["broken"]), "--json", "--model", str(model_path)]
    completed = subprocess.run(
        [sys.executable, "-m", "fer_core", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr[-2000:]
    results = json.loads(completed.stdout)  # TensorFlow's and TFLite's chatter stays on stderr
    assert "XNNPACK" not in completed.stderr  # and LiteRT's start-up line is left out (--verbose shows it)
    assert [result["error"] is None for result in results] == [True, False]
    assert np.isclose(sum(results[0]["faces"][0]["scores"].values()), 1.0, atol=1e-4)


def test_csv_has_a_row_per_face_with_box_landmarks_and_probabilities(model_path, images, tmp_path) -> None:
    import csv

    from fer_core.analysis import CSV_COLUMNS

    out = tmp_path / "faces.csv"
    assert main(["predict", str(images["group"]), "--csv", str(out), "--model", str(model_path)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == images["count"] and list(rows[0]) == list(CSV_COLUMNS)
    assert all(float(row["detection_score"]) > 0 and row["right_eye_x"] for row in rows)


def test_the_haar_detector_and_no_alignment_can_be_chosen(model_path, images, capsys) -> None:
    assert (
        main(
            ["predict", str(images["group"]), "--json", "--detector", "haar", "--no-align", "--model", str(model_path)]
        )
        == 0
    )
    (result,) = json.loads(capsys.readouterr().out)
    assert result["faces"] and all(
        face["landmarks"] is None and face["detection_score"] is None for face in result["faces"]
    )


@pytest.mark.parametrize("value", ["5", "x", "100000"])
def test_a_minimum_face_out_of_range_is_a_usage_error(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["predict", "photo.jpg", "--min-face", value])
    assert stopped.value.code == 2 and "--min-face" in capsys.readouterr().err
