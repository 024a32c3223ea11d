"""fer_core: the facial-expression-recognition library behind FER Studio.

Pure numpy/OpenCV/TensorFlow: no Streamlit, no plotly. Importing it does no work; TensorFlow is
imported only when a model is built or loaded.

    import fer_core
    predictor = fer_core.load_predictor()            # promoted model, else the shipped default
    faces = predictor.predict(fer_core.read_image("group.jpg"))
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
    "decode_image",
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
    "decode_image": "fer_core.images",
    "read_image": "fer_core.images",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
