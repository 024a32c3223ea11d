"""Make the tiny served models the quick tests use, so page tests need no TensorFlow:

    python scripts/make_test_models.py            # writes tests/fixtures/models/{happy,surprise}.keras
                                                  # with their LiteRT copies and records

Each model gives one emotion (~100%) for any face: a 48x48x1 input, its mean, and a dense head whose
kernel is zero and whose bias favours that emotion. That keeps each ``.keras`` file about 20 KB and its
``.tflite`` copy about 2 KB, made and checked by the same ``training.export`` the trainer uses. Run it
again (and commit the files) when the served format changes, e.g. a new serving record version.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from fer_core.labels import EMOTIONS
from fer_core.preprocess import FACE_SIZE

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models"
FIXTURE_EMOTIONS = ("happy", "surprise")
CONSTANT_LOGIT = 12.0  # softmax gives the emotion 0.99996 against six zero logits


def build_constant_model(emotion: str) -> Any:
    """A Keras model taking (N, 48, 48, 1) faces that gives ``emotion`` for every one."""
    import keras

    keras.utils.set_random_seed(0)
    faces = keras.Input((FACE_SIZE, FACE_SIZE, 1), name="faces")
    mean = keras.layers.GlobalAveragePooling2D(name="mean")(keras.layers.Rescaling(1 / 255, name="scale")(faces))
    logits = keras.layers.Dense(len(EMOTIONS), name="emotion")(mean)
    model = keras.Model(faces, keras.layers.Softmax(name="probabilities")(logits), name=f"constant_{emotion}")
    head = model.get_layer("emotion")
    kernel, bias = head.get_weights()
    bias = np.zeros_like(bias)
    bias[EMOTIONS.index(emotion)] = CONSTANT_LOGIT
    head.set_weights([np.zeros_like(kernel), bias])
    return model


def make_fixture(emotion: str, folder: Path) -> Path:
    """Save the ``emotion`` model as ``folder/<emotion>.keras`` with its checked LiteRT copy and record."""
    from training.export import export_tflite

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{emotion}.keras"
    model = build_constant_model(emotion)
    model.save(path)
    export_tflite(path, model=model)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=FIXTURES_DIR, help="the folder to write (default: %(default)s)")
    args = parser.parse_args(argv)
    for emotion in FIXTURE_EMOTIONS:
        path = make_fixture(emotion, args.out)
        sizes = ", ".join(
            f"{file.name} {file.stat().st_size / 1024:.1f} KB" for file in sorted(args.out.glob(f"{emotion}.*"))
        )
        print(f"{path}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
