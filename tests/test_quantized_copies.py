"""Quantized LiteRT copies (int8 weights, dynamic activations): measured on labelled faces at export,
served only while their record shows enough agreement and no more than the allowed accuracy loss."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from photo_samples import tiny_model

from fer_core.errors import ModelLoadError
from fer_core.serving import (
    DYNAMIC,
    MAX_ACCURACY_LOSS,
    MIN_AGREEMENT,
    MIN_QUANTIZED_CHECK_FACES,
    ServingRecord,
    checked_lite_model,
    read_serving_record,
    record_path,
)

GOOD = ServingRecord(
    keras_sha256="k",
    tflite_sha256="t",
    max_difference=0.02,  # a quantized copy's probabilities differ: not what it is judged by
    tolerance=1e-4,
    check_faces=2872,
    quantization=DYNAMIC,
    agreement=0.99,
    accuracy_delta=0.001,
)


def test_a_quantized_record_is_judged_by_agreement_and_accuracy_not_by_its_difference() -> None:
    assert GOOD.quantized and GOOD.problem() is None
    assert dataclasses.replace(GOOD, quantization="float32").problem() is not None  # 0.02 > 1e-4 for float32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agreement": MIN_AGREEMENT - 0.01}, r"agrees with the Keras model on 96\.0%"),
        ({"accuracy_delta": -MAX_ACCURACY_LOSS - 0.001}, r"loses 0\.40 points"),
        ({"accuracy_delta": float("nan")}, r"loses nan points"),
        ({"check_faces": MIN_QUANTIZED_CHECK_FACES - 1}, r"checked on 99 faces"),
    ],
)
def test_a_quantized_record_outside_the_limits_names_what_is_wrong(change: dict, message: str) -> None:
    problem = dataclasses.replace(GOOD, **change).problem()
    assert problem is not None and re.search(message, problem)


def test_an_unknown_quantization_is_a_damaged_record() -> None:
    with pytest.raises(ModelLoadError, match=r"unknown quantization 'int4'"):
        ServingRecord.from_json({**GOOD.to_json(), "quantization": "int4"})


def test_records_written_before_quantization_are_float32() -> None:
    old = {key: value for key, value in GOOD.to_json().items() if key not in ("quantization", "agreement")}
    assert ServingRecord.from_json({**old, "max_difference": 0.0}).quantization == "float32"


def _labelled_faces(model, count: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Random faces labelled with the float model's own answers: its accuracy on them is 1."""
    faces = np.random.default_rng(1).integers(0, 256, (count, 48, 48), dtype=np.uint8)
    labels = np.asarray(model(faces.astype(np.float32)[..., None], training=False)).argmax(axis=1)
    return faces, labels.astype(np.int64)


@pytest.mark.slow
def test_a_dynamic_copy_is_measured_on_the_labelled_faces_and_served(tmp_path) -> None:
    from fer_core.inference import load_classifier
    from training.export import export_tflite

    model = tiny_model("happy")
    path = tmp_path / "tiny.keras"
    model.save(path)
    faces, labels = _labelled_faces(model)
    export_tflite(path, model=model, quantization=DYNAMIC, check_faces=faces, check_labels=labels)
    record = read_serving_record(path)
    assert (record.quantization, record.check_faces) == (DYNAMIC, len(faces))
    assert record.agreement == 1.0 and record.accuracy_delta == 0.0  # a constant model survives quantization
    flatbuffer, _ = checked_lite_model(path)
    assert flatbuffer == (tmp_path / "tiny.tflite").read_bytes()
    assert load_classifier(path).classify_batch(faces[:5]).argmax(axis=1).tolist() == [3] * 5


@pytest.mark.slow
def test_a_quantized_copy_without_labelled_faces_is_not_made(tmp_path) -> None:
    from training.export import export_tflite

    model = tiny_model()
    path = tmp_path / "tiny.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match=r"labelled validation faces \(at least 100\); 0 were given.*--data"):
        export_tflite(path, model=model, quantization=DYNAMIC)
    assert not (tmp_path / "tiny.tflite").exists()


@pytest.mark.slow
def test_a_quantized_copy_that_loses_accuracy_is_not_written_and_an_edited_record_is_not_served(
    tmp_path, monkeypatch
) -> None:
    from training import export

    model = tiny_model("happy")
    path = tmp_path / "tiny.keras"
    model.save(path)
    faces, labels = _labelled_faces(model)
    export.export_tflite(path, model=model, quantization=DYNAMIC, check_faces=faces, check_labels=labels)
    record_file = record_path(path)
    good_record = json.loads(record_file.read_text())

    sad = np.zeros((1, 7), np.float32)
    sad[0, 4] = 1.0
    monkeypatch.setattr(export, "lite_probabilities", lambda flatbuffer, batch: np.repeat(sad, len(batch), axis=0))
    with pytest.raises(ModelLoadError, match=r"agrees with the Keras model on 0\.0%.*not exported"):
        export.export_tflite(path, model=model, quantization=DYNAMIC, check_faces=faces, check_labels=labels)
    assert json.loads(record_file.read_text()) == good_record  # the earlier copy and record stay as they were

    record_file.write_text(json.dumps({**good_record, "accuracy_delta": -0.05}))
    with pytest.raises(ModelLoadError, match=r"loses 5\.00 points.*python -m training export"):
        checked_lite_model(path)


