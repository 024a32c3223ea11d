"""End to end in headless Chromium: the real app server, the Batch page, a small folder under the data
roots analysed in the background, and its results table, emotion distribution and clip timeline shown.
Screenshots go to /tmp/batch_e2e*.png (looked at when the page changes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import AppServer, launch_chromium, require_chromium, running_app
from test_batch_page import small_folder

from fer_core import batch_jobs

pytestmark = [pytest.mark.browser, pytest.mark.fer2013]

SCREENSHOTS = Path("/tmp")
PAGE_TIMEOUT_MS = 120_000
JOB_TIMEOUT_MS = 300_000  # a safety limit: the test waits for the page to say the job finished


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_chromium()
    base = tmp_path_factory.mktemp("batch_server")
    folders = {name: base / name for name in ("runs", "jobs", "data")}
    for folder in folders.values():
        folder.mkdir()
    return folders


@pytest.fixture(scope="module")
def server(folders: dict[str, Path]) -> Iterator[AppServer]:
    env = {
        "FER_RUNS_DIR": str(folders["runs"]),
        "FER_JOBS_DIR": str(folders["jobs"]),
        "FER_DATA_ROOTS": str(folders["data"]),
    }
    with running_app(folders["runs"].parent / "server.log", env=env) as app_server:
        yield app_server


def wait_for_script(page: Any, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


def test_the_batch_page_runs_a_small_job_and_shows_its_results(server: AppServer, folders: dict[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    folder = small_folder(folders["data"] / "session")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"{server.url}/batch", timeout=PAGE_TIMEOUT_MS)
            page.get_by_role("heading", name="Batch").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            wait_for_script(page)
            page.get_by_role("textbox", name="Folder", exact=True).fill(str(folder))
            page.get_by_role("textbox", name="Folder", exact=True).press("Enter")
            wait_for_script(page)
            page.get_by_role("spinbutton", name="Workers").fill("1")
            page.get_by_role("spinbutton", name="Workers").press("Enter")
            wait_for_script(page)
            page.get_by_role("button", name="Start").click()
            page.get_by_text("Finished in").first.wait_for(timeout=JOB_TIMEOUT_MS)
            wait_for_script(page)
            (job,) = batch_jobs.list_jobs(folders["jobs"])
            assert job.status() == "finished", job.log_error()

            page.get_by_text("4 files of 4.").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            tables = page.locator('[data-testid="stDataFrame"]')
            assert tables.count() >= 2  # the jobs and the files
            page.screenshot(path=str(SCREENSHOTS / "batch_e2e.png"), full_page=True)

            page.get_by_role("tab", name="Emotions").click()
            page.locator(".js-plotly-plot").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            page.screenshot(path=str(SCREENSHOTS / "batch_e2e_emotions.png"), full_page=True)
            page.get_by_role("tab", name="Video timeline").click()
            page.locator('[data-testid="stTabs"] .js-plotly-plot').nth(1).wait_for(timeout=PAGE_TIMEOUT_MS)
            page.screenshot(path=str(SCREENSHOTS / "batch_e2e_timeline.png"), full_page=True)
            assert server.alive()
        finally:
            browser.close()
