"""ICE consent (app/ice_consent.py): late answers keep a stream alive, silence still ends it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from aioice import ice, stun
from conftest import PROJECT_ROOT

from app import ice_consent

SCALE = 0.01  # the real timing scaled down 100 times


class FakeProtocol:
    """A browser that answers each consent check after ``answer_after`` seconds (None: never),
    behind a STUN transaction timed like aioice's: it gives up once its retransmissions are spent
    (0.5 s with none, 31.5 s with five, scaled)."""

    def __init__(self, answer_after: float | None) -> None:
        self.answer_after = answer_after
        self.checks: list[dict[str, Any]] = []

    async def request(self, request: Any, addr: Any, integrity_key: bytes, retransmissions: int) -> Any:
        self.checks.append({"retransmissions": retransmissions, "integrity_key": integrity_key})
        gives_up_after = stun.RETRY_RTO * SCALE * (2 ** (retransmissions + 1) - 1)
        if self.answer_after is None or self.answer_after > gives_up_after:
            await asyncio.sleep(gives_up_after)
            raise stun.TransactionTimeout()
        await asyncio.sleep(self.answer_after)
        return "response", addr


class FakePair:
    def __init__(self, protocol: FakeProtocol) -> None:
        self.protocol = protocol
        self.remote_addr = ("192.0.2.9", 5000)


class FakeConnection:
    def __init__(self, answer_after: float | None) -> None:
        self.remote_password = "secret"
        self.protocol = FakeProtocol(answer_after)
        self._nominated = {1: FakePair(self.protocol)}
        self._query_consent_task: Any = object()
        self.closed_at: float | None = None

    def build_request(self, pair: FakePair, nominate: bool) -> str:
        assert nominate is False
        return "binding request"

    async def close(self) -> None:
        self.closed_at = asyncio.get_running_loop().time()


def run_consent(connection: FakeConnection, seconds: float) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(ice_consent.query_consent(connection))
        await asyncio.wait([task], timeout=seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks every ~50 ms, consent valid for 0.3 s."""
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", ice.CONSENT_INTERVAL * SCALE)
    monkeypatch.setattr(ice_consent, "CONSENT_TIMEOUT_S", ice_consent.CONSENT_TIMEOUT_S * SCALE)


def test_answers_later_than_aioice_would_wait_keep_consent(fast_consent: None) -> None:
    # Every answer comes 10 s late (scaled): aioice 0.13's own check gives up after 0.5 s.
    connection = FakeConnection(answer_after=0.1)
    run_consent(connection, seconds=1.5)
    assert connection.closed_at is None
    assert len(connection.protocol.checks) >= 10
    assert all(check["retransmissions"] == ice_consent.CHECK_RETRANSMISSIONS for check in connection.protocol.checks)
    assert connection.protocol.checks[0]["integrity_key"] == b"secret"


def test_no_answer_at_all_ends_the_connection_after_the_consent_timeout(fast_consent: None) -> None:
    connection = FakeConnection(answer_after=None)
    started = None

    async def main() -> None:
        nonlocal started
        started = asyncio.get_running_loop().time()
        await ice_consent.query_consent(connection)  # returns once it has closed the connection

    asyncio.run(asyncio.wait_for(main(), timeout=5))
    assert connection.closed_at is not None and started is not None
    assert 0.3 <= connection.closed_at - started < 1.0
    assert connection._query_consent_task is None


def test_the_app_installs_the_fix_with_the_webrtc_stack() -> None:
    code = (
        "import app.import_order as order, aioice.ice as ice, app.ice_consent as fix;"
        "assert order.ICE_CONSENT_FIXED;"
        "assert ice.Connection.query_consent is fix.query_consent;"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_an_unknown_aioice_version_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ice.Connection.query_consent
    monkeypatch.setattr(ice_consent, "version", lambda name: "9.9.9")
    assert ice_consent.install() is False
    assert ice.Connection.query_consent is original
