"""JSON files as typed records: the shared parser behind model cards (here) and run files
(``training.records``). Every error names the file and the key, and says what was expected and found.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fer_core.errors import FerError


def describe(value: Any) -> str:
    """A value as an error message shows it: ``'5' (text)``, ``[1, 2] (a list)``."""
    kinds = {bool: "true/false", str: "text", int: "an integer", float: "a number", list: "a list", dict: "a table"}
    kind = kinds.get(type(value), type(value).__name__)
    return f"{value!r} ({kind})"


class RecordError(FerError):
    """A run file that cannot be read, is not JSON, or holds a value of the wrong type."""


def read_record(path: Path) -> Any | None:
    """The JSON in ``path``, or None when there is no such file. Anything unreadable raises
    :class:`RecordError` (the files are written atomically, so this is not a half-written file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"{path.name} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise RecordError(f"{path.name} is not valid JSON ({error})") from None


class Fields:
    """Typed access to one JSON object's keys; every error names the file and the key."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise RecordError(f"{where} must hold a JSON object, got {describe(data)}")
        self.data = data
        self.where = where

    def _wrong(self, key: str, expected: str) -> RecordError:
        return RecordError(f"{self.where}: {key} must be {expected}, got {describe(self.data[key])}")

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong(key, "a number")
        return float(value)

    def integer(self, key: str, *, minimum: int | None = None) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer")
        if minimum is not None and value < minimum:
            raise self._wrong(key, f"an integer of at least {minimum}")
        return value

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "text")
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def required_number(self, key: str) -> float:
        value = self.number(key)
        if value is None:
            raise RecordError(f"{self.where}: {key} is missing")
        return value

    def required_integer(self, key: str) -> int:
        value = self.integer(key)
        if value is None:
            raise RecordError(f"{self.where}: {key} is missing")
        return value

    def rows(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._wrong(key, "a list")
        return value

    def strings(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
            raise self._wrong(key, "a table of text")
        return dict(value)


@dataclass(frozen=True)
class ModelCard:
    """A model's card: ``promoted.json`` beside the promoted model (written by training.promote), or
    the shipped model's ``fer_default.json``, or what a run folder says of its model (see
    :func:`fer_core.model_store.read_model_card`). Every key is optional; other keys are ignored."""

    run: str | None = None
    arch: str | None = None  # one architecture, or its trunks' joined by "+" (see trunk_archs)
    data_source: str | None = None
    trained_on: str | None = None  # in words, e.g. "FER2013 train split (28,709 faces; ...)"
    accuracy: float | None = None
    split: str | None = None
    best_val_accuracy: float | None = None
    source: str | None = None
    promoted_at: float | None = None
    provisional: bool = False
    note: str | None = None

    @classmethod
    def from_json(cls, data: Any, where: str) -> ModelCard:
        fields = Fields(data, where)
        return cls(
            run=fields.text("run"),
            arch=fields.text("arch"),
            data_source=fields.text("data_source"),
            trained_on=fields.text("trained_on"),
            accuracy=fields.number("accuracy"),
            split=fields.text("split"),
            best_val_accuracy=fields.number("best_val_accuracy"),
            source=fields.text("source"),
            promoted_at=fields.number("promoted_at"),
            provisional=fields.flag("provisional"),
            note=fields.text("note"),
        )

    @property
    def trunk_archs(self) -> tuple[str, ...]:
        """The architectures of the trunks a served model averages, as its ``arch`` names them
        (``"vgg40+fernet40"``: two trunks); a plain architecture is one trunk, no ``arch`` none."""
        return tuple(self.arch.split("+")) if self.arch else ()

    def to_json(self) -> dict[str, Any]:
        """The card as its file holds it: the keys that are set (``provisional`` only when true)."""
        values = {key: value for key, value in asdict(self).items() if value is not None}
        if not self.provisional:
            del values["provisional"]
        return values
