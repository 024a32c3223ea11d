"""Model architectures: a small registry of functional Keras builders.

Every builder takes 48x48x1 inputs holding raw 0-255 gray values (scaling is the model's
first layer) and ends in a 7-way softmax in the FER2013 label order. The ``*40`` builders take the
40x40 crops they are trained on (:mod:`training.neutral`); the model that is served wraps them back to
48x48 with its test-time views (:mod:`training.views`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fer_core.labels import NUM_CLASSES
from fer_core.preprocess import FACE_SIZE

if TYPE_CHECKING:
    import keras

INPUT_SHAPE = (FACE_SIZE, FACE_SIZE, 1)
CROP_SIZE = 40  # the training crop of the *40 architectures

ModelBuilder = Callable[..., "keras.Model"]
_REGISTRY: dict[str, tuple[ModelBuilder, str]] = {}


def register(name: str, description: str) -> Callable[[ModelBuilder], ModelBuilder]:
    def decorator(builder: ModelBuilder) -> ModelBuilder:
        _REGISTRY[name] = (builder, description)
        return builder

    return decorator


def architectures() -> dict[str, str]:
    """Name -> one-line description of every registered architecture."""
    return {name: description for name, (_, description) in _REGISTRY.items()}


def build_model(arch: str, num_classes: int = NUM_CLASSES, **options: float) -> keras.Model:
    """Build the named architecture. Unknown names raise ``ValueError`` listing the known ones.
    ``input_size`` (an option of every builder) makes it take ``input_size`` x ``input_size`` crops."""
    try:
        builder, _ = _REGISTRY[arch]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {known}") from None
    return builder(num_classes=num_classes, **options)


def _conv_bn_relu(x: keras.KerasTensor, filters: int, kernel_size: int, bn_momentum: float = 0.99) -> keras.KerasTensor:
    from keras import layers

    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    return layers.Activation("relu")(x)


def _classifier_head(x: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    from keras import layers

    # float32 softmax keeps mixed-precision training numerically stable.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="emotion")(x)


@register("seed", "Reference CNN of the original project (4 conv + 2 dense, ~290 MMAC): kept for comparison")
def build_seed(num_classes: int = NUM_CLASSES, dropout_rate: float = 0.25, input_size: int = FACE_SIZE) -> keras.Model:
    import keras
    from keras import layers

    inputs = keras.Input(shape=(input_size, input_size, 1), name="gray_face")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters, kernel_size in ((64, 3), (128, 5), (512, 3), (512, 3)):
        x = _conv_bn_relu(x, filters, kernel_size)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(dropout_rate)(x)
    x = layers.Flatten()(x)
    for units in (256, 512):
        x = layers.Dense(units, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, _classifier_head(x, num_classes), name="seed")


@register(
    "fernet",
    "Default: VGG-style 4 stages x 2 conv (32-64-128-256), global pooling; ~2.5x fewer MACs than seed",
)
def build_fernet(
    num_classes: int = NUM_CLASSES, width: int = 32, dropout_rate: float = 0.4, input_size: int = FACE_SIZE
) -> keras.Model:
    return _vgg_trunk((input_size, input_size, 1), num_classes, width, dropout_rate, name="fernet")


def _vgg_trunk(
    input_shape: tuple[int, int, int], num_classes: int, width: int, dropout_rate: float, name: str, dense: int = 0
) -> keras.Model:
    """4 stages x 2 conv 3x3 (width, 2x, 4x, 8x channels), max-pool and spatial dropout between stages,
    global average pooling, an optional dense layer, dropout, softmax."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="gray_face")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for stage in range(4):
        filters = width * 2**stage
        x = _conv_bn_relu(x, filters, 3)
        x = _conv_bn_relu(x, filters, 3)
        if stage < 3:
            x = layers.MaxPooling2D()(x)
            x = layers.SpatialDropout2D(0.1)(x)
    x = layers.GlobalAveragePooling2D()(x)
    if dense:
        x = layers.Dense(dense, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.Dropout(dropout_rate)(x)
    return keras.Model(inputs, _classifier_head(x, num_classes), name=name)


@register("fernet40", "Fast (Live): fernet's trunk at 24-192 channels on 40x40 crops; served on the centre crop")
def build_fernet40(
    num_classes: int = NUM_CLASSES, width: int = 24, dropout_rate: float = 0.4, input_size: int = CROP_SIZE
) -> keras.Model:
    return _vgg_trunk((input_size, input_size, 1), num_classes, width, dropout_rate, name="fernet40")


@register(
    "vgg40", "Quality (photos, video, batch): a wider VGG trunk (48-384) on 40x40 crops; served on its --tta views"
)
def build_vgg40(
    num_classes: int = NUM_CLASSES, width: int = 48, dropout_rate: float = 0.4, input_size: int = CROP_SIZE
) -> keras.Model:
    return _vgg_trunk((input_size, input_size, 1), num_classes, width, dropout_rate, name="vgg40", dense=256)


@register("tiny", "A few thousand parameters, for tests: it learns slowly, even on the demo set; not for real use")
def build_tiny(num_classes: int = NUM_CLASSES, input_size: int = FACE_SIZE) -> keras.Model:
    import keras
    from keras import layers

    inputs = keras.Input(shape=(input_size, input_size, 1), name="gray_face")
    x = layers.Rescaling(1.0 / 255)(inputs)
    # Demo-set runs have ~20 steps per epoch: with Keras's default momentum (0.99) the moving
    # statistics stay near their initial values for ~20 epochs and validation sits at chance.
    for filters in (8, 16, 32):
        x = _conv_bn_relu(x, filters, 3, bn_momentum=0.9)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _classifier_head(x, num_classes), name="tiny")
