"""Shared test setup.

The WebRTC stack is imported first: in one process, TensorFlow followed by aiortc/pylibsrtp
segfaults (see app/import_order.py), and pytest runs every test in one process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import app.import_order  # noqa: E402, F401
from fer_core import settings  # noqa: E402

# The test suite's own data-set cache (keyed by every file's path, size and modification time, so it is
# never stale): kept between runs so FER2013 is decoded once, and never the user's ~/.cache/fer_studio.
TEST_CACHE_DIR = PROJECT_ROOT / ".cache"
# What the user's environment may set that the app or the core reads. Tests start without any of it;
# a test that means to use one sets it itself (monkeypatch.setenv).
USER_SETTINGS_ENV = (
    "FER2013_DIR",
    "FER_DATA_ROOTS",
    "FER_ICE_SERVERS",
    "FER_ICE_TRANSPORT_POLICY",
    "FER_PUBLIC",
    "XDG_CACHE_HOME",
)


def _find_fer2013() -> Path | None:
    """FER2013 for tests, looked for where the app looks (``$FER2013_DIR``, ``fer2013`` in the user's
    fer_studio.toml or ``$FER_SETTINGS``, ``data/fer2013``, ``../shared/fer2013``): the first of those
    in the Kaggle layout (a ``train/`` folder). Resolved once, at import, before the tests are isolated
    from those settings."""
    return next((path for path in settings.fer2013_candidates() if (path / "train").is_dir()), None)


FER2013_FOR_TESTS = _find_fer2013()


def fer2013_path() -> Path | None:
    """The FER2013 copy the tests may use (see :func:`_find_fer2013`), or None."""
    return FER2013_FOR_TESTS


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    path = fer2013_path()
    if path is None:
        pytest.skip("FER2013 not found: set FER2013_DIR, name it in fer_studio.toml, or put it at ../shared/fer2013")
    return path


@pytest.fixture(scope="session", autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The whole session runs without the user's settings: ``$FER_SETTINGS`` names a settings file that
    does not exist (so neither the project's fer_studio.toml nor the user's is read), the variables of
    :data:`USER_SETTINGS_ENV` are unset, no FER2013 copy is found nearby, data sets are cached in
    :data:`TEST_CACHE_DIR` and runs go to a temporary folder (each test then gets its own, see
    :func:`isolated_runs_dir`). Session-wide (not per test) so servers and trainers that module fixtures
    start inherit it too. Returns the (absent) settings file's path."""
    settings_file = tmp_path_factory.mktemp("settings") / "fer_studio.toml"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(settings.SETTINGS_FILE_ENV, str(settings_file))
        patch.setenv("FER_CACHE_DIR", str(TEST_CACHE_DIR))
        patch.setenv("FER_RUNS_DIR", str(tmp_path_factory.mktemp("session-runs")))
        for name in USER_SETTINGS_ENV:
            patch.delenv(name, raising=False)
        patch.setattr(settings, "FER2013_SEARCH_PATHS", ())
        yield settings_file


@pytest.fixture(autouse=True)
def isolated_runs_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own runs folder, so nothing touches the project's runs/ or promoted model."""
    runs_dir = tmp_path_factory.mktemp("runs")
    monkeypatch.setenv("FER_RUNS_DIR", str(runs_dir))
    return runs_dir


@pytest.fixture(autouse=True)
def free_live_stream_slots() -> None:
    """Every test starts with the server's Live stream slots free (streams of earlier tests held them)."""
    from app.limits import LIVE_STREAMS

    LIVE_STREAMS.clear()


@pytest.fixture(scope="session", autouse=True)
def streamlit_runs_without_keras_cleanup() -> Iterator[None]:
    """AppTest page runs skip Streamlit's after-run cleanup of Keras (``keras.backend.clear_session()``)
    and its forced full garbage collection.

    Streamlit clears Keras's global state after every script run whenever ``keras`` is imported in the
    process. The app server never imports Keras (test_boundaries checks it), so there it never runs; but
    pytest imports Keras for the training and model tests, and from then on every AppTest run paid a
    Keras session reset (which collects the TensorFlow-sized heap: up to a second each). The rest of
    Streamlit's cleanup (closing matplotlib figures) still runs. The forced ``gc.collect(2)`` after each run
    (``runner.postScriptGC``, a memory measure for the server, where the heap holds no TensorFlow) is off
    too; Python's own collector still runs as usual."""
    from streamlit import config
    from streamlit.runtime.scriptrunner import script_runner

    def close_matplotlib_figures_only() -> None:  # Streamlit's cleanup less its Keras part
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(script_runner, "_clean_problem_modules", close_matplotlib_figures_only)
        post_script_gc = config.get_option("runner.postScriptGC")
        config.set_option("runner.postScriptGC", False)
        try:
            yield
        finally:
            config.set_option("runner.postScriptGC", post_script_gc)
