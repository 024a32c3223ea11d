"""``python -m fer_core``: emotions of every face in images and video files, for scripts.

    python -m fer_core predict photo1.jpg photo2.png --json          # one JSON list, an object per image
    python -m fer_core predict group.jpg --csv faces.csv --detector haar
    python -m fer_core video clip.mp4 --csv clip.csv --json clip.json --output clip-annotated.mp4

Both use the detection presets of the app (``fer_core.detect.PHOTO_PRESET`` and ``VIDEO_PRESET``),
so a photo gives the same faces here, in ``fer_core.load_predictor()`` and on the Photos page.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fer_core import native_log
from fer_core.detect import DETECTORS, MIN_FACE_RANGE, PHOTO_PRESET, VIDEO_PRESET, DetectionPreset
from fer_core.errors import FerError
from fer_core.labels import DEFAULT_THRESHOLD, label_text
from fer_core.tracking import DEFAULT_SMOOTHING

EXIT_ERROR = 1
EXIT_USAGE = 2
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".m4v")  # the annotated copy is H.264 in MP4, which every browser plays


class UsageError(FerError):
    """Options that cannot work together, found before any work: exit 2, as argparse's own errors."""


def _add_detection_options(parser: argparse.ArgumentParser, preset: DetectionPreset) -> None:
    parser.add_argument(
        "--detector", choices=DETECTORS, default=preset.detector, help=f"face detector (default {preset.detector})"
    )
    parser.add_argument(
        "--min-face",
        type=_bounded_int(*MIN_FACE_RANGE),
        default=preset.min_face_size,
        help=f"smallest face to find, in pixels ({MIN_FACE_RANGE[0]}-{MIN_FACE_RANGE[1]}, default {preset.min_face_size})",
    )
    parser.add_argument(
        "--no-align", action="store_true", help="do not turn faces upright by their eyes before classifying"
    )
    parser.add_argument("--model", type=Path, help="a model file or run folder (default: promoted, else shipped)")


