"""One atomic write: a file is written under a private temporary name beside its place, then moved
into place (``os.replace``), so a reader never opens half a file and a failed write leaves what was there.

Every writer of model files, run files, records and job files goes through :func:`replace_atomically`;
folders that are built whole (a data set cache, the demo set) take their temporary names from
:func:`temporary_path` too, so a temporary is always recognisable as one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fer_core.errors import FileWriteError

TEMPORARY_MARK = ".tmp"  # in every temporary name, before the suffix: ``.name.<pid>-<thread>.tmp.keras``


def temporary_path(path: Path) -> Path:
    """A private name beside ``path`` (same folder, so ``os.replace`` is atomic), hidden, unique to this
    process and thread, and keeping the suffix (``model.save`` and the writers choose the format by it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}{TEMPORARY_MARK}{path.suffix}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a name :func:`temporary_path` gives (left behind by a killed writer, say)."""
    return path.name.startswith(".") and TEMPORARY_MARK in path.name


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path``, then move it into place. A failure raises
    :class:`~fer_core.errors.FileWriteError` named for ``path`` (never the temporary name), with the
    original error as its cause; the temporary file is removed either way."""
    temporary = temporary_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    except FileWriteError:
        raise
    except OSError as error:
        raise FileWriteError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    finally:
        temporary.unlink(missing_ok=True)


def replace_together(writes: Sequence[tuple[Path, Callable[[Path], object]]]) -> None:
    """:func:`replace_atomically` for files that belong together (a model, its served copy and its
    record): every temporary file is written first, then all are moved into place, so a failed write
    changes none of them."""
    temporaries = [temporary_path(path) for path, _ in writes]
    try:
        for (_, write), temporary in zip(writes, temporaries, strict=True):
            write(temporary)
        for (path, _), temporary in zip(writes, temporaries, strict=True):
            os.replace(temporary, path)
    except FileWriteError:
        raise
    except OSError as error:
        names = ", ".join(str(path) for path, _ in writes)
        raise FileWriteError(error.errno, f"cannot write {names}: {error.strerror or error}") from error
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json_atomically(path: Path, data: Any) -> None:
    """``data`` as indented JSON (values JSON cannot hold written as text)."""
    write_text_atomically(path, json.dumps(data, indent=2, default=str) + "\n")
