"""Roles (app/access.py): who is admin in each setup, what each role sees on every page, and the refusal on
the server when a visitor forces an admin action through the session state or calls it directly."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import streamlit_webrtc
from conftest import PROJECT_ROOT
from fakes import write_served_model
from streamlit.testing.v1 import AppTest

from app.access import ADMIN, VISITOR, decide_role, sign_in_configured
from app.state import DEMO_LABEL, LOCATION_KEY, OTHER_LABEL, SOURCE_KEY
from fer_core import run_layout, settings
from training import runs
from training.config import TrainConfig
from training.trainer import create_run

MAIN_SCRIPT = str(PROJECT_ROOT / "app" / "main.py")
PAGES = [
    "views/home.py",
    "views/dataset.py",
    "views/training.py",
    "views/live.py",
    "views/photos.py",
    "views/video.py",
    "views/batch.py",
]
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s", "client_id": "c"}
ADMIN_EMAIL = "ada@example.org"


def _clear_settings_cache() -> None:
    clear = getattr(settings._read_settings_file, "cache_clear", None)  # a plain function once re-read on change
    if clear is not None:
        clear()


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty fer_studio.toml of the test's own (write it, then open the page)."""
    path = tmp_path / "fer_studio.toml"
    path.write_text("")
    monkeypatch.setenv(settings.SETTINGS_FILE_ENV, str(path))
    monkeypatch.delenv(settings.PUBLIC_ENV, raising=False)
    _clear_settings_cache()
    yield path
    _clear_settings_cache()


def write_settings(path: Path, text: str) -> None:
    path.write_text(text)
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)  # a new version, even within one clock tick
    _clear_settings_cache()


# --- the decision, on plain values


def role(**changes: object) -> str:
    values: dict[str, object] = {
        "sign_in": False,
        "logged_in": False,
        "email": None,
        "admins": frozenset({ADMIN_EMAIL}),
        "public": False,
        "local": True,
    }
    values.update(changes)
    return decide_role(**values).role  # type: ignore[arg-type]


def test_without_sign_in_localhost_is_admin_and_public_mode_or_another_machine_is_visitor() -> None:
    assert role() == ADMIN
    assert role(public=True) == VISITOR
    assert role(local=False) == VISITOR


def test_with_sign_in_only_a_listed_signed_in_email_is_admin_wherever_the_browser_is() -> None:
    assert role(sign_in=True) == VISITOR  # localhost does not count once sign-in is configured
    assert role(sign_in=True, logged_in=True, email="someone@example.org") == VISITOR
    assert role(sign_in=True, logged_in=True, email="Ada@Example.org", local=False, public=True) == ADMIN
    assert role(sign_in=True, logged_in=False, email=ADMIN_EMAIL) == VISITOR  # a stale identity, signed out


def test_sign_in_is_configured_by_a_non_empty_auth_section() -> None:
    assert sign_in_configured({"auth": AUTH})
    assert not sign_in_configured({"auth": {}})
    assert not sign_in_configured({"ice_servers": []})


