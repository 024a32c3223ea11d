"""Reading ``.keras`` files with a message that says what is wrong with a bad one.

Keras answers every file it cannot open as a zip archive (empty, truncated, text, an HDF5 model
renamed ``.keras``) with "File not found: filepath=...", although the file is there.
:func:`check_keras_file` looks first and names the actual problem. Nothing here imports TensorFlow
except :func:`load_keras_model`, which loads after the check.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fer_core.errors import ModelLoadError
from training.runs import temporary_path

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK"


def check_keras_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`~fer_core.errors.ModelLoadError` saying why ``path`` cannot be a ``.keras``
    model: missing, not a file, unreadable, empty, HDF5 under a ``.keras`` name, not a zip archive,
    truncated or damaged. A legacy ``.h5`` file passes when it is named ``.h5``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ModelLoadError(f"{path} is not a file")
        with path.open("rb") as handle:
            head = handle.read(len(HDF5_SIGNATURE))
    except FileNotFoundError:
        raise ModelLoadError(f"no model file at {path}") from None
    except OSError as error:
        raise ModelLoadError(f"{path} cannot be read: {error.strerror or error}") from None
    if size == 0:
        raise ModelLoadError(f"{path} is empty (0 bytes): not a model")
    if head == HDF5_SIGNATURE:
        if path.suffix == ".h5":
            return
        raise ModelLoadError(
            f"{path} is an HDF5 file (the legacy .h5 format) named {path.suffix or 'without .h5'}: "
            "rename it to end in .h5, or save the model again as .keras"
        )
    if not zipfile.is_zipfile(path):
        if head.startswith(ZIP_SIGNATURE):
            raise ModelLoadError(f"{path} is truncated or corrupt: its zip archive is incomplete")
        raise ModelLoadError(f"{path} is not a Keras model: a .keras file is a zip archive and this one is not")
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelLoadError(f"{path} is a zip archive but not a Keras model (it holds no config.json)")
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ModelLoadError(f"{path} is corrupt: {error}") from None
    if damaged is not None:
        raise ModelLoadError(f"{path} is corrupt: {damaged} inside it is damaged")


def load_keras_model(path: str | os.PathLike[str], *, compile: bool = False) -> Any:
    """``keras.models.load_model`` after :func:`check_keras_file`; any failure is a ``ModelLoadError``
    that names the file."""
    check_keras_file(path)
    import keras

    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many types for a file it cannot use; all mean the same here
        raise ModelLoadError(f"{path} could not be loaded as a Keras model: {error}") from None


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file beside ``path``, then move it into place (``os.replace``): a reader never
    opens a half-written model file."""
    temporary = temporary_path(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` to ``path`` atomically (see :func:`replace_atomically`)."""
    replace_atomically(path, model.save)
