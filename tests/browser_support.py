"""Helpers for the live tests: video frames made of real FER2013 faces, a fake-camera .y4m file,
the real app server on a free port, and headless Chromium.

Chromium is Debian's (``scripts/install-browser.sh``), found as ``chromium`` on PATH or through
``$FER_CHROMIUM``; Playwright's own browser download does not work offline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from fer_core.detect import VIDEO_PRESET, Box, make_detector

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FRAME_WIDTH, FRAME_HEIGHT = 640, 480
CHROMIUM_ENV = "FER_CHROMIUM"

# --- frames


def textured_canvas(width: int = FRAME_WIDTH, height: int = FRAME_HEIGHT, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A gray, busy background (stripes, blobs and noise): harder for a face detector than a flat one."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pattern = 120 + 35 * np.sin(xs / 7.0) * np.cos(ys / 11.0) + 25 * np.sin((xs + 2 * ys) / 31.0)
    blobs = cv2.GaussianBlur(rng.normal(0, 60, (height, width)).astype(np.float32), (0, 0), 9)
    noise = rng.normal(0, 10, (height, width))
    gray = np.clip(pattern + blobs + noise, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def paste_face(bgr_frame: npt.NDArray[np.uint8], gray_face: npt.NDArray[np.uint8], box: Box) -> None:
    """Upscale a 48x48 face to ``box`` and paste it into the frame, in place."""
    face = cv2.resize(gray_face, (box.width, box.height), interpolation=cv2.INTER_CUBIC)
    bgr_frame[box.y : box.y + box.height, box.x : box.x + box.width] = face[:, :, None]


def frame_with_faces(
    gray_faces: Sequence[npt.NDArray[np.uint8]], boxes: Sequence[Box], seed: int = 0
) -> npt.NDArray[np.uint8]:
    frame = textured_canvas(seed=seed)
    for face, box in zip(gray_faces, boxes, strict=True):
        paste_face(frame, face, box)
    return frame


def detectable_faces(fer2013_dir: Path, count: int, *, size: int = 170, split: str = "test") -> list[npt.NDArray]:
    """The first ``count`` FER2013 faces (in file-name order, across emotions) that the video preset's
    detector finds once upscaled onto the textured canvas: FER2013's tight crops are not all findable."""
    detector = make_detector(VIDEO_PRESET)
    box = Box((FRAME_WIDTH - size) // 2, (FRAME_HEIGHT - size) // 2, size, size)
    files = sorted((fer2013_dir / split).glob("*/*.jpg"), key=lambda file: (file.name, file.parent.name))
    found: list[npt.NDArray[np.uint8]] = []
    for file in files[:2000]:
        face = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
        if face is None:
            continue
        found_boxes = [detection.box for detection in detector.detect(frame_with_faces([face], [box]))]
        if len(found_boxes) == 1 and found_boxes[0].iou(box) > 0.4:
            found.append(face)
            if len(found) == count:
                return found
    pytest.skip(f"only {len(found)} of the first FER2013 faces were detectable; wanted {count}")


def drifting_frames(
    gray_faces: Sequence[npt.NDArray[np.uint8]], frame_count: int, *, size: int = 170, fps: int = 15
) -> list[npt.NDArray[np.uint8]]:
    """A short clip: one face drifting slowly left and right, a different face each second."""
    frames = []
    background = textured_canvas()
    rng = np.random.default_rng(1)
    for index in range(frame_count):
        x = (FRAME_WIDTH - size) // 2 + round(60 * np.sin(2 * np.pi * index / frame_count))
        y = (FRAME_HEIGHT - size) // 2 + round(15 * np.cos(2 * np.pi * index / frame_count))
        frame = background.copy()
        paste_face(frame, gray_faces[(index // fps) % len(gray_faces)], Box(x, y, size, size))
        grain = rng.integers(-4, 5, frame.shape, dtype=np.int16)  # a camera is never perfectly still
        frames.append(np.clip(frame.astype(np.int16) + grain, 0, 255).astype(np.uint8))
    return frames


def write_y4m(path: Path, bgr_frames: Sequence[npt.NDArray[np.uint8]], fps: int = 15) -> Path:
    """A raw YUV4MPEG2 (I420) file, which Chromium's ``--use-file-for-fake-video-capture`` loops."""
    height, width = bgr_frames[0].shape[:2]
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in bgr_frames:
            handle.write(b"FRAME\n")
            handle.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


# --- the app server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AppServer:
    """``streamlit run app/main.py`` as a child process on a free local port."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(PROJECT_ROOT / "app" / "main.py"),
            "--server.port",
            str(self.port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
        ]
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends it and only it
        )

    def wait_until_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app server exited with {self.process.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the app server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, characters: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-characters:]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


@contextlib.contextmanager
def running_app(log_path: Path, env: dict[str, str] | None = None, timeout: float = 60.0) -> Iterator[AppServer]:
    server = AppServer(log_path, env)
    try:
        server.wait_until_healthy(timeout)
        yield server
    finally:
        server.stop()


# --- Chromium


def chromium_path() -> str | None:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium")


def require_chromium() -> str:
    """Chromium's path; skips the test when there is none, except on CI, where that is a failure."""
    path = chromium_path()
    if path is not None:
        return path
    reason = f"Chromium not found: run scripts/install-browser.sh (Debian's chromium) or set {CHROMIUM_ENV}"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(reason)
    pytest.skip(reason)


def chromium_args(fake_video: Path | None = None) -> list[str]:
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if fake_video is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_video}")
    if not has_non_loopback_address():
        args.append("--allow-loopback-in-peer-connection")
    return args


def launch_chromium(playwright: Playwright, fake_video: Path | None = None) -> Browser:
    return playwright.chromium.launch(
        executable_path=require_chromium(), headless=True, args=chromium_args(fake_video), timeout=60_000
    )


def has_non_loopback_address() -> bool:
    """Whether the server's WebRTC stack has an address to offer: aioice skips 127.0.0.1 and ::1."""
    from aioice.ice import get_host_addresses

    return bool(get_host_addresses(use_ipv4=True, use_ipv6=True))


def video_stats_script() -> str:
    """JavaScript for the webrtc iframe: the playing video's size; the median brightness of its top-left
    corner, where the server draws the frame rate on a dark strip, against the whole frame's mean; and
    the share of coloured pixels (the fake camera is grey, boxes of most emotions are not)."""
    return """() => {
      const video = document.querySelector('video');
      if (!video || video.readyState < 2 || !video.videoWidth) return null;
      const canvas = document.createElement('canvas');
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      const context = canvas.getContext('2d');
      context.drawImage(video, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let colored = 0, total = 0;
      const corner = [];
      for (let i = 0; i < pixels.length; i += 4) {
        const high = Math.max(pixels[i], pixels[i + 1], pixels[i + 2]);
        const low = Math.min(pixels[i], pixels[i + 1], pixels[i + 2]);
        if (high - low > 25) colored++;
        const brightness = (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
        total += brightness;
        const x = (i / 4) % canvas.width, y = Math.floor(i / 4 / canvas.width);
        if (x >= 2 && x < 150 && y >= 2 && y < 16) corner.push(brightness);
      }
      corner.sort((a, b) => a - b);  // the median: the strip's background, not the white text on it
      const pixelCount = pixels.length / 4;
      return {width: video.videoWidth, height: video.videoHeight, colored: colored / pixelCount,
              corner: corner[Math.floor(corner.length / 2)], overall: total / pixelCount};
    }"""


def is_annotated(stats: dict[str, float] | None) -> bool:
    """The server drew on the frame: its dark frame-rate strip is in the top-left corner."""
    return bool(stats) and stats["corner"] < 0.6 * stats["overall"]  # type: ignore[index]


def page_text(page: Any) -> str:
    return str(page.inner_text("body"))
