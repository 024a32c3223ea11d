"""Benchmark: faces found, false boxes and accuracy, YuNet against Haar, with and without alignment.

FER2013 faces are upscaled (40-300 pixels) and pasted into 640x480 textured scenes (``scenes.py``):
upright, rotated by 10-25 degrees either way, small, large, groups of two or three, squeezed as if the
head were turned, and scenes with no face (for false boxes). Each detector runs with the photo preset
the app uses (``fer_core.detect.PHOTO_PRESET``). A face counts as found when a box's centre lies in its
middle half at about its size; every other box is a false one. Accuracy is the shipped (or given)
model's on the faces each detector found, through the crop each pipeline makes:

    yunet+align   YuNet, each face turned upright by its five landmarks (the default)
    yunet         YuNet, the unrotated square around its box
    haar          Haar cascades, the unrotated square around its box
    original      the face's own 48x48 crop (what the model would see with a perfect detector)

    python scripts/bench_detection.py --split test --per-kind 60     # the README's table
    python scripts/bench_detection.py --split train                  # what the settings were chosen on

Not a test: it reports, it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from scenes import KINDS, Scene, load_faces, make_scenes, matches

from fer_core.align import face_crop
from fer_core.detect import PHOTO_PRESET, Detection, make_detector
from fer_core.inference import load_classifier
from fer_core.preprocess import to_gray
from fer_core.settings import fer2013_location


def evaluate(scenes: list[Scene], classifier, detector, *, align: bool) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for scene in scenes:
        detections: list[Detection] = detector.detect(scene.bgr_image)
        gray_image = to_gray(scene.bgr_image)
        used: set[int] = set()
        crops, labels = [], []
        for face in scene.faces:
            index = next(
                (i for i, found in enumerate(detections) if i not in used and matches(found.box, face.box)), None
            )
            rows[scene.kind]["faces"] += 1
            if index is None:
                continue
            used.add(index)
            rows[scene.kind]["found"] += 1
            crops.append(face_crop(gray_image, detections[index], align=align))
            labels.append(face.label)
        rows[scene.kind]["false"] += len(detections) - len(used)
        if crops:
            predicted = classifier.classify_batch(np.stack(crops)).argmax(axis=1)
            rows[scene.kind]["correct"] += float((predicted == np.array(labels)).sum())
    return rows


def original_accuracy(scenes: list[Scene], classifier) -> dict[str, float]:
    result = {}
    for kind in KINDS:
        faces = [face for scene in scenes if scene.kind == kind for face in scene.faces]
        if faces:
            predicted = classifier.classify_batch(np.stack([face.gray_face for face in faces])).argmax(axis=1)
            result[kind] = float((predicted == np.array([face.label for face in faces])).mean())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=fer2013_location(), help="FER2013 (Kaggle layout)")
    parser.add_argument("--split", default="test", choices=["train", "test"], help="faces to paste (default test)")
    parser.add_argument("--per-kind", type=int, default=60, help="scenes of each kind (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="a model file or run folder (default: the shipped or promoted one)")
    args = parser.parse_args()
    if args.data is None or not (args.data / args.split).is_dir():
        parser.error("FER2013 not found: pass --data or set FER2013_DIR")
    faces = load_faces(args.data, args.split, per_class=max(20, args.per_kind * 2), seed=args.seed)
    scenes = make_scenes(faces, args.per_kind, seed=args.seed)
    classifier = load_classifier(args.model)
    pipelines = {
        "yunet+align": evaluate(scenes, classifier, make_detector(PHOTO_PRESET), align=True),
        "yunet": evaluate(scenes, classifier, make_detector(PHOTO_PRESET), align=False),
        "haar": evaluate(scenes, classifier, make_detector(PHOTO_PRESET.with_options(detector="haar")), align=False),
    }
    original = original_accuracy(scenes, classifier)
    print(f"{len(scenes)} scenes from FER2013 {args.split} ({args.per_kind} per kind), model {classifier.source}\n")
    print("| scene | faces | YuNet found | Haar found | YuNet false boxes | Haar false boxes | "
          "acc. YuNet+align | acc. YuNet | acc. Haar | acc. original crop |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for kind in KINDS:
        aligned, plain, haar = (pipelines[name][kind] for name in ("yunet+align", "yunet", "haar"))
        for name in pipelines:
            for key, value in pipelines[name][kind].items():
                totals[name][key] += value

        def accuracy(row: dict[str, float]) -> str:
            return f"{row['correct'] / row['found']:.3f}" if row["found"] else "-"

        print(
            f"| {kind} | {int(aligned['faces'])} | {int(aligned['found'])} | {int(haar['found'])} | "
            f"{int(aligned['false'])} | {int(haar['false'])} | {accuracy(aligned)} | {accuracy(plain)} | "
            f"{accuracy(haar)} | {original.get(kind, float('nan')):.3f} |"
        )
    aligned, plain, haar = (totals[name] for name in ("yunet+align", "yunet", "haar"))
    print(
        f"| **all** | {int(aligned['faces'])} | {int(aligned['found'])} | {int(haar['found'])} | {int(aligned['false'])} | "
        f"{int(haar['false'])} | {aligned['correct'] / aligned['found']:.3f} | {plain['correct'] / plain['found']:.3f} | "
        f"{haar['correct'] / max(1, haar['found']):.3f} | |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
