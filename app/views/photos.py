"""Photos: upload photos (or take one with the camera); every face is found, boxed, labelled and
shown with its seven probabilities and the 48x48 crop the model saw. Results download as an
annotated PNG per photo and one CSV or JSON row per face.

Reading a photo never stops the page: a file that cannot be used gets an ``st.error`` naming it and
the problem, and the other photos of the same upload are still shown.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import streamlit as st

from app.charts.predictions import probability_chart
from app.models import current_model_ui, predictor_or_stop
from app.state import confidence_threshold_ui
from fer_core.draw import draw_predictions, face_caption, scale_predictions
from fer_core.errors import InvalidImageError
from fer_core.images import MAX_BYTES, MAX_PIXELS, decode_image, encode_png, rescale
from fer_core.inference import FacePrediction, Predictor
from fer_core.labels import EMOTIONS

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
# What the browser gets (the PNG download keeps the full resolution): no wider than st.image's widest
# (1,460 px), so Streamlit never resizes it again; its resize floors a thin image's height to 0 and fails.
DISPLAY_MAX_SIDE = 1400
DISPLAY_MIN_SIDE = 360  # tiny images (face crops) are enlarged so their label can be read
SMALL_IMAGE_SIDE = 160  # at most this big, an image with no face found is probably a face crop
CROP_ZOOM = 3  # the 48x48 crops are shown at 144x144, pixels kept sharp
FACE_COLUMNS = 2
EXPANDED_FACE_LIMIT = 6  # photos with more faces show their face cards folded
MEMO_KEY = "photos_results"
CAMERA_NAME = "camera photo.jpg"


class UploadedPhoto(Protocol):
    """What the page needs from ``st.file_uploader``/``st.camera_input`` results (and test doubles)."""

    name: str

    def getvalue(self) -> bytes: ...


class PhotoResult(NamedTuple):
    name: str
    digest: str  # sha1 of the file's bytes
    error: str | None  # why the file could not be used, else None
    size: tuple[int, int] = (0, 0)  # width, height of the decoded (upright) image
    display_bgr: npt.NDArray[np.uint8] | None = None  # at most DISPLAY_MAX_SIDE on its longer side
    display_scale: float = 1.0  # display pixels per image pixel
    faces: tuple[FacePrediction, ...] = ()  # left to right, boxes in image pixels
    whole_image: FacePrediction | None = None  # the whole image classified as one face, when no face was found


class PhotoSettings(NamedTuple):
    threshold: float
    min_face_size: int
    include_profiles: bool
    tta: bool


def settings_ui() -> PhotoSettings:
    with st.sidebar:
        st.subheader("Photos")
        threshold = confidence_threshold_ui("photos_threshold")
        min_face_size = st.slider(
            "Smallest face (pixels)",
            min_value=20,
            max_value=300,
            value=40,
            step=10,
            key="photos_min_face",
            help="Faces smaller than this, in the photo's own pixels, are not looked for. Raise it to skip "
            "tiny false detections in the background; lower it for group photos.",
        )
        include_profiles = st.toggle(
            "Also find faces in profile",
            value=False,
            key="photos_profiles",
            help="Adds a profile-face detector (both directions): finds turned heads, at the cost of speed "
            "and a few more false detections.",
        )
        tta = st.toggle(
            "Average with the mirrored face",
            value=False,
            key="photos_tta",
            help="Test-time augmentation: classify each face and its mirror image and average the two.",
        )
    return PhotoSettings(threshold, min_face_size, include_profiles, tta)


def photos_ui() -> list[UploadedPhoto]:
    source = st.segmented_control(
        "Photos from", ["Upload", "Camera"], default="Upload", required=True, key="photos_source"
    )
    if source == "Camera":
        photo = st.camera_input("Take a photo", key="photos_camera")
        return [photo] if photo is not None else []
    limit_mb = min(MAX_BYTES // 2**20, int(st.get_option("server.maxUploadSize")))
    uploaded = st.file_uploader(
        "Photos",
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        key="photos_upload",
        help=f"JPEG, PNG, WebP or BMP, up to {limit_mb} MB and {MAX_PIXELS / 1e6:.0f} megapixels each. "
        "Several at once are fine.",
    )
    return list(uploaded or [])


def analyse_photo(name: str, data: bytes, predictor: Predictor, *, tta: bool = False) -> PhotoResult:
    """Decode, find and classify every face; an unusable file gives a result with ``error`` set."""
    digest = hashlib.sha1(data).hexdigest()
    try:
        bgr_image = decode_image(data)
    except InvalidImageError as error:
        return PhotoResult(name, digest, str(error))
    height, width = bgr_image.shape[:2]
    try:
        faces = tuple(predictor.predict(bgr_image, tta=tta))
        whole_image = None if faces else predictor.predict_whole_image(bgr_image, tta=tta)
        display_bgr, display_scale = _display_copy(bgr_image)
    except cv2.error as error:  # a shape OpenCV cannot work with: this photo fails, the others go on
        return PhotoResult(name, digest, f"the image could not be processed ({width}x{height}): {error.err}")
    return PhotoResult(name, digest, None, (width, height), display_bgr, display_scale, faces, whole_image)


def process_uploads(
    files: Sequence[UploadedPhoto],
    predictor: Predictor,
    *,
    tta: bool = False,
    memo: dict[tuple[Any, ...], PhotoResult] | None = None,
) -> list[PhotoResult]:
    """One result per file, in upload order. Results are remembered in ``memo`` (by default, for the
    session), keyed by the file's bytes and the settings, so moving the threshold slider does not run
    detection again; results of files no longer uploaded are dropped."""
    if memo is None:
        memo = st.session_state.setdefault(MEMO_KEY, {})
    settings_key = (id(predictor.classifier), id(predictor.detector), tta)  # both cached: stable ids
    results, used = [], set()
    for file in files:
        data = file.getvalue()
        key = (hashlib.sha1(data).hexdigest(), *settings_key)
        if key not in memo:
            memo[key] = analyse_photo(file.name, data, predictor, tta=tta)
        results.append(memo[key]._replace(name=file.name))
        used.add(key)
    for stale in set(memo) - used:
        del memo[stale]
    return results


def faces_used(result: PhotoResult, whole_image: bool) -> list[FacePrediction]:
    if result.faces:
        return list(result.faces)
    return [result.whole_image] if whole_image and result.whole_image is not None else []


def face_rows(result: PhotoResult, faces: Sequence[FacePrediction], threshold: float) -> list[dict[str, Any]]:
    """One record per face: file, face number, box, label, emotion, confidence and all probabilities."""
    return [
        {
            "file": result.name,
            "face": number,
            "box": [int(value) for value in face.box],
            "label": face.label(threshold),
            "emotion": face.emotion,
            "confidence": round(face.confidence, 6),
            "whole_image": not result.faces,
            "scores": {emotion: round(score, 6) for emotion, score in face.scores_by_emotion().items()},
        }
        for number, face in enumerate(faces, start=1)
    ]


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    columns = ["file", "face", "x", "y", "width", "height", "label", "emotion", "confidence", "whole_image"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*columns, *EMOTIONS])
    writer.writeheader()
    for row in rows:
        x, y, width, height = row["box"]
        flat = {key: row[key] for key in columns if key in row}
        writer.writerow({**flat, "x": x, "y": y, "width": width, "height": height, **row["scores"]})
    return buffer.getvalue()


def rows_to_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(rows), indent=2)


def annotated_png(data: bytes, faces: Sequence[FacePrediction], threshold: float) -> Callable[[], bytes]:
    """The full-resolution annotated PNG, made only when its download button is clicked (in a thread of
    Streamlit's, so it decodes the upload again rather than keep every full-size image in memory)."""

    def build() -> bytes:
        bgr_image, scale = decode_image(data), 1.0
        if max(bgr_image.shape[:2]) < DISPLAY_MIN_SIDE:  # a face crop: enlarged, as on the page, so labels fit
            bgr_image, scale = _display_copy(bgr_image)
        return encode_png(draw_predictions(bgr_image, scale_predictions(faces, scale), threshold))

    return build


def render_photo(position: int, result: PhotoResult, data: bytes, settings: PhotoSettings) -> list[dict[str, Any]]:
    """One photo's section; returns its face records for the downloads."""
    key = f"{position}-{result.digest[:12]}"
    if result.error is not None or result.display_bgr is None:
        st.error(f"Could not use **{result.name}**: {result.error}.", icon=":material/broken_image:")
        return []
    with st.container(border=True):
        width, height = result.size
        st.markdown(f"#### {result.name}")
        whole_image = _no_face_ui(result, key) if not result.faces else False
        faces = faces_used(result, whole_image)
        if result.faces:
            st.caption(f"{width} x {height} pixels · {len(faces)} face{'s' if len(faces) != 1 else ''}")
        image_column, table_column = st.columns([3, 2], gap="medium")
        with image_column:
            st.image(_annotated_display(result, faces, settings.threshold), channels="BGR")
            st.download_button(
                "Annotated image (PNG)",
                data=annotated_png(data, faces, settings.threshold),
                file_name=f"{_stem(result.name)}-annotated.png",
                mime="image/png",
                icon=":material/download:",
                on_click="ignore",
                key=f"png-{key}",
            )
        if faces:
            with table_column:
                st.dataframe(
                    _face_table(faces, settings.threshold),
                    hide_index=True,
                    width="stretch",
                    column_config={
                        "confidence": st.column_config.ProgressColumn(
                            "confidence", format="percent", min_value=0.0, max_value=1.0
                        )
                    },
                )
            with st.expander(
                "Each face: the 48x48 crop the model saw and its probabilities",
                expanded=len(faces) <= EXPANDED_FACE_LIMIT,
            ):
                _face_cards(faces, settings.threshold, key)
    return face_rows(result, faces, settings.threshold)


def _no_face_ui(result: PhotoResult, key: str) -> bool:
    width, height = result.size
    small = max(width, height) <= SMALL_IMAGE_SIDE
    hint = (
        "It is small, so it may already be a face crop."
        if small
        else "Try a smaller *Smallest face* or *Also find faces in profile* in the sidebar."
    )
    st.warning(f"No face found in **{result.name}** ({width} x {height} pixels). {hint}")
    return st.toggle(
        "Classify the whole image as one face",
        value=small,
        key=f"whole-{key}",
        help="For images that already are a face crop, such as FER2013's 48x48 faces.",
    )


def _face_table(faces: Sequence[FacePrediction], threshold: float) -> list[dict[str, Any]]:
    return [
        {"face": f"#{number}", "label": face.label(threshold), "confidence": face.confidence}
        for number, face in enumerate(faces, start=1)
    ]


def _face_cards(faces: Sequence[FacePrediction], threshold: float, key: str) -> None:
    for start in range(0, len(faces), FACE_COLUMNS):
        columns = st.columns(FACE_COLUMNS)
        for column, number in zip(columns, range(start, min(start + FACE_COLUMNS, len(faces))), strict=False):
            face = faces[number]
            with column.container(border=True):
                crop_column, chart_column = st.columns([1, 2], vertical_alignment="center")
                crop_column.image(_zoomed_crop(face.gray_face), caption=face_caption(face, threshold, number + 1))
                chart_column.plotly_chart(
                    probability_chart(face.scores_by_emotion(), threshold=threshold, height=220),
                    key=f"chart-{key}-{number}",
                    config={"displayModeBar": False},
                )


def _display_copy(bgr_image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], float]:
    longer = max(bgr_image.shape[:2])
    if longer > DISPLAY_MAX_SIDE:
        scale = DISPLAY_MAX_SIDE / longer
        return rescale(bgr_image, scale), scale
    if longer < DISPLAY_MIN_SIDE:
        factor = int(np.ceil(DISPLAY_MIN_SIDE / longer))
        return cv2.resize(bgr_image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST), float(factor)
    return bgr_image, 1.0


