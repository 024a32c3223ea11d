"""``python -m fer_core predict IMAGE... [--json]``: emotions of every face in images, for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fer_core.errors import FerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fer_core", description="Facial expression recognition on images.")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="find and classify every face in each image")
    predict.add_argument("images", nargs="+", type=Path, help="image files (jpg, png, webp, bmp, ...)")
    predict.add_argument("--model", type=Path, help="a .keras model or run folder (default: promoted, else shipped)")
    predict.add_argument("--min-face", type=int, default=40, help="smallest face to find, in pixels (default 40)")
    predict.add_argument("--whole-image", action="store_true", help="classify each whole image as one face (for crops)")
    predict.add_argument("--tta", action="store_true", help="average with the mirrored face")
    predict.add_argument("--json", action="store_true", help="print one JSON list, one object per image")
    return parser


def face_record(face: Any) -> dict[str, Any]:
    return {
        "box": [int(v) for v in face.box],
        "emotion": face.emotion,
        "confidence": round(float(face.confidence), 6),
        "scores": {emotion: round(score, 6) for emotion, score in face.scores_by_emotion().items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import cv2

    from fer_core.detect import HaarFaceDetector
    from fer_core.images import read_image
    from fer_core.inference import load_predictor

    try:
        predictor = load_predictor(
            args.model, detector=HaarFaceDetector(min_face_size=args.min_face, max_side=1024, include_profiles=True)
        )
    except (FerError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results: list[dict[str, Any]] = []
    for path in args.images:
        try:
            bgr_image = read_image(path)
            faces = (
                [predictor.predict_whole_image(bgr_image, tta=args.tta)]
                if args.whole_image
                else predictor.predict(bgr_image, tta=args.tta)
            )
            results.append({"image": str(path), "faces": [face_record(face) for face in faces], "error": None})
        except (FerError, cv2.error) as error:  # one bad image must not stop the others
            results.append({"image": str(path), "faces": [], "error": str(error)})
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            if result["error"]:
                print(f"{result['image']}: error: {result['error']}")
                continue
            print(f"{result['image']}: {len(result['faces'])} face(s)")
            for index, face in enumerate(result["faces"]):
                print(f"  #{index} box={face['box']} {face['emotion']} ({face['confidence']:.0%})")
    return 1 if any(result["error"] for result in results) else 0
