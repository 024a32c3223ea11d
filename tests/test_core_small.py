"""Small pure pieces of the core: label order, settings and allowed roots, metrics, train config."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT

from fer_core import settings
from fer_core.labels import (
    EMOTION_COLORS_RGB,
    EMOTIONS,
    THEME_EMOTION,
    UNCERTAIN_COLOR_RGB,
    label_color_rgb,
    label_from_name,
    rgb_css,
    rgb_hex,
)
from fer_core.metrics import classification_report, confusion_matrix
from training.config import TrainConfig, config_from_mapping, load_config_file


def test_label_order_is_the_fer2013_csv_codes() -> None:
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_every_emotion_has_its_own_colour_and_anything_else_is_grey() -> None:
    assert set(EMOTION_COLORS_RGB) == set(EMOTIONS)
    assert len(set(EMOTION_COLORS_RGB.values()) | {UNCERTAIN_COLOR_RGB}) == len(EMOTIONS) + 1
    assert label_color_rgb("happy") == EMOTION_COLORS_RGB["happy"]
    assert label_color_rgb("uncertain") == label_color_rgb("contempt") == UNCERTAIN_COLOR_RGB
    assert rgb_css((255, 190, 11), 0.5) == "rgba(255, 190, 11, 0.5)"
    assert rgb_hex((255, 190, 11)) == "#ffbe0b"


def test_the_app_theme_takes_its_colour_from_the_emotion_palette() -> None:
    theme = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())["theme"]
    assert theme["primaryColor"].lower() == rgb_hex(EMOTION_COLORS_RGB[THEME_EMOTION])


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("Angry", 0), ("anger", 0), ("SADNESS", 4), ("surprise", 5), ("Neutral", 6), ("contempt", None), ("cats", None)],
)
def test_folder_names_map_onto_the_label_order(folder: str, expected: int | None) -> None:
    assert label_from_name(folder) == expected


def test_typed_locations_must_lie_under_the_allowed_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = tmp_path / "data"
    (allowed / "fer2013").mkdir(parents=True)
    monkeypatch.setenv("FER_DATA_ROOTS", str(allowed))
    assert settings.is_allowed_data_path(allowed / "fer2013")
    assert settings.is_allowed_data_path(allowed / "fer2013" / ".." / "fer2013")
    assert not settings.is_allowed_data_path(allowed / ".." / "elsewhere")
    assert not settings.is_allowed_data_path("/etc")


def test_by_default_the_fer2013_copy_is_allowed_but_not_its_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FER_DATA_ROOTS", raising=False)
    (tmp_path / "fer2013" / "test").mkdir(parents=True)
    monkeypatch.setenv("FER2013_DIR", str(tmp_path / "fer2013"))

    assert settings.is_allowed_data_path(tmp_path / "fer2013" / "test")
    assert not settings.is_allowed_data_path(tmp_path)  # e.g. FER2013 at /fer2013 must not open all of /


def test_fer2013_location_comes_from_the_environment_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER2013_DIR", str(tmp_path))
    assert settings.fer2013_location() == tmp_path


def test_runs_dir_and_promoted_model_follow_fer_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path))
    assert settings.default_runs_dir() == tmp_path
    assert settings.promoted_model_path().parent == tmp_path


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fer_studio.toml of the test's own (not written yet)."""
    path = tmp_path / "fer_studio.toml"
    monkeypatch.setenv(settings.SETTINGS_FILE_ENV, str(path))
    monkeypatch.delenv("FER_RUNS_DIR", raising=False)
    return path


def test_the_settings_file_sets_the_runs_dir(settings_file: Path, tmp_path: Path) -> None:
    settings_file.write_text(f'runs_dir = "{tmp_path / "my-runs"}"\n')
    assert settings.default_runs_dir() == tmp_path / "my-runs"
    assert settings.settings_problem() is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b'runs_dir = "/somewhere\n', "line 1"), (b'runs_dir = "/caf\xe9"\n', "utf-8")],  # open quote; Latin-1
)
def test_a_settings_file_that_is_not_toml_is_ignored_with_the_reason(
    settings_file: Path, content: bytes, reason: str
) -> None:
    settings_file.write_bytes(content)
    assert settings.default_runs_dir() == settings.PROJECT_ROOT / "runs"  # the defaults apply
    problem = settings.settings_problem()
    assert problem is not None and str(settings_file) in problem and reason in problem


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("data_roots = 5", "data_roots"),
        ("data_roots = [1, 2]", "data_roots"),
        ('data_roots = ["/data", ""]', "data_roots"),
        ('runs_dir = ["a"]', "runs_dir"),
        ("runs_dir = 7", "runs_dir"),
        ('runs_dir = ""', "runs_dir"),
        ("fer2013 = 3", "fer2013"),
        ("fer2013 = true", "fer2013"),
        ('fer2013 = "/data/\\u0000"', "fer2013"),
        ("[fer2013]\npath = '/data'", "fer2013"),
    ],
)
def test_a_setting_of_the_wrong_type_is_ignored_and_named(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, line: str, key: str
) -> None:
    monkeypatch.delenv("FER_DATA_ROOTS", raising=False)
    monkeypatch.delenv("FER2013_DIR", raising=False)
    settings_file.write_text(line + "\n")

    assert settings.default_runs_dir() == settings.PROJECT_ROOT / "runs"  # never a folder named "['a']"
    assert settings.PROJECT_ROOT / "data" in settings.allowed_data_roots()  # the default roots, no TypeError
    settings.fer2013_location()  # no TypeError either
    (problem,) = settings.settings_problems()
    assert f"{key} = " in problem and "ignored" in problem and str(settings_file) in problem
    assert settings.settings_problem() == problem
    assert [record.getMessage() for record in caplog.records if record.name == settings.__name__] == [problem]


