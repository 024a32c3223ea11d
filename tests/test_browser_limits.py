"""The cap on concurrent Live streams, end to end: a server allowed one stream (``max_live_streams = 1``),
one browser streaming, and a second browser, one stream over the cap, told the server is busy instead of
getting a camera; once the first stops, the second gets its camera."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    detectable_faces,
    drifting_frames,
    has_non_loopback_address,
    launch_chromium,
    require_chromium,
    running_app,
    write_y4m,
)
from test_browser_live import PAGE_TIMEOUT_MS, start_streaming, wait_for_script

pytestmark = [pytest.mark.browser, pytest.mark.fer2013]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as handle:
        yield handle


@pytest.fixture(scope="module")
def slow_fake_camera(fer2013_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    faces = detectable_faces(fer2013_dir, 3)
    folder = tmp_path_factory.mktemp("camera")
    return write_y4m(folder / "faces.y4m", drifting_frames(faces, frame_count=24, fps=8), fps=8)


def open_live_page(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["camera"], origin=url)
    page = context.new_page()
    page.goto(f"{url}/live", timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("heading", name="Live").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    wait_for_script(page)
    return page


def camera_components(page: Any) -> int:
    return int(page.locator('iframe[title*="webrtc_streamer"]').count())


def test_one_stream_over_the_cap_is_told_the_server_is_busy_until_the_other_stops(
    playwright: Any, slow_fake_camera: Path, tmp_path: Path
) -> None:
    require_chromium()
    if not has_non_loopback_address():
        pytest.skip("WebRTC here needs a non-loopback network address: aioice never offers 127.0.0.1")
    settings_file = tmp_path / "fer_studio.toml"
    settings_file.write_text("max_live_streams = 1\n")
    env = {"FER_RUNS_DIR": str(tmp_path / "runs"), "FER_SETTINGS": str(settings_file)}
    with running_app(tmp_path / "server.log", env=env) as app_server:
        browsers = [launch_chromium(playwright, fake_video=slow_fake_camera) for _ in range(2)]
        try:
            first = open_live_page(browsers[0], app_server.url)
            start_streaming(first)  # the one stream the server allows, annotated
            second = open_live_page(browsers[1], app_server.url)
            busy = second.get_by_text(re.compile("The server is busy"))
            busy.first.wait_for(timeout=60_000)
            assert "Try again in a minute" in busy.first.inner_text()
            assert camera_components(second) == 0  # no camera offered

            stop = first.frame_locator('iframe[title*="webrtc_streamer"]').get_by_role(
                "button", name=re.compile("stop", re.I)
            )
            stop.click(timeout=30_000)
            # The first page reruns on STOP and gives its slot back (or it frees itself 5 s after the last
            # frame); the second visitor presses Try again, as the message says, until the camera is offered.
            deadline = time.monotonic() + 60
            while camera_components(second) == 0:
                assert time.monotonic() < deadline, "the camera was not offered after the other stream stopped"
                try_again = second.get_by_role("button", name=re.compile("Try again"))
                if try_again.count():  # gone already if the page has just offered the camera
                    try_again.first.click(timeout=30_000)
                wait_for_script(second)
                time.sleep(1)
            start_streaming(second)  # now it streams, annotated
        finally:
            for browser in browsers:
                browser.close()
