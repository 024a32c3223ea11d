"""The GPU route's pieces that run here: the teachers that travel (scripts/gpu_train.py), the parallel
device command, distillation from several teachers of one crop size, and the candidate groups that
unpack (training.gpu_runs) chooses among."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def gpu_train() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "scripts" / "gpu_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_train"] = module
    spec.loader.exec_module(module)
    return module


def test_every_group_of_trunks_is_a_candidate_smallest_first() -> None:
    from training.gpu_runs import ensembles

    groups = ensembles(["a", "b", "c"])
    assert groups == [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"]]
    assert ensembles([]) == []


def test_the_parallel_device_command_runs_each_job_and_brings_back_few_files() -> None:
    script = gpu_train()
    jobs = (("q3", "--phases quality --seed 3"), ("f5", "--phases distill --seed 5"))
    command = script.parallel_command(jobs, budget_s=123)
    assert len(command) <= 2000  # the device tool's limit on a command
    for name, arguments in jobs:
        assert f'--out "$OUT/{name}" --budget 123 {arguments}' in command
    assert command.count(" & ") == len(jobs) and "wait;" in command
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION=0.45" in command  # the GPU's memory shared between the jobs
    assert "tar czf meta.tgz */report.json */remote.log" in command  # reports and logs come back as one file


@pytest.mark.slow
def test_teachers_travel_as_half_precision_weights_and_come_back_as_the_same_trunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    from training.architectures import build_model
    from training.views import with_views

    script = gpu_train()
    first, second = build_model("vgg40", width=8), build_model("vgg40", width=8)
    first = keras.Model(first.input, first.output, name="vgg40_seed1")
    second = keras.Model(second.input, second.output, name="vgg40_seed2")
    served = with_views([first, second], "flip", name="vgg40_flip")
    path = tmp_path / "served.keras"
    served.save(path)
    monkeypatch.setattr(script, "TEACHERS_FILE", tmp_path / "teachers.npz")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    script.pack_teachers(path)
    teachers, names = script.load_teachers(tmp_path / "teachers.npz")
    assert names == ["vgg40_seed1", "vgg40_seed2"]
    faces = np.random.default_rng(0).uniform(0, 255, (3, 40, 40, 1)).astype(np.float32)
    for original, loaded in zip((first, second), teachers, strict=True):
        assert not loaded.trainable
        np.testing.assert_allclose(loaded(faces, training=False), original(faces, training=False), atol=2e-2)


@pytest.mark.slow
def test_a_student_is_distilled_from_several_teachers_of_its_own_crop_size() -> None:
    from training.architectures import build_model
    from training.neutral import build_augmenter, build_distillation_model

    teachers = [build_model("tiny", input_size=40) for _ in range(2)] + [build_model("tiny")]
    distill = build_distillation_model(build_model("tiny", input_size=40), teachers, build_augmenter(0))
    assert distill.output_shape == (None, 14)
    crops = [layer for layer in distill.layers if layer.name.startswith("crop_")]
    assert len(crops) == 1  # one 40x40 crop, shared by the student and the two 40x40 teachers
    faces = np.random.default_rng(1).uniform(0, 255, (2, 48, 48, 1)).astype(np.float32)
    outputs = np.asarray(distill(faces, training=False))
    np.testing.assert_allclose(outputs[:, 7:].sum(axis=1), 1.0, atol=1e-4)  # the teachers' mean is a distribution
