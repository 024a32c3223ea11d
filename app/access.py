"""Who may change the server: one role per browser session, decided here and nowhere else.

An **admin** may do everything. A **visitor** may use Live, Photos and Video, browse the configured data
sets and the runs, and download their own results; everything that changes what other people get is
hidden from a visitor *and* refused on the server (:func:`require_admin`): starting, stopping and resuming
trainings, deleting runs, promoting a model and going back from it, typing a server location, batch jobs.

How a session gets its role (:func:`decide_role`):

- Sign-in configured (an ``[auth]`` section in ``.streamlit/secrets.toml``, Streamlit's ``st.login``):
  admin when signed in with an e-mail listed in ``admins`` in fer_studio.toml; everyone else a visitor.
- No sign-in, ``public = true`` in fer_studio.toml (or ``FER_PUBLIC=1``): nobody is admin.
- No sign-in, not public: the browser on the server itself (localhost) is admin, as a single user on
  a laptop expects; a browser elsewhere is a visitor. Behind a reverse proxy on the same machine every
  browser looks local: set ``public = true`` or configure sign-in there (README, "Deploying").

Pages use four calls::

    if is_admin(): ...                          # show an admin control (or use admin_button)
    if admin_button("Delete run", key=...): ... # st.button for admins; nothing (False) for visitors
    require_admin("delete runs")                # before the action itself: st.error + st.stop for visitors
    admin_only_note("start trainings")          # where a visitor would have found the control
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import streamlit as st
from streamlit.errors import StreamlitAuthError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from fer_core.settings import admin_emails, public_mode

ADMIN = "admin"
VISITOR = "visitor"
AUTH_SECRET = "auth"  # the secrets.toml section Streamlit's st.login reads
XSRF_COOKIE = "_streamlit_xsrf"


class Access(NamedTuple):
    role: str  # ADMIN or VISITOR
    why: str  # one line for the sidebar: how this session got its role

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def decide_role(
    *,
    sign_in: bool,
    logged_in: bool,
    email: str | None,
    admins: frozenset[str],
    public: bool,
    local: bool,
) -> Access:
    """The role of a session: plain values in, so every case is testable without a browser."""
    if sign_in:
        if not logged_in:
            return Access(VISITOR, "Not signed in: you can try the models and browse; admins sign in to change things.")
        if email and email.lower() in admins:
            return Access(ADMIN, f"Signed in as {email} (admin).")
        return Access(VISITOR, f"Signed in as {email or 'an account without e-mail'}, not an admin.")
    if public:
        return Access(VISITOR, "Public instance: training, deleting and promoting models are turned off here.")
    if local:
        return Access(ADMIN, "Local instance: you can change everything.")
    return Access(
        VISITOR,
        "Opened from another machine without sign-in: training, deleting and promoting models are turned off.",
    )


def secrets_or_none() -> Mapping[str, Any] | None:
    """``st.secrets`` when a secrets file exists (or secrets were given, as AppTest does), else None.

    ``st.secrets`` is read only then: reading it starts threads that poll the secrets files five times
    a second for the life of the server (see also the Live page's ICE servers)."""
    if any(Path(path).expanduser().exists() for path in st.get_option("secrets.files")):
        return st.secrets
    if getattr(st.secrets, "_secrets", None) is not None:  # already loaded (AppTest.secrets, or read before)
        return st.secrets
    return None


def sign_in_configured(secrets: Mapping[str, Any] | None = None) -> bool:
    """Whether Streamlit's sign-in is set up: an ``[auth]`` section in ``.streamlit/secrets.toml``."""
    secrets = secrets_or_none() if secrets is None else secrets
    if secrets is None:
        return False
    try:
        section = secrets.get(AUTH_SECRET)
    except Exception:  # st.secrets raises on a malformed file: that is "not configured" for the role
        return False
    return isinstance(section, Mapping) and bool(section)


def current_access() -> Access:
    """This session's role, from the settings, the sign-in and where the browser is."""
    user = st.user
    return decide_role(
        sign_in=sign_in_configured(),
        logged_in=bool(user.get("is_logged_in")),
        email=str(user.get("email")) if user.get("email") else None,
        admins=admin_emails(),
        public=public_mode(),
        local=not isinstance(st.context.ip_address, str),  # None on localhost (127.0.0.1, ::1); AppTest has none
    )


def current_role() -> str:
    return current_access().role


def is_admin() -> bool:
    return current_access().is_admin


def require_admin(action: str) -> None:
    """The server-side refusal: for a visitor, an ``st.error`` saying who may ``action`` and a stopped run."""
    access = current_access()
    if access.is_admin:
        return
    st.error(f"Only an admin may {action}. {access.why}", icon=":material/lock:")
    st.stop()


def admin_button(label: str, **kwargs: Any) -> bool:
    """``st.button(label, **kwargs)`` for an admin; for a visitor nothing is shown and it is False."""
    return is_admin() and bool(st.button(label, **kwargs))


def admin_only_note(what: str) -> None:
    """Where a visitor would have found admin controls: why they are not there."""
    st.caption(f":material/lock: Only an admin can {what} here. {current_access().why}")


def visitor_key() -> str:
    """Who is asking, for per-visitor limits: the signed-in e-mail, else the browser (Streamlit's XSRF
    cookie, shared by its tabs), else this session."""
    email = st.user.get("email") if st.user.get("is_logged_in") else None
    if email:
        return f"user:{str(email).lower()}"
    cookie = st.context.cookies.get(XSRF_COOKIE)
    if isinstance(cookie, str) and cookie:  # (AppTest has no browser: its cookies are stand-ins)
        return f"browser:{cookie}"
    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id if ctx is not None else 'none'}"


def account_ui() -> None:
    """The sidebar's sign-in and sign-out, and one line saying what this session may do."""
    access = current_access()
    with st.sidebar:
        if sign_in_configured():
            if st.user.get("is_logged_in"):
                st.button("Sign out", key="account_sign_out", icon=":material/logout:", on_click=st.logout)
            else:
                st.button("Sign in", key="account_sign_in", icon=":material/login:", on_click=_sign_in)
        if not access.is_admin or sign_in_configured():
            st.caption(access.why)


def _sign_in() -> None:
    """``st.login`` with the one provider configured: the ``[auth]`` section itself, or its only subsection."""
    secrets = secrets_or_none()
    section = secrets.get(AUTH_SECRET, {}) if secrets is not None else {}
    providers = [name for name, value in section.items() if isinstance(value, Mapping)]
    try:
        st.login(providers[0] if "client_id" not in section and len(providers) == 1 else None)
    except StreamlitAuthError as error:  # an incomplete [auth] section, or Authlib missing
        st.error(f"Sign-in is not available: {error}", icon=":material/lock:")