def _annotated_display(result: PhotoResult, faces: Sequence[FacePrediction], threshold: float) -> npt.NDArray[np.uint8]:
    if result.display_bgr is None:
        raise ValueError(f"{result.name} has no image to show")
    return draw_predictions(result.display_bgr, scale_predictions(faces, result.display_scale), threshold)


def _zoomed_crop(gray_face: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return cv2.resize(gray_face, None, fx=CROP_ZOOM, fy=CROP_ZOOM, interpolation=cv2.INTER_NEAREST)


def _stem(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in stem) or "photo"


def _summary_ui(container: Any, results: Sequence[PhotoResult], rows: Sequence[dict[str, Any]]) -> None:
    failed = sum(result.error is not None for result in results)
    with container:
        first, second, third, downloads = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
        first.metric("Photos", len(results))
        second.metric("Faces", len(rows))
        third.metric("Unreadable", failed)
        with downloads:
            left, right = st.columns(2)
            left.download_button(
                "All faces (CSV)",
                data=rows_to_csv(rows),
                file_name="fer-faces.csv",
                mime="text/csv",
                icon=":material/table:",
                on_click="ignore",
                disabled=not rows,
                width="stretch",
            )
            right.download_button(
                "All faces (JSON)",
                data=rows_to_json(rows),
                file_name="fer-faces.json",
                mime="application/json",
                icon=":material/data_object:",
                on_click="ignore",
                disabled=not rows,
                width="stretch",
            )


def main() -> None:
    st.title("Photos")
    st.write(
        "Upload photos, or take one with your camera: every face is found, boxed and labelled with its "
        "most likely emotion. Below each photo, each face shows the 48x48 grayscale crop the model "
        "actually saw and its seven probabilities."
    )
    settings = settings_ui()
    info = current_model_ui()
    files = photos_ui()
    if not files:
        st.info(
            "Add one or more photos to start. Faces should be roughly frontal and at least "
            f"{settings.min_face_size} pixels wide; group photos work too.",
            icon=":material/add_a_photo:",
        )
        st.stop()
    predictor = predictor_or_stop(
        info, min_face_size=settings.min_face_size, include_profiles=settings.include_profiles
    )
    summary = st.container()
    with st.spinner("Finding and classifying faces..."):
        results = process_uploads(files, predictor, tta=settings.tta)
    rows: list[dict[str, Any]] = []
    for position, (file, result) in enumerate(zip(files, results, strict=True)):
        rows += render_photo(position, result, file.getvalue(), settings)
    _summary_ui(summary, results, rows)


if __name__ == "__main__":  # Streamlit runs pages as __main__; tests import the helpers above
    main()
