"""Test-time views built into the served model: the app and LiteRT see one 48x48-in, 7-out model.

A backbone trained on ``crop x crop`` windows (:mod:`training.neutral`) is wrapped so that its input is
the usual 48x48 face and its output the mean probability over the views: ``center`` (the centre crop),
``flip`` (it and its mirror image) or ``crops`` (centre and four corner crops, each also mirrored: ten
views, as in the published FER2013 VGG recipes). Only standard layers are used (the mirror image is a
fixed, non-trainable matrix product over the width), so the wrapped model saves, loads and converts to
LiteRT like any other, and the calibration temperature is fitted on the averaged outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fer_core.preprocess import FACE_SIZE

VIEWS = ("center", "flip", "crops")


def mirror_layer(width: int, name: str) -> Any:
    """A layer that mirrors (B, H, width, 1) images left-right: a fixed anti-diagonal matrix on the width."""
    import keras

    dense = keras.layers.Dense(width, use_bias=False, trainable=False, name=f"{name}_matrix", dtype="float32")
    dense.build((None, width))
    dense.set_weights([np.eye(width, dtype=np.float32)[::-1]])

    def apply(images: Any) -> Any:
        rows = keras.layers.Reshape((-1, width), name=f"{name}_rows")(images)
        mirrored = dense(rows)
        return keras.layers.Reshape((-1, width, 1), name=f"{name}_image")(mirrored)

    return apply


def with_views(backbones: Any, views: str, name: str | None = None) -> Any:
    """The served model: 48x48x1 faces in, the probabilities of the backbone (or of each backbone of a
    list: an ensemble of one input size) averaged over ``views`` out."""
    import keras
    from keras import layers

    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)}; got {views!r}")
    members = list(backbones) if isinstance(backbones, (list, tuple)) else [backbones]
    crop = int(members[0].input_shape[1])
    if any(int(member.input_shape[1]) != crop for member in members):
        raise ValueError("the members of an ensemble must take one input size")
    margin = FACE_SIZE - crop
    inputs = keras.Input(shape=(FACE_SIZE, FACE_SIZE, 1), name="gray_face")
    centre = (margin // 2, margin - margin // 2)
    positions = [(centre, centre)]
    if views == "crops":
        first, last = (0, margin), (margin, 0)
        positions += [(first, first), (first, last), (last, first), (last, last)]
    outputs: list[Any] = []
    mirror = mirror_layer(FACE_SIZE, "mirror") if views != "center" else None
    sources = [inputs] if mirror is None else [inputs, mirror(inputs)]
    for source_index, source in enumerate(sources):
        for index, (rows, cols) in enumerate(positions):
            view = source
            if margin:
                view = layers.Cropping2D((rows, cols), name=f"view_{source_index}_{index}")(source)
            outputs.extend(member(view) for member in members)
    averaged = outputs[0] if len(outputs) == 1 else layers.Average(name="mean_of_views", dtype="float32")(outputs)
    return keras.Model(inputs, averaged, name=name or f"{members[0].name}_{views}")
