"""Live through a TURN relay, end to end: Debian's coturn on this machine with a user and password, the app
server told to make the browser relay everything (``FER_ICE_TRANSPORT_POLICY=relay``, which the Live page
passes to the browser as ``iceTransportPolicy: "relay"``), headless Chromium with a fake camera, and
annotated frames coming back. With relay only, the browser has no other way to reach the server: video
coming back went through coturn (whose log shows the allocation and the relayed bytes)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    detectable_faces,
    drifting_frames,
    has_non_loopback_address,
    is_annotated,
    launch_chromium,
    require_chromium,
    running_app,
    write_y4m,
)
from test_browser_live import PAGE_TIMEOUT_MS, start_streaming, wait_for_annotated_video

pytestmark = [pytest.mark.browser, pytest.mark.fer2013]

TURN_USER, TURN_PASSWORD = "fer", "relay-secret"


def host_address() -> str:
    from aioice.ice import get_host_addresses

    return str(next(address for address in get_host_addresses(use_ipv4=True, use_ipv6=False)))


def free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


class TurnServer:
    """coturn (``turnserver``) on ``address``, long-term credentials, UDP only, logging to a file."""

    def __init__(self, address: str, log_path: Path) -> None:
        self.address, self.port, self.log_path = address, free_udp_port(address), log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                "turnserver",
                "-n",  # no configuration file
                "--listening-ip",
                address,
                "--relay-ip",
                address,
                "--listening-port",
                str(self.port),
                "--min-port",
                "49300",
                "--max-port",
                "49400",
                "--lt-cred-mech",
                "--user",
                f"{TURN_USER}:{TURN_PASSWORD}",
                "--realm",
                "fer.test",
                "--no-tls",
                "--no-dtls",
                "--no-tcp-relay",
                "--no-cli",
                "--simple-log",
                "--verbose",
                "--log-file",
                "stdout",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_listening(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.process.returncode}:\n{self.log()}")
            if re.search(rf"UDP listener opened on\s*:\s*{re.escape(self.address)}:{self.port}", self.log()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"turnserver did not listen within {timeout_s:.0f} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def ice_servers(self, password: str = TURN_PASSWORD) -> str:
        url = f"turn:{self.address}:{self.port}?transport=udp"
        return json.dumps([{"urls": [url], "username": TURN_USER, "credential": password}])

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnServer]:
    require_chromium()
    if shutil.which("turnserver") is None:
        reason = "coturn not found: apt-get install coturn (Debian's TURN server)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(reason)
        pytest.skip(reason)
    if not has_non_loopback_address():
        pytest.skip("WebRTC here needs a non-loopback network address: aioice never offers 127.0.0.1")
    server = TurnServer(host_address(), tmp_path_factory.mktemp("turn") / "turnserver.log")
    try:
        server.wait_until_listening()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as handle:
        yield handle


@pytest.fixture(scope="module")
def fake_camera(fer2013_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    faces = detectable_faces(fer2013_dir, 3)
    return write_y4m(tmp_path_factory.mktemp("camera") / "faces.y4m", drifting_frames(faces, frame_count=45))


def open_live_page(browser: Any, url: str) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.grant_permissions(["camera"], origin=url)
    page = context.new_page()
    page.goto(f"{url}/live", timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("heading", name="Live").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    return page


def test_live_frames_come_back_annotated_through_the_turn_relay_only(
    turn_server: TurnServer, playwright: Any, fake_camera: Path, tmp_path: Path
) -> None:
    env = {
        "FER_RUNS_DIR": str(tmp_path / "runs"),
        "FER_ICE_SERVERS": turn_server.ice_servers(),
        "FER_ICE_TRANSPORT_POLICY": "relay",
    }
    with running_app(tmp_path / "server.log", env=env) as app_server:
        browser = launch_chromium(playwright, fake_video=fake_camera)
        try:
            page = open_live_page(browser, app_server.url)
            start_streaming(page)  # presses START, waits for the video to come back annotated
            stats = wait_for_annotated_video(page)
            assert is_annotated(stats), f"the relayed video came back without annotations: {stats}"
            configuration = page.evaluate("() => document.body.innerText")
            assert "Ignoring the STUN/TURN setting" not in configuration
        finally:
            browser.close()
    log = turn_server.log()
    assert re.search(r"ALLOCATE processed, success", log), log[-3000:]  # the browser took a relay address
    # and media went through it: coturn writes the session's usage line (relayed packets, rp) when the
    # browser's allocation ends, which can be just after the browser closes, so wait for the line
    usage = re.compile(r"usage: realm=<fer.test>, username=<fer>, rp=[1-9]")
    deadline = time.monotonic() + 30
    while not usage.search(log) and time.monotonic() < deadline:
        time.sleep(0.2)
        log = turn_server.log()
    assert usage.search(log), log[-3000:]


def test_a_wrong_turn_password_gets_a_clear_message_not_an_endless_spinner(
    turn_server: TurnServer, playwright: Any, fake_camera: Path, tmp_path: Path
) -> None:
    env = {
        "FER_RUNS_DIR": str(tmp_path / "runs"),
        "FER_ICE_SERVERS": turn_server.ice_servers(password="not-the-password"),
        "FER_ICE_TRANSPORT_POLICY": "relay",
    }
    with running_app(tmp_path / "server.log", env=env) as app_server:
        browser = launch_chromium(playwright, fake_video=fake_camera)
        try:
            page = open_live_page(browser, app_server.url)
            start = page.frame_locator('iframe[title*="webrtc_streamer"]').get_by_role(
                "button", name=re.compile("start", re.I)
            )
            start.click(timeout=60_000)
            message = page.get_by_text(re.compile("The camera connection has not completed after"))
            message.first.wait_for(timeout=90_000)  # CONNECT_TIMEOUT_S after START, plus page refreshes
            text = message.first.inner_text()
            assert "refused the connection or could not be reached" in text and "password" in text
            assert "frames analysed this session" not in page.evaluate("() => document.body.innerText")
        finally:
            browser.close()
    assert "401" in turn_server.log() or "Unauthorized" in turn_server.log()  # coturn refused the credentials
