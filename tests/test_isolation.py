"""The tests run without the user's settings (conftest.isolated_settings), yet find the FER2013 copy the
user configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import PROJECT_ROOT, TEST_CACHE_DIR, USER_SETTINGS_ENV, fer2013_path

from fer_core import settings
from fer_core.data import default_cache_dir

EXPECTED_FER2013_ENV = "FER_TEST_EXPECTED_FER2013"  # set only by the subprocess test below


def test_the_tests_read_neither_the_project_settings_file_nor_the_users_environment() -> None:
    path = settings.settings_file_path()
    assert path != PROJECT_ROOT / "fer_studio.toml"
    assert not path.exists()
    assert settings.fer2013_location() is None
    assert settings.settings_problem() is None
    assert default_cache_dir() == TEST_CACHE_DIR
    assert not [name for name in USER_SETTINGS_ENV if name in os.environ]
    assert settings.default_runs_dir() != PROJECT_ROOT / "runs"


def test_fer2013_for_tests_is_the_configured_copy() -> None:
    """Run by the subprocess test below, which says where the copy should be; a no-op otherwise."""
    expected = os.environ.get(EXPECTED_FER2013_ENV)
    if expected:
        assert fer2013_path() == Path(expected)


def test_a_users_fer_studio_toml_leaves_the_pages_on_the_demo_set_and_names_fer2013_for_tests(
    tmp_path: Path,
) -> None:
    """What a user gets after following the README: a fer_studio.toml naming their FER2013 copy (and
    their own runs folder and data roots). The Dataset page tests still see the demo set, and the
    FER2013 tests use that copy."""
    fer2013 = tmp_path / "my-fer2013"
    for split in ("train", "test"):
        (fer2013 / split / "happy").mkdir(parents=True)
        cv2.imwrite(str(fer2013 / split / "happy" / "face.png"), np.full((48, 48), 128, np.uint8))
    user_settings = tmp_path / "fer_studio.toml"
    user_settings.write_text(
        f'fer2013 = "{fer2013}"\nruns_dir = "{tmp_path / "my-runs"}"\ndata_roots = ["{tmp_path}"]\n'
    )
    environment = {name: value for name, value in os.environ.items() if name not in ("FER2013_DIR", "FER_RUNS_DIR")}
    environment.update({settings.SETTINGS_FILE_ENV: str(user_settings), EXPECTED_FER2013_ENV: str(fer2013)})
    environment["FER_DATA_ROOTS"] = str(tmp_path)  # the environment is isolated too
    selected = [
        "tests/test_isolation.py::test_fer2013_for_tests_is_the_configured_copy",
        "tests/test_isolation.py::test_the_tests_read_neither_the_project_settings_file_nor_the_users_environment",
        "tests/test_dataset_page.py::test_the_page_renders_the_demo_set",
    ]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "3 passed" in completed.stdout
    assert not (tmp_path / "my-runs").exists()
