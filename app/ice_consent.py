"""ICE consent freshness as RFC 7675 defines it, for aioice (the ICE layer under aiortc).

aioice 0.13 checks consent every ~5 s with one STUN request that it abandons after 0.5 s, and
closes the connection after six abandoned checks in a row. A browser on a busy laptop (or behind a
slow network) often answers later than that: the Live page's stream, working fine, was cut after
30-90 s ("Consent to send expired" in the server log, the camera component back at START). RFC 7675
says consent expires 30 s after the last *valid response*, however late it came. This module makes
aioice do that: each check retransmits and stays open for its whole retry schedule, any answer
renews consent, and the connection closes once 30 s pass without one.

``install()`` replaces ``aioice.ice.Connection.query_consent`` when aioice is a version this was
written for (its private names are used); on any other version it changes nothing and says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from importlib.metadata import version
from typing import Any

LOGGER = logging.getLogger(__name__)

SUPPORTED_AIOICE = ("0.13.",)
CONSENT_TIMEOUT_S = 30.0  # RFC 7675 section 5.1
CHECK_RETRANSMISSIONS = 5  # sent at 0, 0.5, 1.5, 3.5, 7.5 and 15.5 s; an answer to any of them counts


async def query_consent(connection: Any) -> None:
    """A drop-in ``Connection.query_consent``: check every ~5 s, expire 30 s after the last answer."""
    from aioice import ice

    assert connection.remote_password is not None  # as aioice's own: checks start after connect()
    integrity_key = connection.remote_password.encode("utf8")
    last_answer = time.monotonic()
    checks: set[asyncio.Task[Any]] = set()

    def check_done(task: asyncio.Task[Any]) -> None:
        nonlocal last_answer
        checks.discard(task)
        if not task.cancelled() and task.exception() is None:
            last_answer = time.monotonic()

    try:
        while True:
            await asyncio.sleep(ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
            if time.monotonic() - last_answer > CONSENT_TIMEOUT_S:
                LOGGER.warning("ICE consent expired: no answer to consent checks for %.0f s", CONSENT_TIMEOUT_S)
                connection._query_consent_task = None  # close() must not cancel the task running it
                await connection.close()
                return
            for pair in connection._nominated.values():
                request = connection.build_request(pair, nominate=False)
                check = asyncio.ensure_future(
                    pair.protocol.request(
                        request,
                        pair.remote_addr,
                        integrity_key=integrity_key,
                        retransmissions=CHECK_RETRANSMISSIONS,
                    )
                )
                checks.add(check)
                check.add_done_callback(check_done)
    finally:
        for check in list(checks):
            check.cancel()


def install() -> bool:
    """Use :func:`query_consent` in aioice. Returns whether it is installed (idempotent)."""
    try:
        installed = version("aioice")
        from aioice import ice
    except Exception as error:  # no aioice at all: nothing to fix
        LOGGER.warning("ICE consent fix not installed: %s", error)
        return False
    if not installed.startswith(SUPPORTED_AIOICE):
        LOGGER.warning("ICE consent fix not installed: written for aioice %s, found %s", SUPPORTED_AIOICE, installed)
        return False
    needed = ("query_consent", "build_request", "close")
    if not all(hasattr(ice.Connection, name) for name in needed) or not hasattr(ice, "CONSENT_INTERVAL"):
        LOGGER.warning("ICE consent fix not installed: aioice %s lacks the names it replaces", installed)
        return False
    ice.Connection.query_consent = query_consent  # type: ignore[method-assign,assignment]
    return True
