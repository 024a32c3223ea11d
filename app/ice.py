"""STUN/TURN servers for the Live page's WebRTC connection, for deployments.

On localhost no server is needed. A deployed app sets ``FER_ICE_SERVERS`` (a JSON list) or
``ice_servers`` in ``.streamlit/secrets.toml``. ``FER_ICE_TRANSPORT_POLICY=relay`` (or
``ice_transport_policy = "relay"`` in secrets.toml) makes the browser send everything through the TURN
relay: for networks where only the relay is reachable, and to test a relay.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

ICE_SERVERS_ENV = "FER_ICE_SERVERS"
ICE_SERVERS_SECRET = "ice_servers"
ICE_POLICY_ENV = "FER_ICE_TRANSPORT_POLICY"
ICE_POLICY_SECRET = "ice_transport_policy"
ICE_POLICIES = ("all", "relay")  # RTCConfiguration.iceTransportPolicy


def ice_servers(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """STUN/TURN servers for the WebRTC connection: ``$FER_ICE_SERVERS`` (a JSON list), else
    ``ice_servers`` in ``.streamlit/secrets.toml``, else none, which is all localhost needs.

        FER_ICE_SERVERS='[{"urls": ["stun:stun.example.org:3478"]},
                          {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]'

    Raises ``ValueError`` naming the problem when the setting is not a list of ``{"urls": ...}``.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(ICE_SERVERS_ENV, "").strip()
    if raw:
        try:
            servers = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"{ICE_SERVERS_ENV} is not valid JSON ({error.msg} at character {error.pos})") from None
        return _checked_servers(servers, ICE_SERVERS_ENV)
    if secrets is not None:
        try:
            configured = secrets.get(ICE_SERVERS_SECRET)
        except Exception:  # st.secrets raises when there is no secrets file; that means "not configured"
            configured = None
        if configured:
            return _checked_servers(_plain(configured), f"{ICE_SERVERS_SECRET} in secrets.toml")
    return []


def rtc_configuration(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The browser's RTCConfiguration: the ICE servers and, when set, the ICE transport policy.

    Raises ``ValueError`` naming the problem for a policy other than ``all`` or ``relay``, or ``relay``
    without a ``turn:``/``turns:`` server to relay through."""
    servers = ice_servers(environ, secrets)
    configuration: dict[str, Any] = {"iceServers": servers}
    policy = ice_transport_policy(environ, secrets)
    if policy == "relay":
        urls = [
            url
            for server in servers
            for url in ([server["urls"]] if isinstance(server["urls"], str) else server["urls"])
        ]
        if not any(url.startswith(("turn:", "turns:")) for url in urls):
            raise ValueError(f"the ICE transport policy relay needs a turn: server in {ICE_SERVERS_ENV}")
    if policy is not None:
        configuration["iceTransportPolicy"] = policy
    return configuration


def ice_transport_policy(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> str | None:
    """``$FER_ICE_TRANSPORT_POLICY``, else ``ice_transport_policy`` in secrets.toml: ``all``, ``relay`` or None."""
    environ = os.environ if environ is None else environ
    policy: Any = environ.get(ICE_POLICY_ENV, "").strip()
    source = ICE_POLICY_ENV
    if not policy and secrets is not None:
        try:
            policy = secrets.get(ICE_POLICY_SECRET)
        except Exception:  # no secrets file: not configured
            policy = None
        source = f"{ICE_POLICY_SECRET} in secrets.toml"
    if not policy:
        return None
    if policy not in ICE_POLICIES:
        raise ValueError(f"{source} must be one of {', '.join(ICE_POLICIES)}, got {policy!r}")
    return str(policy)


def _plain(value: Any) -> Any:
    """st.secrets hands out its own mapping type: turn it into plain lists and dicts."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _checked_servers(servers: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(servers, list):
        raise ValueError(f"{source} must be a list of servers, got {type(servers).__name__}")
    for index, server in enumerate(servers):
        if not isinstance(server, dict) or "urls" not in server:
            raise ValueError(f'{source}: server {index + 1} must be an object with "urls"')
        urls = server["urls"]
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not url_list or not all(isinstance(url, str) for url in url_list):
            raise ValueError(f'{source}: server {index + 1} "urls" must be a URL or a list of URLs')
        bad = [url for url in url_list if not url.startswith(("stun:", "turn:", "turns:"))]
        if bad:
            raise ValueError(f"{source}: {bad[0]!r} is not a stun:, turn: or turns: URL")
    return servers
