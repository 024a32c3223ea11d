"""FER Studio: ``streamlit run app/main.py``.

This file is the only entry point. It makes the project importable from a fresh clone and imports
the WebRTC stack before anything can import TensorFlow (see app/import_order.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import app.import_order  # noqa: E402, F401  (must precede every import that may load TensorFlow)

# isort: split
import streamlit as st  # noqa: E402

from app.access import account_ui  # noqa: E402
from fer_core.settings import settings_problem  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="FER Studio", page_icon=":performing_arts:", layout="wide")

navigation = st.navigation(
    {
        "FER Studio": [st.Page(VIEWS / "home.py", title="Overview", icon=":material/home:", default=True)],
        "Data & models": [
            st.Page(VIEWS / "dataset.py", title="Dataset", icon=":material/photo_library:", url_path="dataset"),
            st.Page(VIEWS / "training.py", title="Training", icon=":material/model_training:", url_path="training"),
        ],
        "Try it": [
            st.Page(VIEWS / "live.py", title="Live", icon=":material/videocam:", url_path="live"),
            st.Page(VIEWS / "photos.py", title="Photos", icon=":material/add_a_photo:", url_path="photos"),
            st.Page(VIEWS / "video.py", title="Video", icon=":material/movie:", url_path="video"),
            st.Page(VIEWS / "batch.py", title="Batch", icon=":material/folder_copy:", url_path="batch"),
        ],
    }
)
if problem := settings_problem():
    st.sidebar.warning(problem, icon=":material/settings_alert:")
account_ui()
navigation.run()
