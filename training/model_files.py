"""Reading ``.keras`` files with a message that says what is wrong with a bad one.

Keras answers every file it cannot open as a zip archive (empty, truncated, text, an HDF5 model
renamed ``.keras``) with "File not found: filepath=...", although the file is there.
:func:`check_keras_file` looks first and names the actual problem. Nothing here imports TensorFlow
except :func:`load_keras_model`, which loads after the check.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fer_core.errors import FileWriteError, ModelLoadError
from fer_core.files import replace_atomically

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


KERAS_WEIGHTS_FILE = "model.weights.h5"  # where a .keras archive keeps its weights


def non_finite_weights(path: str | os.PathLike[str]) -> list[str]:
    """The weight arrays of the model file ``path`` (``.keras``, or a legacy ``.h5``) that hold NaN or
    infinite values, by name. Read with h5py, without TensorFlow or building the model; a file whose
    weights cannot be read raises :class:`ModelLoadError`."""
    import h5py

    path = Path(path)
    bad: list[str] = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind == "f" and not np.isfinite(item[()]).all():
            bad.append(name)

    try:
        with path.open("rb") as handle:
            is_hdf5 = handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
        if is_hdf5:
            with h5py.File(path, "r") as weights:
                weights.visititems(visit)
        else:
            with zipfile.ZipFile(path) as archive:
                data = archive.read(KERAS_WEIGHTS_FILE)
            with h5py.File(io.BytesIO(data), "r") as weights:
                weights.visititems(visit)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"{path} is corrupt: its weights cannot be read ({error})") from None
    return bad


def check_finite_weights(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ModelLoadError` naming ``path`` when any of its weights is NaN or infinite (a model
    whose training diverged): such a model gives NaN for every face, and training from it diverges at once."""
    bad = non_finite_weights(path)
    if bad:
        example = bad[0].removeprefix("/")
        raise ModelLoadError(
            f"{path} has NaN or infinite weights ({len(bad)} weight array{'s' if len(bad) > 1 else ''}, "
            f"e.g. {example}): it cannot be used. Its training probably diverged: take an earlier checkpoint"
        )


def check_destination(path: Path) -> None:
    """Refuse, before any work, a file that cannot be written at ``path``: a folder of that name, a
    parent that is a file, a place where no file can be made (read-only, ``/proc``). The error names
    ``path``. A parent folder that does not exist yet is fine if it can be made."""
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder: give the name of the file to write (ending in {path.suffix or '.keras'})"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as error:
        raise FileWriteError(error.errno, f"cannot write {path}: {folder} {_refusal(error)}") from None
    os.close(handle)
    Path(probe).unlink()


def _refusal(error: OSError) -> str:
    if error.errno == errno.EROFS:
        return "is on a read-only file system"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "is not writable (permission denied)"
    if error.errno == errno.ENOSPC:
        return "is on a full disk"
    return f"does not accept new files ({error.strerror or error})"


def load_keras_model(path: str | os.PathLike[str], *, compile: bool = False) -> Any:
    """``keras.models.load_model`` after :func:`check_keras_file`; any failure is a ``ModelLoadError``
    that names the file."""
    check_keras_file(path)
    import keras

    try:
        return keras.models.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many types for a file it cannot use; all mean the same here
        raise ModelLoadError(f"{path} could not be loaded as a Keras model: {error}") from None


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save`` to ``path`` atomically (see :func:`replace_atomically`)."""
    replace_atomically(path, model.save)
