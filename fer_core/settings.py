"""Where things live: data roots, the runs folder, the promoted model. Read from the environment
or an optional ``fer_studio.toml`` at the project root; nothing here touches the disk at import.

The settings file is read again whenever it changes (its modification time, size or inode), so an
edit applies on the app's next rerun, without a server restart; the environment is read on every call.

Every setting of the file is checked each time the file is read: a value of the wrong type
(``data_roots = 5``, ``runs_dir = ["a"]``) is ignored, so its default applies, and the reason is
logged and kept for the app to show (:func:`settings_problem`).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tomllib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SETTINGS_FILE_ENV = "FER_SETTINGS"
SHIPPED_MODEL_PATH = PROJECT_ROOT / "models" / "fer_default.keras"  # quality: photos, video, batch, library, CLIs
SHIPPED_FAST_MODEL_PATH = PROJECT_ROOT / "models" / "fer_fast.keras"  # fast: Live (about a millisecond a face)
# Where a FER2013 copy is looked for when neither $FER2013_DIR nor the settings file names one.
FER2013_SEARCH_PATHS: tuple[Path, ...] = (PROJECT_ROOT / "data" / "fer2013", PROJECT_ROOT.parent / "shared" / "fer2013")
LOGGER = logging.getLogger(__name__)
PUBLIC_ENV = "FER_PUBLIC"
# Concurrent Live streams the server analyses. Measured on the project's 2-core machine (README,
# "Live, end to end"): two streams at once hold about 12 analysed fps each, with the browser on the same
# cores; a third was not measured reliably there, so the default stays at what was.
DEFAULT_MAX_LIVE_STREAMS = 2
MAX_LIVE_STREAMS_LIMIT = 64


def _path_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable path setting, or None."""
    if not isinstance(value, str) or not value.strip():
        return "expected a path in quotes"
    if "\x00" in value:
        return "a path cannot contain a NUL character"
    return None


def _path_list_problem(value: Any) -> str | None:
    """Why ``value`` is neither a path nor a list of paths, or None."""
    if isinstance(value, list):
        if not value:
            return None  # an empty list means "the default roots"
        problems = [_path_problem(item) for item in value]
        return next((f"item {index + 1}: {problem}" for index, problem in enumerate(problems) if problem), None)
    if isinstance(value, str):
        return _path_problem(value)
    return "expected a path in quotes or a list of paths"


def _bool_problem(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _email_list_problem(value: Any) -> str | None:
    """Why ``value`` is not a list of e-mail addresses, or None."""
    if not isinstance(value, list):
        return 'expected a list of e-mail addresses, e.g. ["ada@example.org"]'
    for index, item in enumerate(value):
        if not isinstance(item, str) or "@" not in item or item != item.strip():
            return f"item {index + 1}: expected an e-mail address in quotes"
    return None


def _stream_count_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "expected a whole number"
    if not 1 <= value <= MAX_LIVE_STREAMS_LIMIT:
        return f"expected 1 to {MAX_LIVE_STREAMS_LIMIT}"
    return None


# Every key fer_studio.toml may hold, with the check its value must pass (None: the value is fine).
SETTING_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "fer2013": _path_problem,
    "data_roots": _path_list_problem,
    "runs_dir": _path_problem,
    "public": _bool_problem,
    "admins": _email_list_problem,
    "max_live_streams": _stream_count_problem,
}


def _toml_text(value: Any) -> str:
    """``value`` roughly as it was written in the file, shortened: ``5``, ``["a"]``, ``"x"``."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _checked_settings(table: dict[str, Any], path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The settings of ``table`` that pass their checks, and one problem line per ignored key."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in table.items():
        check = SETTING_CHECKS.get(key)
        if check is None:
            known = ", ".join(sorted(SETTING_CHECKS))
            problems.append(f"{path}: unknown setting {key!r} ignored (known: {known})")
            continue
        problem = check(value)
        if problem is None:
            values[key] = value
        else:
            problems.append(f"{path}: {key} = {_toml_text(value)} ignored, the default applies ({problem})")
    return values, tuple(problems)


def settings_file_path() -> Path:
    """The settings file: ``$FER_SETTINGS``, else ``fer_studio.toml`` at the project root (it need not exist)."""
    return Path(os.environ.get(SETTINGS_FILE_ENV) or PROJECT_ROOT / "fer_studio.toml")


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when ``path`` is edited or replaced (modification time, size, inode); None if it is
    not a file."""
    try:
        status = path.stat()
    except (OSError, ValueError):  # ValueError: a NUL character in $FER_SETTINGS
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def _read_settings_file() -> tuple[dict[str, Any], tuple[str, ...]]:
    """The valid settings of the settings file, and why anything in it was ignored. Parsed again only
    when the file changes (each version's problems are logged once)."""
    path = settings_file_path()
    return _parse_settings_file(path, _file_stamp(path))


