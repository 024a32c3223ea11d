"""Where things live: data roots, the runs folder, the promoted model. Read from the environment
or an optional ``fer_studio.toml`` at the project root; nothing here touches the disk at import."""

from __future__ import annotations

import logging
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE_ENV = "FER_SETTINGS"
SHIPPED_MODEL_PATH = PROJECT_ROOT / "models" / "fer_default.keras"
LOGGER = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _read_settings_file() -> tuple[dict[str, Any], str | None]:
    """The settings file's table, and why it was ignored if it could not be read (None if it was)."""
    path = Path(os.environ.get(SETTINGS_FILE_ENV, PROJECT_ROOT / "fer_studio.toml"))
    if not path.is_file():
        return {}, None
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle), None
    except (OSError, ValueError) as error:  # ValueError: TOMLDecodeError, or bytes that are not UTF-8
        problem = f"{path} was ignored, the defaults apply: {error}"
        LOGGER.warning(problem)
        return {}, problem


def _settings_file() -> dict[str, Any]:
    return _read_settings_file()[0]


def settings_problem() -> str | None:
    """Why the settings file was ignored (it is not valid TOML, say), or None: the app shows it."""
    return _read_settings_file()[1]


def _setting(env_name: str, key: str) -> str | None:
    value = os.environ.get(env_name)
    if value:
        return value
    configured = _settings_file().get(key)
    return str(configured) if configured else None


def default_runs_dir() -> Path:
    """Training runs: ``$FER_RUNS_DIR``, ``runs_dir`` in fer_studio.toml, else ``<project>/runs``."""
    configured = _setting("FER_RUNS_DIR", "runs_dir")
    return Path(configured).expanduser() if configured else PROJECT_ROOT / "runs"


def promoted_model_path() -> Path:
    """Where "Use this model" puts a run's model; the app loads it before the shipped default."""
    return default_runs_dir() / "promoted.keras"


def fer2013_location() -> Path | None:
    """The FER2013 copy to offer by default: ``$FER2013_DIR``, ``fer2013`` in fer_studio.toml,
    ``<project>/data/fer2013``, then ``../shared/fer2013`` beside the project. None if none exists."""
    configured = _setting("FER2013_DIR", "fer2013")
    candidates = [Path(configured).expanduser()] if configured else []
    candidates += [PROJECT_ROOT / "data" / "fer2013", PROJECT_ROOT.parent / "shared" / "fer2013"]
    return next((path for path in candidates if path.exists()), None)


def allowed_data_roots() -> list[Path]:
    """Folders under which a location typed in the browser may lie (``$FER_DATA_ROOTS``, a
    ``os.pathsep``-separated list, or ``data_roots`` in fer_studio.toml). By default: the project's
    ``data/`` folder and the configured FER2013 copy itself (not the folder holding it: with FER2013
    at ``/fer2013`` or ``~/fer2013.csv`` that would open all of ``/`` or the home folder)."""
    configured = os.environ.get("FER_DATA_ROOTS") or _settings_file().get("data_roots")
    if configured:
        parts = configured.split(os.pathsep) if isinstance(configured, str) else list(configured)
        return [Path(part).expanduser().resolve() for part in parts if part]
    roots = [PROJECT_ROOT / "data"]
    fer2013 = fer2013_location()
    if fer2013 is not None:
        roots.append(fer2013.resolve())
    return [root.resolve() for root in roots]


def is_allowed_data_path(path: str | os.PathLike[str]) -> bool:
    resolved = Path(path).expanduser().resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in allowed_data_roots())
