"""What a training run folder holds: every file name, defined once.

``training`` writes run folders (``training/runs.py`` reads and writes them); ``fer_core`` and the app
only read models and their cards out of them. Both take the names from here.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "config.json"  # every setting, the data source, the command, versions
STATUS_FILE = "status.json"  # state, phase, progress, pid
HISTORY_JSON = "history.json"  # per epoch, and every few seconds within one
HISTORY_CSV = "history.csv"
SUMMARY_FILE = "model_summary.txt"
METRICS_FILE = "metrics.json"  # the held-out evaluation of the exported model
BEST_CHECKPOINT = "best.keras"  # best validation accuracy so far
LAST_CHECKPOINT = "last.keras"  # the last completed epoch, for resuming
EXPORTED_MODEL = "model.keras"  # the float32 export of the best checkpoint, when the run stops or finishes
SNAPSHOTS_DIR = "snapshots"  # epoch-NNN.keras for the last epochs, with --keep-last
CHECKPOINT_INFO = "checkpoint.json"  # which epoch last.keras holds, and the best so far
MISCLASSIFIED_FILE = "misclassified.npz"
STOP_FLAG = "STOP"
LOG_FILE = "train.log"
STATUS_LOCK = ".status.lock"
TRASH_PREFIX = ".trash-"  # a deleted run's folder, renamed before its files are removed

MODEL_FILES = (EXPORTED_MODEL, BEST_CHECKPOINT)  # a run's model: its export, else its best checkpoint


def is_run_folder(path: os.PathLike[str] | str) -> bool:
    """Whether ``path`` is a run folder (it holds a config.json)."""
    return (Path(path) / CONFIG_FILE).is_file()
