"""Import (and configure) the WebRTC stack first, before any page runs.

In one process, ``import tensorflow`` followed by ``aiortc``/``pylibsrtp`` (pulled in by streamlit_webrtc)
crashes Python with a segmentation fault (TF 2.21); the other order is fine. Since the app server no
longer loads TensorFlow at all (models are served by LiteRT, see ``fer_core.serving``), the crash cannot
happen there today, and this ordering is only a guard against its return: ``tests/test_boundaries.py``
fails if any page, a classified photo, a video or a Live frame brings TensorFlow or Keras into the server,
and it also checks that the crash itself is still real.

It also makes aioice keep a working stream alive when the browser answers consent checks late
(see ``app/ice_consent.py``).
"""

import streamlit_webrtc  # noqa: F401

from app import ice_consent

ICE_CONSENT_FIXED = ice_consent.install()
