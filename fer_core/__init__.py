"""fer_core: the facial-expression-recognition library behind FER Studio.

Pure numpy, OpenCV, LiteRT and PyAV: no Streamlit, no plotly, no TensorFlow (the Keras architectures
are the trainer's, in ``training.architectures``). Importing it does no work.

    import fer_core
    predictor = fer_core.load_predictor()            # promoted model, else the shipped default
    faces = predictor.predict(fer_core.read_image("group.jpg"))
    analysis = fer_core.analyze_image(fer_core.read_image("group.jpg"), predictor)   # the Photos page's
    for result in fer_core.analyze_video("clip.mp4", fer_core.load_classifier()):    # the Video page's
        print(result.time_s, [(record.face, record.label) for record in result.records])
    dataset = fer_core.load_dataset("~/data/fer2013")  # Kaggle folders, class folders or fer2013.csv
"""

from __future__ import annotations

from typing import Any

from fer_core.labels import EMOTIONS, NUM_CLASSES

__all__ = [
    "EMOTIONS",
    "NUM_CLASSES",
    "Box",
    "FaceDataset",
    "FacePrediction",
    "Predictor",
    "analyze_image",
    "analyze_video",
    "decode_image",
    "load_classifier",
    "load_dataset",
    "load_predictor",
    "read_image",
    "resolve_dataset",
]

_LAZY = {
    "Box": "fer_core.detect",
    "FaceDataset": "fer_core.data",
    "load_dataset": "fer_core.data",
    "resolve_dataset": "fer_core.datasets",
    "FacePrediction": "fer_core.inference",
    "Predictor": "fer_core.inference",
    "load_predictor": "fer_core.inference",
    "load_classifier": "fer_core.inference",
    "analyze_image": "fer_core.analysis",
    "analyze_video": "fer_core.video",
    "decode_image": "fer_core.images",
    "read_image": "fer_core.images",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
