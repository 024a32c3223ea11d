"""What native libraries print to stderr that a user cannot act on, and a way to leave it out.

TensorFlow's C++ runtime and LiteRT write straight to file descriptor 2, so Python's logging cannot
filter them: loading a LiteRT model prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
importing TensorFlow on a machine without a GPU prints a dozen lines ending in "failed call to cuInit".

    with filtered_stderr():
        interpreter = Interpreter(model_content=flatbuffer)

captures what is written to stderr meanwhile (by any thread) and writes it back afterwards, less the
lines of :data:`NOISE`; nothing else is lost, only held until the block ends. ``--verbose`` in the
CLIs sets :data:`VERBOSE`, which shows everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# Whole lines a user cannot act on, from LiteRT, absl and TensorFlow's start-up.
NOISE = re.compile(
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:. ]+\d+ [\w.]+:\d+\] .*"  # absl INFO lines: cudart_stub, cpu_feature_guard, oneDNN
    r"|E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit: .*"  # no GPU on this machine
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\."
)
VERBOSE = False  # set by the CLIs' --verbose: nothing is left out
_LOCK = threading.RLock()  # one redirection of fd 2 at a time (a nested one is fine)


def without_noise(text: str) -> str:
    """``text`` less its lines that match :data:`NOISE` (as a whole)."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.fullmatch(line.rstrip("\r\n")))


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Hold what is written to file descriptor 2 during the block, then write it back less the lines of
    :data:`NOISE`. Does nothing when :data:`VERBOSE` is set or stderr cannot be redirected."""
    if VERBOSE:
        yield
        return
    with _LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no fd 2 (a closed or replaced stderr)
            yield
            return
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                with suppress(OSError, ValueError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                kept = without_noise(held.read().decode("utf-8", "replace"))
                remaining = kept.encode("utf-8")
                while remaining:
                    remaining = remaining[os.write(2, remaining) :]
