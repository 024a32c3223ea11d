"""Named data sources: ``demo`` for the built-in synthetic set, or any path ``load_dataset`` reads."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from fer_core.data import FaceDataset, load_dataset
from fer_core.demo import DEMO_NAME, demo_dir

DEMO_SOURCE = "demo"


def resolve_dataset(source: str | os.PathLike[str], *, split: str | None = None) -> FaceDataset:
    """Load ``"demo"`` (the synthetic set, marked ``synthetic=True``) or a FER2013-shaped path."""
    if str(source) == DEMO_SOURCE:
        return replace(load_dataset(demo_dir()), name=DEMO_NAME, synthetic=True)
    return load_dataset(source, split=split)


def describe_source(source: str | os.PathLike[str]) -> str:
    """``source`` in words for a run's record: the demo set, or the absolute path. Never raises: a
    path that cannot be resolved (a symlink loop, a NUL byte) is described as given, and loading it
    then fails with a :class:`~fer_core.errors.DatasetError` that says why."""
    if str(source) == DEMO_SOURCE:
        return f"{DEMO_NAME}: drawn by fer_core.demo, not real faces"
    try:
        return str(Path(source).expanduser().resolve())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop (Python 3.11)
        return str(source)
