"""Training settings: defaults written once in a frozen dataclass, overridden field by field.

Each field declares, once, what a valid value is (its type, bounds or choices) and how to explain
it (a label and a help text): ``TrainConfig`` checks every value against that declaration, and the
command line (``training/cli.py``) and the Training page build their flags and widgets from it, so
the three never disagree. The bounds keep out what cannot train (a negative step count loops for
ever, NaN weight decay diverges) and are wide enough for the values older runs were trained with,
whose config.json must stay readable.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_core.records import describe
from fer_core.settings import default_runs_dir


class ConfigError(ValueError):
    """A setting of the wrong type, out of its bounds, or unknown; the message names the key."""


@dataclass(frozen=True)
class Option:
    """What a setting accepts and how it is explained: carried by each ``TrainConfig`` field."""

    help: str
    label: str = ""  # the page's label ("" : the setting has no widget of its own on the page)
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | Callable[[], Sequence[str]] = ()  # a callable: a registry read when needed
    step: float | None = None  # the page's +/- step
    advanced: bool = False  # on the page: inside the "Advanced" expander
    flag: str = ""  # the command-line flag ("" : --the-field-name)
    default_text: str = ""  # how help texts name the default ("" : the default value itself)

    def allowed(self) -> tuple[str, ...]:
        return tuple(self.choices() if callable(self.choices) else self.choices)

    @property
    def bounded(self) -> bool:
        return self.minimum is not None and self.maximum is not None


def _architectures() -> tuple[str, ...]:
    from training.architectures import architectures  # light: the builders import Keras only when called

    return tuple(architectures())


def _option(default: Any, help: str, **declaration: Any) -> Any:
    return dataclasses.field(default=default, metadata={"option": Option(help=help, **declaration)})


@dataclass(frozen=True)
class TrainConfig:
    data: str = _option("demo", "'demo', a FER2013 folder (Kaggle layout or class folders) or fer2013.csv")
    arch: str = _option(
        "fernet",
        "the network to train (training.architectures describes each; the Training page lists them)",
        label="Architecture",
        choices=_architectures,
    )
    epochs: int = _option(60, "passes over the training faces", label="Epochs", minimum=1, maximum=10_000)
    batch_size: int = _option(
        64,
        "faces per step; larger is faster per face, the learning rates suit 64",
        label="Batch size",
        minimum=1,
        maximum=65_536,
        step=16,
    )
    lr: float | None = _option(  # None: the architecture's own default (see ARCH_LEARNING_RATES)
        None,
        "peak learning rate of AdamW (short warm-up, cosine decay)",
        label="Peak learning rate",
        minimum=1e-7,
        maximum=0.99,
        step=1e-4,
        default_text="the architecture's own",
    )
    weight_decay: float = _option(  # decoupled (AdamW): multiplied by the learning rate
        0.05, "AdamW weight decay, decoupled", label="Weight decay", minimum=0.0, maximum=10.0, step=0.01, advanced=True
    )
    augment: bool = _option(
        True,
        "random flips, small shifts, rotations, zoom, brightness and contrast changes of the training faces",
        label="Augmentation",
    )
    class_weights: bool = _option(
        True,
        "weigh rare emotions (disgust) up, softened: square root of the inverse frequency",
        label="Class weights",
    )
    label_smoothing: float = _option(
        0.1,
        "soften the one-hot targets: helps with FER2013's noisy labels",
        label="Label smoothing",
        minimum=0.0,
        maximum=0.99,
        step=0.05,
    )
    patience: int = _option(
        12,
        "stop early after this many epochs without a better validation accuracy",
        label="Patience",
        minimum=1,
        maximum=10_000,
    )
    val_fraction: float = _option(  # carved out of train, stratified, when the data has no val split
        0.1,
        "validation share carved out of train (stratified) when the data set has no val split of its own",
        label="Validation share",
        minimum=0.001,
        maximum=0.49,
        step=0.05,
        advanced=True,
    )
    seed: int = _option(
        42,
        "random seed of the initial weights, the augmentation and, unless --split-seed is given, the validation split",
        label="Seed",
        minimum=0,
        maximum=2**32 - 1,
        advanced=True,
    )
    split_seed: int | None = _option(  # None: the seed (how every run before this setting carved its split)
        None,
        "random seed of the validation split alone: keep it while --seed varies, and models of several seeds "
        "can be compared, averaged or chosen on the same validation faces",
        label="Split seed",
        minimum=0,
        maximum=2**32 - 1,
        advanced=True,
        default_text="--seed",
    )
    runs_dir: str = _option("", "folder that holds the runs", flag="--run-dir", default_text="runs/ in the project")
    strategy: str = _option(
        "default",
        "'default': TensorFlow's default, one device; 'mirrored': MirroredStrategy over all visible devices",
        label="Devices",
        default_text="'default'",
        choices=("default", "mirrored"),
        advanced=True,
    )
    precision: str = _option(
        "auto",
        "auto: float16 on a GPU, bfloat16 on CPUs that have it, else float32; the saved model is float32",
        label="Precision",
        choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
        advanced=True,
    )
    max_steps_per_epoch: int = _option(  # tests use small values
        0,
        "cap the steps per epoch (0: the whole training split every epoch); a small number makes a quick trial",
        label="Max steps per epoch",
        minimum=0,
        maximum=10_000_000,
        advanced=True,
    )
    init_from: str = _option(
        "",
        "start from the weights of this .keras model or run folder (same architecture): fine-tuning",
        default_text="random weights",
    )
    keep_last: int = _option(
        0,
        "also keep the model of each of the last N epochs in snapshots/, for `python -m training average`",
        label="Keep last epochs",
        minimum=0,
        maximum=10_000,
        advanced=True,
    )

    crop: int = _option(
        48,
        "train on random crops of this size (40: about 31% less compute per face); the served model averages "
        "its test-time views of the 48x48 face (see --tta). 48 means the architecture's own input: 40 for the "
        "*40 architectures",
        label="Training crop",
        minimum=16,
        maximum=48,
        step=4,
        advanced=True,
    )
    mixup: float = _option(
        0.0,
        "mixup: blend each batch with a shuffled copy of itself, faces and targets alike (Beta alpha; 0: off)",
        label="Mixup alpha",
        minimum=0.0,
        maximum=1.0,
        step=0.1,
        advanced=True,
    )
    erasing: float = _option(
        0.0,
        "random erasing: the share of training faces that get a random rectangle filled with noise",
        label="Random erasing",
        minimum=0.0,
        maximum=1.0,
        step=0.05,
        advanced=True,
    )
    distill_from: str = _option(
        "",
        "distil from these teachers: run folders or .keras files, comma-separated (their softened outputs on "
        "the same augmented faces join the labels)",
        label="Distil from",
        default_text="no teacher",
        advanced=True,
    )
    tta: str = _option(
        "none",
        "test-time views built into the served model: none (the centre crop), flip (and its mirror image), "
        "crops (centre and four corners, each mirrored: ten views)",
        label="Test-time views",
        choices=("none", "flip", "crops"),
        advanced=True,
    )
    quantize: str = _option(
        "float32",
        "weights of the served LiteRT copy: float32, or dynamic (int8 weights, activations quantized at run "
        "time: several times faster on CPUs with int8 dot products); an int8 copy is kept only if it agrees with "
        "the float model on at least 97 percent of the validation faces and loses at most 0.3 points, else float32 is served",
        label="Served weights",
        choices=("float32", "dynamic"),
        advanced=True,
    )
    backend: str = _option(
        "tensorflow",
        "Keras backend of the trainer process: tensorflow, or jax (no tf.data; export to LiteRT still uses TensorFlow)",
        label="Backend",
        choices=("tensorflow", "jax"),
        advanced=True,
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, checked_value(field.name, getattr(self, field.name)))
        if self.strategy == "mirrored" and self.backend != "tensorflow":
            raise ConfigError("strategy mirrored is TensorFlow's: use it with backend tensorflow")
        if self.keep_last > self.epochs:
            raise ConfigError(f"keep_last must be between 0 and epochs ({self.epochs}), got {self.keep_last}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else ARCH_LEARNING_RATES.get(self.arch, 1e-3)

    @property
    def validation_seed(self) -> int:
        """The seed the validation split is carved with."""
        return self.split_seed if self.split_seed is not None else self.seed

    @property
    def runs_path(self) -> Path:
        return Path(self.runs_dir) if self.runs_dir else default_runs_dir()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CROP_ARCHITECTURES = ("fernet40", "vgg40")  # trained on 40x40 crops of the 48x48 faces
ARCH_LEARNING_RATES = {"seed": 1e-4, "fernet": 2e-3, "tiny": 3e-3, "fernet40": 3e-3, "vgg40": 3e-3}
FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
KIND_WORDS = {  # the annotation, as written above -> the words an error uses (here and on the command line)
    "int": "an integer",
    "float": "a number",
    "float | None": "a number",
    "int | None": "an integer",
    "bool": "true or false",
    "str": "text",
}


def option(name: str) -> Option:
    """The declaration of setting ``name`` (its help, bounds, choices)."""
    declared: Option = FIELDS[name].metadata["option"]
    return declared


def kind_of(name: str) -> str:
    """``"int"``, ``"float"``, ``"int | None"``, ``"float | None"``, ``"bool"`` or ``"str"``: the setting's type."""
    return str(FIELDS[name].type)


