"""Training settings: defaults written once in a frozen dataclass, overridden field by field."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_core.settings import default_runs_dir


@dataclass(frozen=True)
class TrainConfig:
    data: str = "demo"
    arch: str = "fernet"
    epochs: int = 60
    batch_size: int = 64
    lr: float | None = None  # None: the architecture's own default (see ARCH_LEARNING_RATES)
    weight_decay: float = 0.05  # decoupled (AdamW): multiplied by the learning rate
    augment: bool = True
    class_weights: bool = True  # softened (square-root) inverse-frequency weights
    label_smoothing: float = 0.1
    patience: int = 12  # epochs without val_accuracy improvement before stopping early
    val_fraction: float = 0.1  # carved out of train, stratified, when the data has no val split
    seed: int = 42
    runs_dir: str = ""  # "" means fer_core.settings.default_runs_dir()
    strategy: str = "default"  # "default" or "mirrored"
    precision: str = "auto"  # "auto", "float32", "mixed_bfloat16" or "mixed_float16"
    max_steps_per_epoch: int = 0  # 0: the whole train split every epoch (tests use small values)
    init_from: str = ""  # a .keras model of the same architecture whose weights the run starts from
    keep_last: int = 0  # also keep each of the last N epochs' models (snapshots/), for weight averaging

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise ValueError(f"lr must be between 0 and 1, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if not 0 <= self.keep_last <= self.epochs:
            raise ValueError(f"keep_last must be between 0 and epochs ({self.epochs}), got {self.keep_last}")
        if self.strategy not in ("default", "mirrored"):
            raise ValueError(f"strategy must be 'default' or 'mirrored', got {self.strategy!r}")
        if self.precision not in ("auto", "float32", "mixed_bfloat16", "mixed_float16"):
            raise ValueError(f"unknown precision {self.precision!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else ARCH_LEARNING_RATES.get(self.arch, 1e-3)

    @property
    def runs_path(self) -> Path:
        return Path(self.runs_dir) if self.runs_dir else default_runs_dir()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ARCH_LEARNING_RATES = {"seed": 1e-4, "fernet": 2e-3, "tiny": 3e-3}


def config_from_mapping(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Override ``base`` (default: the defaults) with ``values``; unknown keys raise ``ValueError``."""
    known = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(base or TrainConfig(), **dict(values))


def load_config_file(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML file of settings (flat keys, or under a ``[train]`` table)."""
    with open(path, "rb") as handle:
        values = tomllib.load(handle)
    return config_from_mapping(values.get("train", values), base)
