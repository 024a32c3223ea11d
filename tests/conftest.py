"""Shared test setup.

The WebRTC stack is imported first: in one process, TensorFlow followed by aiortc/pylibsrtp
segfaults (see app/import_order.py), and pytest runs every test in one process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FER_CACHE_DIR", str(PROJECT_ROOT / ".cache"))

import app.import_order  # noqa: E402, F401


def fer2013_path() -> Path | None:
    """FER2013 for tests: ``$FER2013_DIR``, else ``../shared/fer2013`` beside the project."""
    configured = os.environ.get("FER2013_DIR")
    path = Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "fer2013"
    return path if (path / "train").is_dir() else None


@pytest.fixture(scope="session")
def fer2013_dir() -> Path:
    path = fer2013_path()
    if path is None:
        pytest.skip("FER2013 not found: set FER2013_DIR or put it at ../shared/fer2013")
    return path


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
