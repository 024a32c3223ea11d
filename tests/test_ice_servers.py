"""STUN/TURN servers for deployments of the Live page: from the environment or secrets.toml, checked."""

from __future__ import annotations

import pytest

from app.ice import ice_servers, rtc_configuration


def test_no_ice_servers_by_default() -> None:
    assert ice_servers(environ={}, secrets={}) == []
    assert rtc_configuration(environ={}, secrets=None) == {"iceServers": []}


def test_ice_servers_from_the_environment() -> None:
    value = (
        '[{"urls": ["stun:stun.example.org:3478"]}, {"urls": "turn:t.example.org", "username": "u", "credential": "p"}]'
    )
    servers = ice_servers(environ={"FER_ICE_SERVERS": value}, secrets={"ice_servers": [{"urls": "stun:other:1"}]})
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    assert servers[1]["username"] == "u"


def test_ice_servers_from_secrets() -> None:
    secrets = {"ice_servers": [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]}
    assert ice_servers(environ={}, secrets=secrets) == secrets["ice_servers"]


def test_missing_secrets_file_means_no_ice_servers() -> None:
    class NoSecretsFile(dict):  # st.secrets raises like this when there is no secrets.toml
        def get(self, key: str, default: object = None) -> object:
            raise FileNotFoundError("no secrets.toml")

    assert ice_servers(environ={}, secrets=NoSecretsFile()) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"urls": "stun:x"}', "must be a list"),
        ('[{"url": "stun:x"}]', 'must be an object with "urls"'),
        ('[{"urls": []}]', "must be a URL or a list"),
        ('[{"urls": "http://x"}]', "not a stun:, turn: or turns: URL"),
    ],
)
def test_bad_ice_server_settings_name_the_problem(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ice_servers(environ={"FER_ICE_SERVERS": value})


TURN = '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}]'


def test_relay_only_is_passed_to_the_browser_when_asked_for() -> None:
    environ = {"FER_ICE_SERVERS": TURN, "FER_ICE_TRANSPORT_POLICY": "relay"}
    assert rtc_configuration(environ=environ)["iceTransportPolicy"] == "relay"
    secrets = {"ice_servers": [{"urls": ["turn:t:3478"]}], "ice_transport_policy": "relay"}
    assert rtc_configuration(environ={}, secrets=secrets)["iceTransportPolicy"] == "relay"
    assert "iceTransportPolicy" not in rtc_configuration(environ={"FER_ICE_SERVERS": TURN})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FER_ICE_SERVERS": TURN, "FER_ICE_TRANSPORT_POLICY": "relays"}, "must be one of all, relay"),
        ({"FER_ICE_TRANSPORT_POLICY": "relay"}, "relay needs a turn: server"),
        ({"FER_ICE_SERVERS": '[{"urls": "stun:s:1"}]', "FER_ICE_TRANSPORT_POLICY": "relay"}, "needs a turn:"),
    ],
)
def test_a_bad_transport_policy_names_the_problem(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rtc_configuration(environ=environ)
