"""A worker call for the local engine's crash tests (importable by the pool's forkserver processes)."""

from __future__ import annotations

import os
from pathlib import Path

from fer_core.batch.engines import _run_local_call
from fer_core.batch.inputs import Unit, UnitResult


def crash_on_marked_files(units: list[Unit]) -> list[UnitResult]:
    """As a worker's call, except that a file named ``crash*`` kills the worker, as a decoder's segfault
    or the kernel's OOM killer would."""
    if any(Path(unit.path).name.startswith("crash") for unit in units):
        os._exit(1)
    return _run_local_call(units)