def _bounded_int(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _fraction(*, open_top: bool = False) -> Any:
    """A number in [0, 1] (or [0, 1) with ``open_top``); NaN and infinities are refused."""
    top = ")" if open_top else "]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (0.0 <= value < 1.0 if open_top else 0.0 <= value <= 1.0):
            raise argparse.ArgumentTypeError(f"must be in [0, 1{top}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fer_core", description="Facial expression recognition on images and video files."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="find and classify every face in each image")
    predict.add_argument("images", nargs="+", type=Path, help="image files (jpg, png, webp, bmp, tiff)")
    _add_detection_options(predict, PHOTO_PRESET)
    predict.add_argument("--whole-image", action="store_true", help="classify each whole image as one face (crops)")
    predict.add_argument("--tta", action="store_true", help="average with the mirrored face")
    predict.add_argument(
        "--threshold", type=_fraction(), default=DEFAULT_THRESHOLD, help="below this confidence a face is 'uncertain'"
    )
    predict.add_argument("--json", action="store_true", help="print one JSON list, one object per image")
    predict.add_argument("--csv", type=Path, help="also write one CSV row per face to this file")

    video = commands.add_parser("video", help="follow and classify every face through a video file")
    video.add_argument("clip", type=Path, help="a video file (mp4, webm, mov, avi, mkv)")
    _add_detection_options(video, VIDEO_PRESET)
    video.add_argument("--csv", type=Path, help="one row per face per analysed frame")
    video.add_argument("--json", type=Path, help="the clip, a summary per face and every record")
    video.add_argument("--output", type=Path, help="an annotated copy (.mp4: H.264, same frame rate and count)")
    video.add_argument("--max-seconds", type=float, help="analyse only the first seconds of the clip")
    video.add_argument(
        "--threshold", type=_fraction(), default=DEFAULT_THRESHOLD, help="below this confidence a face is 'uncertain'"
    )
    video.add_argument(
        "--smoothing",
        type=_fraction(open_top=True),
        default=DEFAULT_SMOOTHING,
        help="weight of each face's past probabilities, in [0, 1)",
    )
    for command in commands.choices.values():
        command.add_argument("--verbose", action="store_true", help="also show LiteRT's log lines")
    return parser


def _preset(args: argparse.Namespace, base: DetectionPreset) -> DetectionPreset:
    return base.with_options(detector=args.detector, min_face_size=args.min_face, align=not args.no_align)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    native_log.VERBOSE = args.verbose
    try:
        return int(COMMANDS[args.command](args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE if args.command == "predict" else EXIT_ERROR
    except OSError as error:  # an output that cannot be written (PyAV's errors are OSErrors too)
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file, under any spelling (``./a``, ``../x/a``, a link, a hard link)."""
    try:
        if first.exists() and second.exists():
            return first.samefile(second)
    except OSError:
        pass
    return first.resolve() == second.resolve()


def check_outputs(inputs: Sequence[Path], outputs: Sequence[tuple[str, Path | None]]) -> None:
    """Refuse, before any work, an output that is one of the inputs (it would be overwritten), two
    outputs that are one file (the second would replace the first), and an output that cannot be written
    (a folder, a missing folder, a read-only place): each message names the option and the path."""
    named = [(option, path) for option, path in outputs if path is not None]
    for option, path in named:
        for source in inputs:
            if _same_file(path, source):
                raise UsageError(
                    f"{option} {path} is the input file {source}: it would be overwritten; choose another name"
                )
    for (first_option, first), (second_option, second) in itertools.combinations(named, 2):
        if _same_file(first, second):
            raise UsageError(f"{first_option} and {second_option} are the same file ({first}): give each its own name")
    for option, path in named:
        _check_writable(option, path)


def _check_writable(option: str, path: Path) -> None:
    if path.is_dir():
        raise FerError(f"cannot write {option} {path}: it is a folder; give a file name inside it")
    if not path.resolve().parent.is_dir():
        raise FerError(f"cannot write {path}: the folder {path.parent} does not exist")
    try:
        if path.exists():
            with path.open("r+b"):  # opened for writing, not truncated
                pass
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            path.unlink()
    except OSError as error:
        raise FerError(f"cannot write {option} {path}: {error.strerror or error}") from None


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file beside ``path``: a failed write leaves what was there."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise FerError(f"cannot write {path}: {error.strerror or error}") from None


def cmd_predict(args: argparse.Namespace) -> int:
    from fer_core.analysis import analyze_image, face_record, face_records, records_to_csv
    from fer_core.images import read_checked_image
    from fer_core.inference import load_predictor

    check_outputs(args.images, [("--csv", args.csv)])
    predictor = load_predictor(args.model, preset=_preset(args, PHOTO_PRESET))
    results: list[dict[str, Any]] = []
    for path in args.images:
        warning = None
        try:
            bgr_image, warning = read_checked_image(path)
            if warning and args.json:  # the faces are still found and kept, with the warning beside them
                print(f"warning: {path}: {warning}", file=sys.stderr)
            if args.whole_image:
                whole = predictor.predict_whole_image(bgr_image, tta=args.tta)
                faces = [face_record(whole, 1, file=str(path), threshold=args.threshold, whole_image=True)]
            else:
                analysis = analyze_image(bgr_image, predictor, tta=args.tta)
                faces = face_records(analysis, str(path), threshold=args.threshold, whole_image=False)
            results.append({"image": str(path), "faces": faces, "error": None, "warning": warning})
        except FerError as error:  # one bad image must not stop the others
            results.append({"image": str(path), "faces": [], "error": str(error), "warning": None})
    if args.csv:
        _write_text(args.csv, records_to_csv([face for result in results for face in result["faces"]]))
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            if result["error"]:
                print(f"{result['image']}: error: {result['error']}")
                continue
            count = len(result["faces"])
            print(f"{result['image']}: {count} face{'s' if count != 1 else ''}")
            if result["warning"]:
                print(f"  warning: {result['warning']}")
            for face in result["faces"]:
                result_text = label_text(face["label"], face["emotion"], face["confidence"])
                print(f"  #{face['face']} box={face['box']} {result_text}")
    return EXIT_ERROR if any(result["error"] for result in results) else 0


def cmd_video(args: argparse.Namespace) -> int:
    from fer_core.inference import load_classifier
    from fer_core.video import (
        DecodeReport,
        VideoSettings,
        analyze_video,
        probe_video,
        records_to_csv,
        records_to_json,
        summarize,
    )

    if args.max_seconds is not None and not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        raise FerError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
    if args.output is not None and args.output.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise UsageError(
            f"--output {args.output}: the annotated copy is an H.264 MP4 video; give a name ending in .mp4"
        )
    # checked now, not after minutes of analysis
    check_outputs([args.clip], [("--output", args.output), ("--csv", args.csv), ("--json", args.json)])
    info = probe_video(args.clip)
    classifier = load_classifier(args.model)
    settings = VideoSettings(preset=_preset(args, VIDEO_PRESET), smoothing=args.smoothing, threshold=args.threshold)
    total = info.frame_count
    if args.max_seconds is not None and info.fps:
        total = min(total or 10**9, int(args.max_seconds * info.fps) + 1)
    records = []
    times: list[float] = []  # each analysed frame's own time: durations follow the clip's pace
    report = DecodeReport()
    # The annotated copy is written beside its destination and moved there once the clip is done: a clip
    # that fails halfway leaves an earlier file of that name as it was.
    partial = args.output.with_name(f".{args.output.stem}.partial.mp4") if args.output else None
    try:
        with _progress(total, args.clip.name) as progress:
            for result in analyze_video(
                args.clip,
                classifier,
                settings,
                annotated_path=partial,
                max_seconds=args.max_seconds,
                info=info,
                report=report,
            ):
                records.extend(result.records)
                times.append(result.time_s)
                progress.update(1)
        if not times:
            raise FerError(f"{args.clip.name} has no frames that could be decoded")
        if partial is not None:
            os.replace(partial, args.output)
    except OSError as error:
        raise FerError(f"cannot write {args.output}: {error.strerror or error}") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    summaries = summarize(records, frame_times=times, end_s=report.end_s)
    if args.csv:
        _write_text(args.csv, records_to_csv(records))
    if args.json:
        _write_text(args.json, records_to_json(records, summaries, info, report))
    rate = len(times) / report.end_s if report.end_s > 0 else 0.0
    turned = f", turned {report.rotation}\N{DEGREE SIGN} upright" if report.rotation else ""
    print(
        f"{args.clip}: {len(times)} frames analysed ({report.end_s:.1f} s, {rate:.2f} fps on average{turned}), "
        f"{len(summaries)} face{'s' if len(summaries) != 1 else ''}"
    )
    warning = report.warning()
    if warning:
        print(f"  warning: {warning}")
    for summary in summaries:
        print(
            f"  face {summary.face}: {summary.first_s:.1f}-{summary.last_s:.1f} s, {summary.frames} frames, "
            f"mostly {summary.dominant} ({summary.seconds_by_label[summary.dominant]:.1f} s)"
        )
    for path in (args.csv, args.json, args.output):
        if path is not None:
            print(f"wrote {path}")
    return 0


def _progress(total: int | None, name: str) -> Any:
    """A progress bar on a terminal (stderr); nothing when the output goes to a file or a pipe."""
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="frame", disable=not sys.stderr.isatty(), leave=False)


COMMANDS = {"predict": cmd_predict, "video": cmd_video}