def checked_value(name: str, value: Any) -> Any:
    """``value`` if it suits setting ``name`` (an integer number for a float is made a float), else
    :class:`ConfigError` naming the setting, what it expects and what it got."""
    kind = kind_of(name)
    if value is None and kind.endswith(" | None"):
        return None
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {describe(value)}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be text, got {describe(value)}")
        allowed = option(name).allowed()
        if allowed and value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind.startswith("int") and isinstance(value, float))
    ):
        raise ConfigError(f"{name} must be {KIND_WORDS[kind]}, got {describe(value)}")
    number = value if kind.startswith("int") else float(value)
    declared = option(name)
    if declared.bounded and not (declared.minimum <= number <= declared.maximum):  # type: ignore[operator]
        shown = f"{number} (not a finite number)" if not math.isfinite(number) else f"{number:g}"
        low, high = bound_text(declared.minimum), bound_text(declared.maximum)  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be between {low} and {high}, got {shown}")
    return number


def bound_text(bound: float) -> str:
    """``1,000,000`` for a whole bound, ``1e-06`` or ``0.45`` otherwise."""
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def config_from_mapping(values: Any, base: TrainConfig | None = None, *, source: str = "") -> TrainConfig:
    """Override ``base`` (default: the defaults) with ``values``, a mapping of setting -> value.
    Anything else, an unknown key, a value of the wrong type or out of bounds raises
    :class:`ConfigError` naming the key (and ``source``, the file it came from, when given)."""
    where = f"{source}: " if source else ""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}the settings must be a table of name = value, got {describe(values)}")
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"{where}unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(FIELDS))}")
    try:
        return dataclasses.replace(base or TrainConfig(), **dict(values))
    except ConfigError as error:
        raise ConfigError(f"{where}{error}") from None


def load_config_file(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML file of settings (flat keys, or under a ``[train]`` table)."""
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read the settings file {path}: {error.strerror or error}") from None
    except ValueError as error:  # TOMLDecodeError, or bytes that are not UTF-8
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return config_from_mapping(values.get("train", values), base, source=str(path))
