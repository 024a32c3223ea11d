"""Benchmark: the Live page end to end, as a user gets it. The real app server and headless Chromium with a
fake camera (640x480 at ``--fps``, 30 by default: real FER2013 faces drifting over a textured background) on this machine.

For one tab, then two tabs at once (two browser contexts), after a warm-up it samples for ``--seconds``:

    returned fps    frames the page's video element shows per second (what comes back from the server)
    analysed fps    growth of the panel's "N frames analysed this session" count per second
    ms per frame    the panel's processing time per analysed frame, median of the samples

and, once: the time from starting the server to the first rendered page, from opening the Live page to
its START button (the model loaded), and the server's resident memory after the Live runs. ``--project`` runs another checkout of FER Studio (an older commit, say)
with this script, so the numbers before and after a change come from the same measurement.

    python scripts/bench_live_browser.py                        # this checkout
    git worktree add /tmp/before <commit> && python scripts/bench_live_browser.py --project /tmp/before

Needs Debian's chromium (scripts/install-browser.sh) and FER2013 (faces for the camera). Not a test:
the browsers, the server and the codecs share the machine's cores; compare runs made one after another.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from fer_core.settings import fer2013_location  # noqa: E402

WIDTH, HEIGHT = 640, 480
COUNT_PATTERN = re.compile(r"([\d,]+) frames (?:analysed|processed) this session")
TIMING_LABELS = ("ms per frame", "Processing")  # this version's panel, and the one before LiteRT


def camera_file(fer2013: Path, folder: Path, fps: int, seconds: int = 6) -> Path:
    """A looping .y4m: FER2013 test faces (a different one each second) drifting over a textured canvas."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    pattern = 120 + 35 * np.sin(xs / 7.0) * np.cos(ys / 11.0) + 25 * np.sin((xs + 2 * ys) / 31.0)
    background = np.clip(pattern + rng.normal(0, 10, (HEIGHT, WIDTH)), 0, 255).astype(np.uint8)
    files = (
        sorted((fer2013 / "test" / "happy").glob("*.jpg"))[:seconds]
        or sorted((fer2013 / "test").glob("*/*.jpg"))[:seconds]
    )
    faces = [cv2.imread(str(file), cv2.IMREAD_GRAYSCALE) for file in files]
    path = folder / "camera.y4m"
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for index in range(seconds * fps):
            frame = background.copy()
            x = 230 + round(70 * np.sin(2 * np.pi * index / (seconds * fps)))
            frame[150:330, x : x + 180] = cv2.resize(faces[index // fps % len(faces)], (180, 180))
            handle.write(
                b"FRAME\n" + cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2YUV_I420).tobytes()
            )
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def app_server(project: Path, runs_dir: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """The app of ``project`` on a free port; yields the process, its URL and when it was started."""
    port = free_port()
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(project / "app" / "main.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=project, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "FER_RUNS_DIR": str(runs_dir), "TF_CPP_MIN_LOG_LEVEL": "2"},
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
                time.sleep(0.2)
            yield process, url, started
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def webrtc_frame(page: Any) -> Any:
    return next((frame for frame in page.frames if "webrtc_streamer" in frame.url), None)


def start_live(page: Any, url: str) -> float:
    """Open the Live page and start the camera; returns the seconds until START could be pressed (the
    page rendered, the model loaded)."""
    opened = time.perf_counter()
    page.goto(f"{url}/live", timeout=180_000)
    page.get_by_role("heading", name="Live").first.wait_for(timeout=180_000)
    button = page.frame_locator('iframe[title*="webrtc_streamer"]').get_by_role(
        "button", name=re.compile("start", re.I)
    )
    button.wait_for(timeout=180_000)
    ready_s = time.perf_counter() - opened
    button.click(timeout=120_000)
    page.get_by_text(COUNT_PATTERN).first.wait_for(timeout=120_000)
    return ready_s


def sample(page: Any) -> tuple[float, int, int, float | None]:
    """(time, video frames shown so far, frames analysed so far, the panel's ms per frame)."""
    frame = webrtc_frame(page)
    shown = frame.evaluate(
        "() => { const v = document.querySelector('video'); return v ? v.getVideoPlaybackQuality().totalVideoFrames : 0 }"
    ) if frame else 0  # fmt: skip
    text = page.get_by_text(COUNT_PATTERN).first.inner_text(timeout=60_000)
    analysed = int(COUNT_PATTERN.search(text).group(1).replace(",", ""))  # type: ignore[union-attr]
    timing = None
    for label in TIMING_LABELS:
        metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
        if metric.count():
            value = re.search(r"([\d.]+)", metric.locator('[data-testid="stMetricValue"]').inner_text())
            timing = float(value.group(1)) if value else None
            break
    return time.monotonic(), int(shown), analysed, timing


def measure(pages: list[Any], seconds: float) -> list[dict[str, float]]:
    first = [sample(page) for page in pages]
    timings: list[list[float]] = [[] for _ in pages]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)
        for index, page in enumerate(pages):
            value = sample(page)[3]
            if value is not None:
                timings[index].append(value)
    results = []
    for index, page in enumerate(pages):
        end = sample(page)
        span = end[0] - first[index][0]
        results.append(
            {
                "returned_fps": (end[1] - first[index][1]) / span,
                "analysed_fps": (end[2] - first[index][2]) / span,
                "ms_per_frame": statistics.median(timings[index]) if timings[index] else float("nan"),
            }
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=PROJECT_ROOT, help="the FER Studio checkout to run")
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 (faces for the camera)")
    parser.add_argument("--seconds", type=float, default=20.0, help="sampling time per case (default 20)")
    parser.add_argument("--warmup", type=float, default=8.0, help="streaming time before sampling (default 8)")
    parser.add_argument("--fps", type=int, default=30, help="the fake camera's frame rate (default 30)")
    parser.add_argument("--tabs", default="1,2", help="the cases, as numbers of tabs at once (default 1,2)")
    args = parser.parse_args()
    chromium = os.environ.get("FER_CHROMIUM") or shutil.which("chromium")
    if chromium is None or args.data is None:
        parser.error("needs Debian's chromium (scripts/install-browser.sh) and FER2013 (--data or FER2013_DIR)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        folder = Path(scratch)
        camera = camera_file(args.data, folder, args.fps)
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-video-capture={camera}"],
        )  # fmt: skip
        (folder / "runs").mkdir()
        with app_server(args.project, folder / "runs", folder / "server.log") as (server, url, started):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            first = context.new_page()
            first.goto(url, timeout=180_000)
            first.get_by_role("heading", name="FER Studio").first.wait_for(timeout=180_000)
            first_page_s = time.perf_counter() - started
            rows = []
            live_ready_s = float("nan")
            for tabs in (int(number) for number in args.tabs.split(",")):
                pages = []
                for _ in range(tabs):
                    tab_context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    tab_context.grant_permissions(["camera"], origin=url)
                    page = tab_context.new_page()
                    ready_s = start_live(page, url)
                    live_ready_s = ready_s if tabs == 1 else live_ready_s
                    pages.append(page)
                time.sleep(args.warmup)
                for index, result in enumerate(measure(pages, args.seconds), start=1):
                    rows.append((f"{tabs} tab{'s' if tabs > 1 else ''}, tab {index}", result))
                for page in pages:
                    page.context.close()
            memory = resident_mb(server.pid)
        browser.close()
    print(f"project: {args.project}  (commit {git_commit(args.project)}), camera {WIDTH}x{HEIGHT} at {args.fps} fps")
    print(
        f"first rendered page {first_page_s:.1f} s after the server started; the Live page ready (model loaded) "
        f"{live_ready_s:.1f} s after opening it; server memory after Live {memory:.0f} MB\n"
    )
    print("| case | returned fps | analysed fps | ms per frame (median) |")
    print("|---|---:|---:|---:|")
    for case, result in rows:
        print(
            f"| {case} | {result['returned_fps']:.1f} | {result['analysed_fps']:.1f} | {result['ms_per_frame']:.0f} |"
        )
    return 0


def git_commit(project: Path) -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.check_output(["git", "-C", str(project), "rev-parse", "--short", "HEAD"], text=True).strip()
    return "?"


if __name__ == "__main__":
    sys.exit(main())