def test_the_valid_settings_beside_a_wrong_one_still_apply(settings_file: Path, tmp_path: Path) -> None:
    settings_file.write_text(f'runs_dir = "{tmp_path / "my-runs"}"\ndata_roots = 5\nfer2013 = [3]\n')

    assert settings.default_runs_dir() == tmp_path / "my-runs"
    problems = settings.settings_problems()
    assert len(problems) == 2
    assert "data_roots = 5" in problems[0] and "fer2013 = [3]" in problems[1]
    combined = settings.settings_problem()
    assert combined is not None and "data_roots" in combined and "fer2013" in combined


def test_data_roots_may_be_a_list_of_paths_or_one_string(settings_file: Path, tmp_path: Path) -> None:
    settings_file.write_text(f'data_roots = ["{tmp_path / "a"}", "{tmp_path / "b"}"]\n')
    assert settings.allowed_data_roots() == [tmp_path / "a", tmp_path / "b"]
    assert settings.settings_problems() == ()


def test_an_unknown_setting_is_named(settings_file: Path) -> None:
    settings_file.write_text('run_dir = "/tmp/runs"\n')  # a typo of runs_dir
    (problem,) = settings.settings_problems()
    assert "unknown setting 'run_dir'" in problem and "runs_dir" in problem


@pytest.mark.parametrize("typed", ["data/\x00", "\x00", "data/fer2013\x00/../x"])
def test_a_location_with_a_nul_character_is_not_allowed_and_does_not_raise(
    typed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert not settings.is_allowed_data_path(typed)


def test_a_location_through_a_symlink_loop_is_not_allowed_and_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "selfloop").symlink_to("selfloop")
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))
    assert not settings.is_allowed_data_path(tmp_path / "selfloop")
    assert not settings.is_allowed_data_path(tmp_path / "selfloop" / "train")


def test_classification_report_on_a_known_confusion() -> None:
    labels = np.array([0, 0, 1, 1, 3, 3, 3, 6])
    predictions = np.array([0, 3, 1, 0, 3, 3, 3, 6])
    report = classification_report(labels, predictions)
    assert report["n"] == 8
    assert report["accuracy"] == pytest.approx(6 / 8)
    assert report["per_class"]["angry"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_class"]["happy"]["precision"] == pytest.approx(3 / 4)
    assert report["per_class"]["fear"]["support"] == 0
    # Macro-F1 averages over the classes present in the labels (angry, disgust, happy, neutral).
    expected_f1 = [0.5, 2 / 3, 2 * 0.75 * 1 / 1.75, 1.0]
    assert report["macro_f1"] == pytest.approx(np.mean(expected_f1))
    assert confusion_matrix(labels, predictions).sum() == 8
    assert report["confusion"][0] == [1, 0, 0, 1, 0, 0, 0]


def test_train_config_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown setting"):
        config_from_mapping({"epochz": 3})
    with pytest.raises(ValueError, match="epochs must be between 1 and"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.5)
    file = tmp_path / "train.toml"
    file.write_text('[train]\narch = "tiny"\nepochs = 3\n')
    config = load_config_file(file)
    assert (config.arch, config.epochs, config.batch_size) == ("tiny", 3, TrainConfig().batch_size)


def test_learning_rate_defaults_to_the_architectures_own() -> None:
    assert TrainConfig(arch="seed").learning_rate == pytest.approx(1e-4)
    assert TrainConfig(arch="seed", lr=0.01).learning_rate == pytest.approx(0.01)


def test_an_edited_settings_file_applies_without_a_restart(settings_file: Path, tmp_path: Path) -> None:
    settings_file.write_text(f'runs_dir = "{tmp_path / "first"}"\n')
    assert settings.default_runs_dir() == tmp_path / "first"

    settings_file.write_text(f'runs_dir = "{tmp_path / "second-runs"}"\n')
    assert settings.default_runs_dir() == tmp_path / "second-runs"

    settings_file.write_text(f'runs_dir = "{tmp_path / "third-runs"}"\n')  # same size: the time tells it apart
    stamp = settings_file.stat()
    os.utime(settings_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    assert settings.default_runs_dir() == tmp_path / "third-runs"

    settings_file.unlink()
    assert settings.default_runs_dir() == settings.PROJECT_ROOT / "runs"


def test_a_fer2013_copy_named_in_the_settings_file_is_found_on_the_next_call(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FER2013_DIR", raising=False)
    assert settings.fer2013_location() is None  # the tests see no copy nearby

    (tmp_path / "fer2013" / "train").mkdir(parents=True)
    settings_file.write_text(f'fer2013 = "{tmp_path / "fer2013"}"\n')

    assert settings.fer2013_location() == tmp_path / "fer2013"
    assert settings.fer2013_candidates()[0] == tmp_path / "fer2013"