def test_public_admins_and_stream_cap_are_read_and_checked(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not settings.public_mode() and settings.admin_emails() == frozenset()
    assert settings.max_live_streams() == settings.DEFAULT_MAX_LIVE_STREAMS
    write_settings(settings_file, 'public = true\nadmins = ["Ada@Example.org"]\nmax_live_streams = 5\n')
    assert settings.public_mode() and settings.admin_emails() == {ADMIN_EMAIL} and settings.max_live_streams() == 5
    monkeypatch.setenv(settings.PUBLIC_ENV, "0")  # the environment wins
    assert not settings.public_mode()
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    write_settings(settings_file, 'public = "yes"\nadmins = "ada@example.org"\nmax_live_streams = 0\n')
    assert settings.public_mode()
    assert settings.max_live_streams() == settings.DEFAULT_MAX_LIVE_STREAMS
    problems = "\n".join(settings.settings_problems())
    for key in ("public", "admins", "max_live_streams"):
        assert f"{key} = " in problems and "ignored" in problems


# --- every page, for each role


def open_page(page: str, *, user: dict[str, object] | None = None, secrets: dict[str, object] | None = None) -> AppTest:
    at = AppTest.from_file(MAIN_SCRIPT, default_timeout=60)
    if user is not None:
        at.user = user
    if secrets is not None:
        at.secrets = secrets
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def not_playing_streamer(key: str, **kwargs: Any) -> SimpleNamespace:
    """Stands in for ``webrtc_streamer`` (which needs a browser): a stream not started."""
    return SimpleNamespace(state=SimpleNamespace(playing=False, signalling=False))


def button_keys(at: AppTest) -> set[str]:
    return {str(button.key) for button in at.button if button.key}


def finished_run(runs_dir: Path) -> runs.Run:
    run_dir = create_run(TrainConfig(data="demo", arch="tiny", epochs=1, runs_dir=str(runs_dir)))
    runs.update_status(run_dir, state="finished", started_at=1.0, finished_at=2.0, elapsed_s=1.0)
    write_served_model(run_dir / run_layout.EXPORTED_MODEL, b"float32 export")
    return runs.Run(run_dir)


ROLES = {  # name: (FER_PUBLIC, AppTest user, secrets, is admin)
    "local admin": ("", None, None, True),
    "public visitor": ("1", None, None, False),
    "signed-in admin": ("1", {"is_logged_in": True, "email": ADMIN_EMAIL}, {"auth": AUTH}, True),
    "signed-in non-admin": ("", {"is_logged_in": True, "email": "bob@example.org"}, {"auth": AUTH}, False),
    "signed-out": ("", {"is_logged_in": False}, {"auth": AUTH}, False),
}


@pytest.mark.parametrize("name", list(ROLES))
@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_for_every_role_and_shows_admin_controls_only_to_admins(
    name: str, page: str, settings_file: Path, isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    public, user, secrets, admin = ROLES[name]
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", not_playing_streamer)  # the name the Live page imports
    write_settings(settings_file, f'admins = ["{ADMIN_EMAIL}"]\n')
    monkeypatch.setenv(settings.PUBLIC_ENV, public or "0")
    run = finished_run(isolated_runs_dir)
    at = open_page(page, user=user, secrets=secrets)
    assert not at.error, [error.value for error in at.error]
    if page in ("views/dataset.py", "views/training.py"):
        options = at.sidebar.radio(key="data_source_choice").options
        assert (OTHER_LABEL in options) == admin
        assert DEMO_LABEL in options
    if page == "views/training.py":
        admin_keys = {"train_start", f"promote-{run.name}", f"delete-{run.name}"}
        assert (admin_keys <= button_keys(at)) == admin
        assert not (admin_keys & button_keys(at)) or admin
        assert any(run.name in str(box.options) for box in at.selectbox if box.label == "Open run")  # browsable
    if page == "views/batch.py":  # batch jobs take the server's CPU for hours: admins only
        assert ("batch_start" in button_keys(at)) == admin
        assert any("Only an admin can" in caption.value for caption in at.caption) != admin
    if secrets is not None:
        sign = "account_sign_out" if user and user.get("is_logged_in") else "account_sign_in"
        assert sign in button_keys(at)


def test_a_visitor_forcing_delete_and_promote_confirmations_through_the_session_state_gets_nothing(
    settings_file: Path, isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    run = finished_run(isolated_runs_dir)
    at = AppTest.from_file(MAIN_SCRIPT, default_timeout=60)
    at.run()
    at.switch_page("views/training.py")
    at.session_state[f"confirm-delete-{run.name}"] = True
    at.session_state[f"confirm-promote-{run.name}"] = True
    at.session_state["training_viewed_run"] = run.name
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    keys = button_keys(at)
    assert f"delete-yes-{run.name}" not in keys and f"promote-anyway-{run.name}" not in keys
    assert run.path.is_dir() and not (isolated_runs_dir / "promoted.keras").exists()


def test_a_visitor_forcing_a_typed_location_through_the_session_state_gets_a_configured_set(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))  # even a location an admin could type
    at = AppTest.from_file(MAIN_SCRIPT, default_timeout=60)
    at.run()
    at.switch_page("views/dataset.py")
    at.session_state[SOURCE_KEY] = str(tmp_path)
    at.session_state["data_source_choice"] = OTHER_LABEL
    at.session_state[LOCATION_KEY] = str(tmp_path)
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    assert not at.sidebar.text_input  # never offered
    assert at.session_state[SOURCE_KEY] in ("demo", str(settings.fer2013_location()))  # the session's default
    assert OTHER_LABEL not in at.sidebar.radio(key="data_source_choice").options


def run_as_visitor(script: str, runs_dir: Path) -> AppTest:
    """``script`` (a page function's body) run in a public instance, where nobody is admin."""
    at = AppTest.from_string(script, default_timeout=60)
    at.run()
    assert not at.exception, [exception.value for exception in at.exception]
    return at


def test_admin_actions_called_directly_by_a_visitor_are_refused_on_the_server(
    settings_file: Path, isolated_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(settings.PUBLIC_ENV, "1")
    run = finished_run(isolated_runs_dir)
    before = sorted(path.name for path in isolated_runs_dir.iterdir())
    promote = run_as_visitor(
        "from training import runs\n"
        "from app.views.training_page.actions import promote_ui\n"
        "from pathlib import Path\n"
        f"promote_ui(runs.Run(Path({str(run.path)!r})).snapshot())\n",
        isolated_runs_dir,
    )
    assert any("Only an admin may change the model" in error.value for error in promote.error)
    start = run_as_visitor(
        "from app.views.training_page.form import start_run\n"
        f"start_run({{'data': 'demo', 'arch': 'tiny', 'epochs': 1, 'runs_dir': {str(isolated_runs_dir)!r}}})\n",
        isolated_runs_dir,
    )
    assert any("Only an admin may start a training" in error.value for error in start.error)
    assert sorted(path.name for path in isolated_runs_dir.iterdir()) == before  # nothing promoted or started


def test_signing_in_when_the_provider_cannot_be_used_is_a_clear_error_not_a_traceback(settings_file: Path) -> None:
    # AppTest's secrets do not reach the section st.login reads: exactly an incomplete sign-in setup.
    at = open_page("views/photos.py", user={"is_logged_in": False}, secrets={"auth": AUTH})
    at.button(key="account_sign_in").click().run()
    assert not at.exception, [exception.value for exception in at.exception]
    assert any("Sign-in is not available" in error.value for error in at.error)


def test_a_visitor_is_known_by_the_signed_in_email_else_by_the_browser_session() -> None:
    script = "import streamlit as st\nfrom app.access import visitor_key\nst.write(visitor_key())\n"
    signed_in = AppTest.from_string(script)
    signed_in.user = {"is_logged_in": True, "email": "Ada@Example.org"}
    signed_in.run()
    assert signed_in.markdown[0].value == "user:ada@example.org"
    anonymous = AppTest.from_string(script)  # AppTest has no browser cookie: the session stands in
    anonymous.user = {"is_logged_in": False}
    anonymous.run()
    assert anonymous.markdown[0].value.startswith("session:")
