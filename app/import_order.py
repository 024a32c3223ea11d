"""Import the WebRTC stack before TensorFlow.

In one process, ``import tensorflow`` followed by ``aiortc``/``pylibsrtp`` (pulled in by
streamlit_webrtc) crashes Python with a segmentation fault; the other order is fine. Streamlit
runs every page in one process, so ``app/main.py`` imports this module first, before any page
(and therefore TensorFlow) can load. ``tests/test_import_order.py`` guards it.
"""

import streamlit_webrtc  # noqa: F401

WEBRTC_LOADED_FIRST = True