@pytest.mark.slow
def test_the_export_command_makes_a_quantized_copy_on_the_validation_faces_and_says_so(tmp_path, capsys) -> None:
    from training import cli

    model = tiny_model("happy")
    path = tmp_path / "tiny.keras"
    model.save(path)
    assert cli.main(["export", str(path), "--quantize", "dynamic"]) == 2  # no data: no validation faces
    assert "give --data" in capsys.readouterr().err
    assert not (tmp_path / "tiny.tflite").exists()
    assert cli.main(["export", str(path), "--data", "demo", "--quantize", "dynamic"]) == 0
    printed = capsys.readouterr().out
    assert re.search(
        r"dynamic quantization: the top emotion of tiny\.keras on 100\.0% of [\d,]+ validation faces", printed
    )
    assert read_serving_record(path).quantization == DYNAMIC


def test_a_run_serves_its_int8_copy_or_float32_when_the_check_refuses(tmp_path, monkeypatch, capsys) -> None:
    from training import finish

    calls: list[str] = []

    def export_served(model_path, val, quantization="float32"):
        calls.append(quantization)
        if quantization == DYNAMIC:
            raise ModelLoadError("the dynamic LiteRT copy of model.keras is quantized and loses 0.60 points")
        return 0.9

    monkeypatch.setattr(finish, "export_served", export_served)
    assert finish.export_served_as(tmp_path / "model.keras", None, DYNAMIC) == 0.9
    assert calls == [DYNAMIC, "float32"]
    assert "the dynamic copy was not kept (the dynamic LiteRT copy" in capsys.readouterr().err
    calls.clear()
    assert finish.export_served_as(tmp_path / "model.keras", None, "float32") == 0.9
    assert calls == ["float32"]  # float32 asked for: no int8 attempt


def test_a_served_choice_refuses_trunks_validated_on_another_split(tmp_path) -> None:
    import subprocess
    import sys

    from conftest import PROJECT_ROOT

    from training.config import TrainConfig
    from training.records import RunConfig
    from training.served_choice import other_validation_splits

    paths = []
    for name, settings in (("same", TrainConfig(seed=42)), ("other", TrainConfig(seed=11))):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps(RunConfig(settings).to_json()))
        paths.append(run / "model.keras")
    held = tmp_path / "held"  # another seed, the same split
    held.mkdir()
    (held / "config.json").write_text(json.dumps(RunConfig(TrainConfig(seed=11, split_seed=42)).to_json()))
    loose = tmp_path / "shipped.keras"  # outside a run folder: taken as it is
    assert other_validation_splits([paths[0], held / "model.keras", loose], 42, 0.1) == []
    [problem] = other_validation_splits(paths, 42, 0.1)
    assert problem.startswith(str(paths[1])) and "seed 11" in problem and "trained on faces" in problem
    assert other_validation_splits(paths, 11, 0.1)[0].startswith(str(paths[0]))
    command = [
        sys.executable,
        "scripts/choose_served.py",
        *map(str, paths),
        "--data",
        "demo",
        "--out",
        str(tmp_path / "o"),
    ]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "another validation split (seed 11" in result.stderr
    assert not (tmp_path / "o").exists()  # refused before anything was evaluated or written


def test_a_served_choice_takes_each_trunk_once_and_renames_other_weights_under_a_taken_name(tmp_path) -> None:
    from training.config import TrainConfig
    from training.records import RunConfig
    from training.served_choice import distinct_trunks, trunks_of
    from training.views import with_views

    first, second, third = (tiny_model(seed=seed) for seed in (0, 1, 2))  # three trunks, each named "tiny"
    shipped = with_views([first], "center", name="shipped")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(RunConfig(TrainConfig(seed=23, split_seed=42)).to_json()))
    models = [
        (tmp_path / "shipped.keras", shipped),
        (tmp_path / "fast.keras", with_views([first], "flip", name="fast")),  # the same trunk again: taken once
        (run / "model.keras", with_views([second], "center")),  # a run's trunk: named after the run's seed
        (tmp_path / "loose.keras", with_views([third], "center")),  # outside a run folder: numbered
        (run / "model.keras", with_views([second], "center")),  # the run given twice: its trunk taken once
    ]
    trunks = distinct_trunks(models)
    assert [trunk.name for trunk in trunks] == ["tiny", "tiny_seed23", "tiny_2"]
    for trunk, source in zip(trunks, (first, second, third), strict=True):
        for ours, theirs in zip(trunk.get_weights(), source.get_weights(), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    ensemble = with_views(trunks, "center", name="ensemble")  # distinct names: they can be served together
    assert [trunk.name for trunk in trunks_of(ensemble)] == ["tiny", "tiny_seed23", "tiny_2"]
    faces = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    expected = np.mean([np.asarray(source(faces)) for source in (first, second, third)], axis=0)
    np.testing.assert_allclose(np.asarray(ensemble(faces)), expected, atol=1e-6)