@lru_cache(maxsize=8)
def _parse_settings_file(path: Path, stamp: tuple[int, int, int] | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    if stamp is None:
        return {}, ()
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle)
    except (OSError, ValueError) as error:  # ValueError: TOMLDecodeError, or bytes that are not UTF-8
        problems: tuple[str, ...] = (f"{path} was ignored, the defaults apply: {error}",)
        values: dict[str, Any] = {}
    else:
        values, problems = _checked_settings(table, path)
    for problem in problems:
        LOGGER.warning(problem)
    return values, problems


def _settings_file() -> dict[str, Any]:
    return _read_settings_file()[0]


def settings_problems() -> tuple[str, ...]:
    """Why the settings file, or some of its settings, were ignored: one line each (empty when none)."""
    return _read_settings_file()[1]


def settings_problem() -> str | None:
    """Everything :func:`settings_problems` lists, as one message for the app's sidebar, or None."""
    problems = settings_problems()
    return "\n\n".join(problems) if problems else None


def _setting(env_name: str, key: str) -> str | None:
    value = os.environ.get(env_name)
    if value:
        return value
    configured = _settings_file().get(key)
    return configured if isinstance(configured, str) and configured else None


def default_runs_dir() -> Path:
    """Training runs: ``$FER_RUNS_DIR``, ``runs_dir`` in fer_studio.toml, else ``<project>/runs``."""
    configured = _setting("FER_RUNS_DIR", "runs_dir")
    return Path(configured).expanduser() if configured else PROJECT_ROOT / "runs"


def promoted_model_path() -> Path:
    """Where "Use this model" puts a run's model; the app loads it before the shipped default."""
    return default_runs_dir() / "promoted.keras"


def fer2013_candidates() -> list[Path]:
    """Where a FER2013 copy is looked for, in order: ``$FER2013_DIR``, ``fer2013`` in fer_studio.toml,
    then :data:`FER2013_SEARCH_PATHS` (``<project>/data/fer2013``, ``../shared/fer2013`` beside the
    project). None of them need exist."""
    configured = _setting("FER2013_DIR", "fer2013")
    candidates = [Path(configured).expanduser()] if configured else []
    return candidates + list(FER2013_SEARCH_PATHS)


def fer2013_location() -> Path | None:
    """The FER2013 copy to offer by default: the first of :func:`fer2013_candidates` that exists, or None."""
    return next((path for path in fer2013_candidates() if path.exists()), None)


def allowed_data_roots() -> list[Path]:
    """Folders under which a location typed in the browser may lie (``$FER_DATA_ROOTS``, a
    ``os.pathsep``-separated list, or ``data_roots`` in fer_studio.toml). By default: the project's
    ``data/`` folder and the configured FER2013 copy itself (not the folder holding it: with FER2013
    at ``/fer2013`` or ``~/fer2013.csv`` that would open all of ``/`` or the home folder)."""
    configured = os.environ.get("FER_DATA_ROOTS") or _settings_file().get("data_roots")
    parts: list[str | Path]
    if configured:
        parts = list(configured.split(os.pathsep) if isinstance(configured, str) else configured)
    else:
        parts = [PROJECT_ROOT / "data"]
        fer2013 = fer2013_location()
        if fer2013 is not None:
            parts.append(fer2013)
    resolved = [_resolved(part) for part in parts if part]
    return [root for root in resolved if root is not None]


def _resolved(path: str | os.PathLike[str]) -> Path | None:
    """``path`` made absolute with every symlink followed, or None if no file can have that name
    (a NUL character in it) or a symlink on the way loops."""
    try:
        return Path(path).expanduser().resolve()
    except (OSError, ValueError, RuntimeError):  # ValueError: "embedded null byte"; RuntimeError: a loop
        return None


def is_allowed_data_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` lies under an allowed data root; a path that cannot be resolved lies under none."""
    resolved = _resolved(path)
    if resolved is None:
        return False
    return any(resolved == root or resolved.is_relative_to(root) for root in allowed_data_roots())


def public_mode() -> bool:
    """Whether this is a public instance, where nobody is admin without signing in: ``$FER_PUBLIC``
    (``1``, ``true``, ``yes``, ``on``), else ``public`` in fer_studio.toml (default false)."""
    configured = os.environ.get(PUBLIC_ENV, "").strip().lower()
    if configured:
        return configured in ("1", "true", "yes", "on")
    return _settings_file().get("public") is True


def admin_emails() -> frozenset[str]:
    """The signed-in users who may change the server (``admins`` in fer_studio.toml), lower-cased."""
    return frozenset(email.lower() for email in _settings_file().get("admins", []))


def max_live_streams() -> int:
    """How many Live streams the server analyses at once (``max_live_streams`` in fer_studio.toml)."""
    configured = _settings_file().get("max_live_streams")
    return configured if isinstance(configured, int) else DEFAULT_MAX_LIVE_STREAMS
