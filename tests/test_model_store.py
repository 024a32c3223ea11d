"""The model store: which model a call means (explicit, promoted, shipped) and what its card and run
folder say of it."""

from __future__ import annotations

import json

import pytest

from fer_core import model_store
from fer_core.errors import ModelLoadError
from fer_core.model_store import describe_model, resolve_model_path, shipped_model_path
from fer_core.records import ModelCard


def test_promoted_model_comes_before_the_shipped_default(tmp_path, isolated_runs_dir, monkeypatch) -> None:
    shipped = tmp_path / "fer_default.keras"
    shipped.write_bytes(b"placeholder")
    monkeypatch.setattr(model_store, "SHIPPED_MODEL_PATH", shipped)
    assert resolve_model_path() == shipped
    assert describe_model(shipped).kind == "shipped"
    promoted = isolated_runs_dir / "promoted.keras"
    promoted.write_bytes(b"placeholder")
    assert resolve_model_path() == promoted
    assert describe_model(promoted).kind == "promoted"


def test_no_model_at_all_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(model_store, "SHIPPED_MODEL_PATH", tmp_path / "missing.keras")
    with pytest.raises(ModelLoadError, match="no model found"):
        resolve_model_path()
    with pytest.raises(ModelLoadError, match="no model file"):
        resolve_model_path(tmp_path / "nope.keras")


def test_run_folder_resolves_to_its_model(tmp_path) -> None:
    (tmp_path / "best.keras").write_bytes(b"x")
    assert resolve_model_path(tmp_path) == tmp_path / "best.keras"
    (tmp_path / "model.keras").write_bytes(b"x")
    assert resolve_model_path(tmp_path) == tmp_path / "model.keras"


def test_promoted_model_is_described_from_its_card_and_run(isolated_runs_dir) -> None:
    run = isolated_runs_dir / "20260101-120000-fernet"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"settings": {"arch": "fernet"}, "data_source": "/data/fer2013"}))
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.671, "split": "test"}))
    (isolated_runs_dir / "promoted.keras").write_bytes(b"x")
    (isolated_runs_dir / "promoted.json").write_text(json.dumps({"run": run.name, "note": "from a test"}))
    info = describe_model(isolated_runs_dir / "promoted.keras")
    assert info.kind == "promoted"
    assert info.card.run == run.name
    assert info.card.arch == "fernet"  # from the run folder the card names
    assert info.card.data_source == "/data/fer2013"
    assert (info.card.accuracy, info.card.split) == (0.671, "test")
    assert info.card.note == "from a test"  # from the card itself


def test_a_broken_model_card_is_ignored(tmp_path) -> None:
    (tmp_path / "mine.keras").write_bytes(b"x")
    (tmp_path / "mine.json").write_text("{not json")
    assert describe_model(tmp_path / "mine.keras").card == ModelCard()


def test_a_model_in_a_run_folder_is_described_by_its_run(tmp_path) -> None:
    run = tmp_path / "20260101-120000-tiny"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"settings": {"arch": "tiny", "data": "demo"}}))
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.25, "split": "val"}))
    (run / "model.keras").write_bytes(b"x")
    info = describe_model(resolve_model_path(run))
    assert info.kind == "custom"
    assert info.card == ModelCard(run=run.name, arch="tiny", data_source="demo", accuracy=0.25, split="val")


def test_a_broken_run_file_leaves_only_the_run_name(tmp_path) -> None:
    run = tmp_path / "20260101-120000-tiny"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"settings": {"arch": 5}}))
    (run / "model.keras").write_bytes(b"x")
    assert describe_model(run / "model.keras").card == ModelCard(run=run.name)


def test_the_fast_shipped_model_is_chosen_only_where_it_exists(tmp_path, monkeypatch) -> None:
    quality, fast = tmp_path / "fer_default.keras", tmp_path / "fer_fast.keras"
    monkeypatch.setattr(model_store, "SHIPPED_MODEL_PATH", quality)
    monkeypatch.setattr(model_store, "SHIPPED_FAST_MODEL_PATH", fast)
    assert shipped_model_path(fast=True) == quality
    fast.write_bytes(b"x")
    assert shipped_model_path(fast=True) == fast
    assert shipped_model_path() == quality
