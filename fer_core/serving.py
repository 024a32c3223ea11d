"""The served form of a model: a LiteRT copy beside each ``.keras`` file, and the record of its check.

    models/fer_default.keras          training, fine-tuning, averaging (TensorFlow)
    models/fer_default.tflite         what the app, the library and the CLIs run (LiteRT, no TensorFlow)
    models/fer_default.tflite.json    how it was made: the hashes of both files, the largest difference
                                      from the Keras model on check faces, the calibration temperature

``training.export`` writes the copy and its record (converting needs TensorFlow); this module only
reads and checks them, so the app server never loads TensorFlow. A copy is served only if its record
says it agreed with the Keras model and both files are still the ones it names: a ``.keras`` replaced
after the conversion makes its copy stale, and it is refused until exported again.

Agreeing means: a float32 copy gives the Keras model's probabilities within ``TOLERANCE``; a quantized
copy (``quantization = "dynamic"``: int8 weights, activations quantized at run time by LiteRT) cannot,
so its record holds what was measured on labelled validation faces instead: the share of faces whose top
emotion is the Keras model's (``agreement``, at least ``MIN_AGREEMENT``) and its accuracy minus the Keras
model's (``accuracy_delta``, at least ``-MAX_ACCURACY_LOSS``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fer_core.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE
from fer_core.errors import FileWriteError, ModelLoadError

LITE_SUFFIX = ".tflite"
RECORD_SUFFIX = ".tflite.json"
TOLERANCE = 1e-4  # a float32 LiteRT copy's probabilities may differ from the Keras model's by at most this
FLOAT32, DYNAMIC = "float32", "dynamic"  # a copy's quantization: none, or int8 weights with dynamic activations
QUANTIZATIONS = (FLOAT32, DYNAMIC)
MIN_AGREEMENT = 0.97  # a quantized copy's top emotion is the Keras model's on at least this share of faces
MAX_ACCURACY_LOSS = 0.003  # and it loses at most this much validation accuracy (0.3 points)
MIN_QUANTIZED_CHECK_FACES = 100  # labelled faces a quantized copy is measured on, at least
RECORD_VERSION = 1


def lite_path(model_path: str | os.PathLike[str]) -> Path:
    """The LiteRT copy of a model (``x.keras`` -> ``x.tflite``; a ``.tflite`` path is returned as is)."""
    return Path(model_path).with_suffix(LITE_SUFFIX)


def keras_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_suffix(".keras")


def record_path(model_path: str | os.PathLike[str]) -> Path:
    path = Path(model_path)
    return path.with_name(path.with_suffix("").name + RECORD_SUFFIX)


def served_files(model_path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """The ``.keras``, ``.tflite`` and record paths of one model, whichever of them is given."""
    return keras_path(model_path), lite_path(model_path), record_path(model_path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ServingRecord:
    """What ``training.export`` checked when it wrote a LiteRT copy."""

    keras_sha256: str  # the .keras file the copy was converted from
    tflite_sha256: str
    max_difference: float  # the largest difference of any probability on the check faces
    tolerance: float
    check_faces: int
    temperature: float = 1.0  # calibration: served probabilities are softmax(logits / temperature)
    converter: str = ""  # e.g. "tensorflow 2.21.0"
    created_at: str = ""
    version: int = RECORD_VERSION
    quantization: str = FLOAT32  # FLOAT32, or DYNAMIC: checked by agreement and accuracy, not max_difference
    agreement: float = 1.0  # share of the labelled check faces whose top emotion is the Keras model's
    accuracy_delta: float = 0.0  # the copy's accuracy on them minus the Keras model's

    @property
    def quantized(self) -> bool:
        return self.quantization != FLOAT32

    def problem(self) -> str | None:
        """Why a copy with this record may not be served (it disagreed with its Keras model), or None."""
        if not self.quantized:
            if not self.tolerance <= TOLERANCE:
                return f"was checked with a tolerance of {self.tolerance:.2g}, looser than the {TOLERANCE:g} allowed"
            if not self.max_difference <= TOLERANCE:
                return f"differs from the Keras model by {self.max_difference:.2g} (at most {TOLERANCE:g} is allowed)"
            return None
        if self.check_faces < MIN_QUANTIZED_CHECK_FACES:
            return (
                f"is quantized and was checked on {self.check_faces} faces; at least {MIN_QUANTIZED_CHECK_FACES} "
                "labelled faces are needed"
            )
        if not self.agreement >= MIN_AGREEMENT:
            return (
                f"is quantized and agrees with the Keras model on {self.agreement:.1%} of the check faces "
                f"(at least {MIN_AGREEMENT:.0%} is needed)"
            )
        if not self.accuracy_delta >= -MAX_ACCURACY_LOSS:
            return (
                f"is quantized and loses {-self.accuracy_delta * 100:.2f} points of accuracy against the Keras model "
                f"(at most {MAX_ACCURACY_LOSS * 100:.1f} are allowed)"
            )
        return None

    @classmethod
    def from_json(cls, data: Any, source: str = "the record") -> ServingRecord:
        """Parse and check a record; a missing key or a value of the wrong type raises ``ModelLoadError``."""
        if not isinstance(data, dict):
            raise ModelLoadError(f"{source} is not a JSON object")
        expected: dict[str, tuple[type, ...]] = {
            "keras_sha256": (str,),
            "tflite_sha256": (str,),
            "max_difference": (int, float),
            "tolerance": (int, float),
            "check_faces": (int,),
            "temperature": (int, float),
            "converter": (str,),
            "created_at": (str,),
            "version": (int,),
            "quantization": (str,),
            "agreement": (int, float),
            "accuracy_delta": (int, float),
        }
        values: dict[str, Any] = {}
        for key, types in expected.items():
            if key not in data:
                if key in ("keras_sha256", "tflite_sha256", "max_difference", "tolerance", "check_faces"):
                    raise ModelLoadError(f"{source} lacks {key!r}")
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ModelLoadError(f"{source}: {key!r} has the wrong type ({type(value).__name__})")
            values[key] = value
        record = cls(**values)
        if record.quantization not in QUANTIZATIONS:
            raise ModelLoadError(
                f"{source}: unknown quantization {record.quantization!r} (known: {', '.join(QUANTIZATIONS)})"
            )
        if not MIN_TEMPERATURE <= record.temperature <= MAX_TEMPERATURE:  # NaN fails too
            # The fit never leaves this range: a value outside it is a damaged record, and it would make
            # every face "uncertain" (near 0) or skew every probability.
            raise ModelLoadError(
                f"{source} is damaged: its calibration temperature {record.temperature:g} is outside "
                f"{MIN_TEMPERATURE:g}-{MAX_TEMPERATURE:g}, the range a fitted temperature lies in"
            )
        return record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_record(model_path: str | os.PathLike[str]) -> ServingRecord:
    path = record_path(model_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path.name} is missing") from None
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path.name} cannot be read ({error})") from None
    return ServingRecord.from_json(data, path.name)


def write_record(model_path: str | os.PathLike[str], record: ServingRecord) -> Path:
    """Write the record atomically (temporary file, then rename). Returns its path."""
    path = record_path(model_path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:  # named for the record, never its temporary name
        raise FileWriteError(error.errno, f"cannot write {path}: {error.strerror or error}") from error
    finally:
        temporary.unlink(missing_ok=True)
    return path


def export_hint(model_path: str | os.PathLike[str]) -> str:
    return f"make it with `python -m training export {keras_path(model_path)}`"


def checked_lite_model(model_path: str | os.PathLike[str]) -> tuple[bytes, ServingRecord]:
    """The LiteRT copy of ``model_path`` and its record, after checking that it may be served.

    Raises :class:`ModelLoadError` saying what is wrong and how to fix it when the copy or its record
    is missing or unreadable, when the copy disagreed with the Keras model, or when either file has
    changed since the check (a ``.keras`` trained further, a truncated ``.tflite``).
    """
    given = Path(model_path)
    if given.suffix not in (".keras", LITE_SUFFIX):
        raise ModelLoadError(_not_servable(given))
    keras_file, lite_file, _ = served_files(model_path)
    if not keras_file.is_file():  # the copy cannot be checked against a model that is gone (a newer best)
        raise ModelLoadError(f"no model file at {keras_file}: its LiteRT copy is not served without it")
    if not lite_file.is_file():
        raise ModelLoadError(f"{keras_file.name} has no LiteRT copy ({lite_file.name}): {export_hint(keras_file)}")
    try:
        record = read_record(model_path)
    except ModelLoadError as error:
        raise ModelLoadError(
            f"the LiteRT copy {lite_file.name} cannot be used: {error}; {export_hint(keras_file)}"
        ) from None
    problem = record.problem()
    if problem is not None:
        raise ModelLoadError(
            f"the LiteRT copy {lite_file.name} {problem}, so it is not used: {export_hint(keras_file)}"
        )
    try:
        flatbuffer = lite_file.read_bytes()
        keras_digest = sha256_of(keras_file)
    except OSError as error:
        raise ModelLoadError(f"cannot read {lite_file.name}: {error.strerror or error}") from None
    if hashlib.sha256(flatbuffer).hexdigest() != record.tflite_sha256:
        raise ModelLoadError(
            f"{lite_file.name} is not the file its record describes (changed or damaged): {export_hint(keras_file)}"
        )
    if keras_digest != record.keras_sha256:
        raise ModelLoadError(
            f"{lite_file.name} was made from an earlier version of {keras_file.name}: {export_hint(keras_file)}"
        )
    return flatbuffer, record


def _not_servable(path: Path) -> str:
    """Why a file that is neither a ``.keras`` model nor its LiteRT copy cannot be served, and what to do."""
    if path.suffix == ".h5":
        return (
            f"{path} is a legacy Keras .h5 model: models are served from a .keras file and its LiteRT copy. "
            f"Save it as .keras (keras.models.load_model(...).save(...)), then run "
            f"`python -m training export {path.with_suffix('.keras')}`"
        )
    return (
        f"{path} is not a model file: give a .keras model (with its LiteRT copy, made by "
        "`python -m training export`) or a run folder"
    )
