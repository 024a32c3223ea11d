"""Import (and configure) the WebRTC stack before TensorFlow.

In one process, ``import tensorflow`` followed by ``aiortc``/``pylibsrtp`` (pulled in by
streamlit_webrtc) crashes Python with a segmentation fault; the other order is fine. Streamlit
runs every page in one process, so ``app/main.py`` imports this module first, before any page
(and therefore TensorFlow) can load. ``tests/test_boundaries.py`` guards it.

It also makes aioice keep a working stream alive when the browser answers consent checks late
(see ``app/ice_consent.py``).
"""

import streamlit_webrtc  # noqa: F401

from app import ice_consent

WEBRTC_LOADED_FIRST = True
ICE_CONSENT_FIXED = ice_consent.install()
