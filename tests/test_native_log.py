"""fer_core.native_log: what native code prints to stderr, less the lines a user cannot act on."""

from __future__ import annotations

import os

import pytest

from fer_core import native_log

TENSORFLOW_START = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796398387.549776   10605 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.\n"
    "I0000 00:00:1796398387.648442   10605 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.\n"
    "E0000 00:00:1796398394.041617   10605 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)\n"
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
)
REAL_PROBLEMS = (
    "E0000 00:00:1796398394.041617   10605 op_kernel.cc:1000] OOM when allocating tensor\n"
    "W0000 00:00:1796398394.041617   10605 allocator.cc:1] Allocation exceeds 10% of free system memory.\n"
    "error: something a user must see\n"
)


def test_the_start_up_lines_are_left_out_and_everything_else_is_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with native_log.filtered_stderr():
        os.write(2, (TENSORFLOW_START + REAL_PROBLEMS).encode())
        print("on stdout", flush=True)
    captured = capfd.readouterr()
    assert captured.err == REAL_PROBLEMS
    assert captured.out == "on stdout\n"


def test_verbose_shows_everything(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_log, "VERBOSE", True)
    with native_log.filtered_stderr():
        os.write(2, TENSORFLOW_START.encode())
    assert capfd.readouterr().err == TENSORFLOW_START


def test_what_was_written_before_an_exception_is_not_lost(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), native_log.filtered_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nthe reason it failed\n")
        raise RuntimeError("failed")
    assert capfd.readouterr().err == "the reason it failed\n"
