"""Run in a fresh interpreter by tests/test_boundaries.py: every page of the app through AppTest, a photo
classified on Photos, a clip analysed on Video and frames through a Live session, all in this one process
(as in the app server); then print which of TensorFlow and Keras got imported (none may be).

    python tests/server_pages_probe.py FER2013_DIR
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "tests"))

import app.import_order  # noqa: E402, F401  (as app/main.py does)

# isort: split
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

MAIN = PROJECT_ROOT / "app" / "main.py"


def page(name: str) -> AppTest:
    """A fresh session of the app (its entry point, as a browser gets it), switched to ``views/name``."""
    at = AppTest.from_file(str(MAIN), default_timeout=300)
    at.run()
    at.switch_page(f"views/{name}").run()
    if at.exception:
        raise SystemExit(f"{name}: {at.exception}")
    return at


def main() -> int:
    from fer_core.video import AnnotatedVideoWriter

    fer2013 = Path(sys.argv[1])
    face = cv2.imread(str(next((fer2013 / "test" / "happy").glob("*.jpg"))), cv2.IMREAD_GRAYSCALE)
    canvas = np.full((480, 640, 3), 120, np.uint8)
    canvas[120:320, 200:400] = cv2.cvtColor(
        cv2.resize(face, (200, 200), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR
    )

    for name in ("home.py", "dataset.py", "training.py", "batch.py"):
        page(name)

    photos = page("photos.py")
    _, png = cv2.imencode(".png", canvas)
    photos.file_uploader(key="photos_upload").set_value([("face.png", png.tobytes(), "image/png")]).run()
    if photos.exception or not photos.dataframe:
        raise SystemExit(f"photos.py: no face table ({photos.exception})")

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        with AnnotatedVideoWriter(clip, 640, 480, 10) as writer:
            for _ in range(10):
                writer.write(canvas)
        video = page("video.py")
        video.file_uploader(key="video_upload").set_value([("clip.mp4", clip.read_bytes(), "video/mp4")]).run()
        if video.exception or not video.get("video"):
            raise SystemExit(f"video.py: no annotated video ({video.exception})")

    from types import SimpleNamespace

    import streamlit_webrtc

    # AppTest has no browser to stream from: the page gets a stand-in for the WebRTC component.
    streamlit_webrtc.webrtc_streamer = lambda key, **kwargs: SimpleNamespace(
        state=SimpleNamespace(playing=False, signalling=False)
    )
    live = page("live.py")
    session = live.session_state["live_session"]
    for _ in range(5):
        session.process(canvas.copy())
    if session.result_count() == 0:
        raise SystemExit("live.py: no face recorded in five frames with one")

    loaded = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras", "tf_keras"})
    print(json.dumps({"loaded": loaded}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
