"""Which model a page, CLI or library call means, and what is known about it: resolving and describing
models, with one reader for the records they are described by.

    path = resolve_model_path()              # promoted model, else the shipped default
    info = describe_model(path)              # its kind and its card, for captions and reports
    print(info.kind, info.card.arch, info.card.accuracy)

Loading and running a model is :mod:`fer_core.inference`'s job. Nothing here reads a model's weights.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

from fer_core import run_layout
from fer_core.errors import ModelLoadError
from fer_core.records import Fields, ModelCard, RecordError, read_record
from fer_core.settings import SHIPPED_FAST_MODEL_PATH, SHIPPED_MODEL_PATH, promoted_model_path


def shipped_model_path(*, fast: bool = False) -> Path:
    """The shipped quality model, or with ``fast`` the shipped fast one (Live) where it exists."""
    return SHIPPED_FAST_MODEL_PATH if fast and SHIPPED_FAST_MODEL_PATH.is_file() else SHIPPED_MODEL_PATH


def resolve_model_path(path: str | os.PathLike[str] | None = None, *, fast: bool = False) -> Path:
    """An explicit model file or run folder; else the promoted model; else the shipped default: the
    quality model, or with ``fast`` the fast one (what Live runs)."""
    if path is not None:
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            for name in run_layout.MODEL_FILES:
                if (candidate / name).is_file():
                    return candidate / name
            raise ModelLoadError(f"{candidate} holds no model.keras or best.keras")
        if not candidate.is_file():
            raise ModelLoadError(f"no model file at {candidate}")
        return candidate
    promoted = promoted_model_path()
    if promoted.is_file():
        return promoted
    shipped = shipped_model_path(fast=fast)
    if shipped.is_file():
        return shipped
    raise ModelLoadError(f"no model found: neither a promoted model ({promoted}) nor the shipped {shipped}")


class ModelInfo(NamedTuple):
    """Which model a path is and what is known about it (:func:`read_model_card`), for captions and reports."""

    path: Path
    kind: str  # "promoted", "shipped" or "custom"
    card: ModelCard

    @property
    def provisional(self) -> bool:
        return self.card.provisional


def describe_model(path: str | os.PathLike[str]) -> ModelInfo:
    """What is known about the model at ``path``; missing or broken files simply say less."""
    model_path = Path(path)
    resolved = model_path.resolve()
    if resolved == promoted_model_path().resolve():
        kind = "promoted"
    elif resolved in (SHIPPED_MODEL_PATH.resolve(), SHIPPED_FAST_MODEL_PATH.resolve()):
        kind = "shipped"
    else:
        kind = "custom"
    return ModelInfo(model_path, kind, read_model_card(model_path))


def read_model_card(model_path: Path) -> ModelCard:
    """The card of the model at ``model_path``, merged from what is present:

    - the model's own card, a JSON file beside it with the same stem (``promoted.json``,
      ``fer_default.json``), which wins;
    - what its run folder says (``config.json`` and ``metrics.json``), for a model inside a run folder
      or a promoted model whose card names its run.

    A missing or broken file adds nothing.
    """
    try:
        own = _record(model_path.with_suffix(".json"))
        card = ModelCard.from_json(own.data, own.where) if own is not None else ModelCard()
    except RecordError:
        card = ModelCard()
    run_dir = _run_folder(model_path, card)
    facts = _run_card(run_dir) if run_dir is not None else ModelCard()
    return ModelCard(
        **{
            field.name: value if value not in (None, False) else getattr(facts, field.name)
            for field in dataclasses.fields(ModelCard)
            for value in [getattr(card, field.name)]
        }
    )


def _run_folder(model_path: Path, card: ModelCard) -> Path | None:
    """The run folder a model came from: the one it is in, else the one its card names beside the
    promoted model."""
    if run_layout.is_run_folder(model_path.parent):
        return model_path.parent
    if card.run:
        candidate = promoted_model_path().parent / card.run
        return candidate if run_layout.is_run_folder(candidate) else None
    return None


def _run_card(run_dir: Path) -> ModelCard:
    """What a run folder says of its model: the run, its architecture and data, its held-out accuracy.
    Only these keys are read here; :mod:`training.records` checks the whole files."""
    try:
        config = _record(run_dir / run_layout.CONFIG_FILE) or Fields({}, run_layout.CONFIG_FILE)
        settings = Fields(config.data.get("settings") or {}, "settings")
        metrics = _record(run_dir / run_layout.METRICS_FILE)
        return ModelCard(
            run=run_dir.name,
            arch=settings.text("arch"),
            data_source=config.text("data_source") or settings.text("data"),
            accuracy=metrics.number("accuracy") if metrics else None,
            split=metrics.text("split") if metrics else None,
        )
    except RecordError:
        return ModelCard(run=run_dir.name)


def _record(path: Path) -> Fields | None:
    """The one reader of the records describing a model: the JSON object in ``path`` as typed fields, or
    None when there is no such file. Raises :class:`RecordError` for a file that is unreadable, not
    JSON or not an object."""
    data = read_record(path)
    return Fields(data, path.name) if data is not None else None
