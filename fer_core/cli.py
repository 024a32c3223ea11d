"""``python -m fer_core``: emotions of every face in images and video files, for scripts.

    python -m fer_core predict photo1.jpg photo2.png --json          # one JSON list, an object per image
    python -m fer_core predict group.jpg --csv faces.csv --detector haar
    python -m fer_core video clip.mp4 --csv clip.csv --json clip.json --output clip-annotated.mp4
    python -m fer_core batch sessions/ more/*.jpg --out results/job1 --workers 2 --fps 5 --csv

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
from typing import TYPE_CHECKING, Any, NamedTuple

from fer_core import native_log
from fer_core.batch import DEFAULT_SEGMENT_S
from fer_core.detect import DETECTORS, MIN_FACE_RANGE, PHOTO_PRESET, VIDEO_PRESET, DetectionPreset
from fer_core.errors import FerError
from fer_core.file_types import IMAGE_SUFFIXES, VIDEO_SUFFIXES, suffix_names
from fer_core.files import write_text_atomically
from fer_core.images import MAX_PIXELS
from fer_core.labels import DEFAULT_THRESHOLD, label_text
from fer_core.tracking import DEFAULT_SMOOTHING

if TYPE_CHECKING:
    from fer_core.face_table import FaceRecord
    from fer_core.inference import EmotionClassifier
    from fer_core.video import DecodeReport, FaceSummary, VideoInfo, VideoSettings

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 130  # a batch stopped by SIGTERM or Ctrl+C (its job.json says "stopped")
VIDEO_OUTPUT_SUFFIXES = (".mp4", ".m4v")  # the annotated copy is H.264 in MP4, which every browser plays


class UsageError(FerError):
    """Options that cannot work together, found before any work: exit 2, as argparse's own errors."""


def _add_detection_options(
    parser: argparse.ArgumentParser, preset: DetectionPreset, *, min_face_default: int | None = -1
) -> None:
    """The shared detection flags; ``min_face_default`` None leaves the smallest face to each input's preset."""
    parser.add_argument(
        "--detector", choices=DETECTORS, default=preset.detector, help=f"face detector (default {preset.detector})"
    )
    min_face = preset.min_face_size if min_face_default == -1 else min_face_default
    parser.add_argument(
        "--min-face",
        type=_bounded_int(*MIN_FACE_RANGE),
        default=min_face,
        help=f"smallest face to find, in pixels ({MIN_FACE_RANGE[0]}-{MIN_FACE_RANGE[1]}, default "
        + (
            f"{min_face})"
            if min_face is not None
            else f"{PHOTO_PRESET.min_face_size} in photos, {VIDEO_PRESET.min_face_size} in video)"
        ),
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
    predict.add_argument(
        "images", nargs="+", type=Path, help=f"image files ({suffix_names(IMAGE_SUFFIXES)}; TIFF, GIF, PGM too)"
    )
    _add_detection_options(predict, PHOTO_PRESET)
    predict.add_argument("--whole-image", action="store_true", help="classify each whole image as one face (crops)")
    predict.add_argument("--tta", action="store_true", help="average with the mirrored face")
    predict.add_argument(
        "--threshold", type=_fraction(), default=DEFAULT_THRESHOLD, help="below this confidence a face is 'uncertain'"
    )
    predict.add_argument("--json", action="store_true", help="print one JSON list, one object per image")
    predict.add_argument("--csv", type=Path, help="also write one CSV row per face to this file")

    video = commands.add_parser("video", help="follow and classify every face through a video file")
    video.add_argument("clip", type=Path, help=f"a video file ({suffix_names(VIDEO_SUFFIXES)})")
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

    batch = commands.add_parser(
        "batch",
        help="analyse folders of photos and videos into a resumable job folder (Parquet, CSV)",
        description="Analyse many photos and videos into a job folder: job.json, faces.parquet, files.parquet, "
        "tracks.parquet (and CSVs with --csv). Re-running the same command resumes; SIGTERM or Ctrl+C stops.",
    )
    batch.add_argument(
        "inputs", nargs="+", help="files, folders (recursive), glob patterns or a CSV with a path column"
    )
    batch.add_argument("--out", type=Path, required=True, help="the job folder (created; must not lie in an input)")
    batch.add_argument("--workers", type=_bounded_int(1, 4096), help="parallel workers (default: the CPU count)")
    batch.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    batch.add_argument("--address", help="the Ray cluster: auto, or ray://host:10001 (default: a new local Ray)")
    sampling = batch.add_mutually_exclusive_group()
    sampling.add_argument("--every", type=_bounded_int(1, 100_000), default=1, help="analyse every Nth video frame")
    sampling.add_argument("--fps", type=float, help="analyse at most this many video frames a second")
    batch.add_argument("--csv", action="store_true", help="also write faces.csv, files.csv and tracks.csv")
    _add_detection_options(batch, PHOTO_PRESET, min_face_default=None)
    batch.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="below this confidence a face is 'uncertain'"
    )
    batch.add_argument(
        "--smoothing", type=float, default=DEFAULT_SMOOTHING, help="weight of each video face's past probabilities"
    )
    batch.add_argument(
        "--segment-seconds",
        type=float,
        default=DEFAULT_SEGMENT_S,
        help=f"cut longer videos into segments this long, spread over the workers (0: never; default {DEFAULT_SEGMENT_S:g})",
    )
    batch.add_argument(
        "--max-pixels", type=_bounded_int(1, 10**10), default=MAX_PIXELS, help="refuse larger photos and video frames"
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
        return EXIT_USAGE if args.command in ("predict", "batch") else EXIT_ERROR
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
    try:
        write_text_atomically(path, text)
    except OSError as error:
        raise FerError(str(error)) from None


def cmd_predict(args: argparse.Namespace) -> int:
    from fer_core.analysis import analyze_image, face_record, face_records
    from fer_core.face_table import records_to_csv
    from fer_core.images import read_checked_image
    from fer_core.inference import load_predictor

    check_outputs(args.images, [("--csv", args.csv)])
    predictor = load_predictor(args.model, preset=_preset(args, PHOTO_PRESET))
    results: list[dict[str, Any]] = []
    records: list[FaceRecord] = []
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
            records += faces
            results.append(
                {"image": str(path), "faces": [face.as_dict() for face in faces], "error": None, "warning": warning}
            )
        except FerError as error:  # one bad image must not stop the others
            results.append({"image": str(path), "faces": [], "error": str(error), "warning": None})
    if args.csv:
        _write_text(args.csv, records_to_csv(records))
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
    from fer_core.video import VideoSettings, probe_video, summarize

    _check_video_arguments(args)  # checked now, not after minutes of analysis
    info = probe_video(args.clip)
    classifier = load_classifier(args.model)
    settings = VideoSettings(preset=_preset(args, VIDEO_PRESET), smoothing=args.smoothing, threshold=args.threshold)
    clip = _analyze_clip(args, classifier, settings, info)
    summaries = summarize(clip.records, frame_times=clip.frame_times, end_s=clip.report.end_s)
    _write_video_tables(args, clip, summaries, info)
    _print_video_summary(args, clip, summaries)
    return 0


class _ClipAnalysis(NamedTuple):
    records: list[FaceRecord]
    frame_times: list[float]  # each analysed frame's own time: durations follow the clip's pace
    report: DecodeReport


def _check_video_arguments(args: argparse.Namespace) -> None:
    if args.max_seconds is not None and not (math.isfinite(args.max_seconds) and args.max_seconds > 0):
        raise FerError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
    if args.output is not None and args.output.suffix.lower() not in VIDEO_OUTPUT_SUFFIXES:
        raise UsageError(
            f"--output {args.output}: the annotated copy is an H.264 MP4 video; give a name ending in .mp4"
        )
    check_outputs([args.clip], [("--output", args.output), ("--csv", args.csv), ("--json", args.json)])


def _analyze_clip(
    args: argparse.Namespace, classifier: EmotionClassifier, settings: VideoSettings, info: VideoInfo
) -> _ClipAnalysis:
    """Every frame of the clip (up to ``--max-seconds``) through the classifier, with a progress bar; the
    annotated copy (``--output``) is written beside its destination and moved there once the clip is done,
    so a clip that fails halfway leaves an earlier file of that name as it was."""
    from fer_core.video import DecodeReport, analyze_video

    total = info.frame_count
    if args.max_seconds is not None and info.fps:
        total = min(total or 10**9, int(args.max_seconds * info.fps) + 1)
    clip = _ClipAnalysis(records=[], frame_times=[], report=DecodeReport())
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
                report=clip.report,
            ):
                clip.records.extend(result.records)
                clip.frame_times.append(result.time_s)
                progress.update(1)
        if not clip.frame_times:
            raise FerError(f"{args.clip.name} has no frames that could be decoded")
        if partial is not None:
            os.replace(partial, args.output)
    except OSError as error:
        raise FerError(f"cannot write {args.output}: {error.strerror or error}") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
    return clip


def _write_video_tables(
    args: argparse.Namespace, clip: _ClipAnalysis, summaries: Sequence[FaceSummary], info: VideoInfo
) -> None:
    from fer_core.face_table import records_to_csv
    from fer_core.video import records_to_json

    if args.csv:
        _write_text(args.csv, records_to_csv(clip.records))
    if args.json:
        _write_text(args.json, records_to_json(clip.records, summaries, info, clip.report))


def _print_video_summary(args: argparse.Namespace, clip: _ClipAnalysis, summaries: Sequence[FaceSummary]) -> None:
    report = clip.report
    frames = len(clip.frame_times)
    rate = frames / report.end_s if report.end_s > 0 else 0.0
    turned = f", turned {report.rotation}\N{DEGREE SIGN} upright" if report.rotation else ""
    print(
        f"{args.clip}: {frames} frames analysed ({report.end_s:.1f} s, {rate:.2f} fps on average{turned}), "
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


def _progress(total: int | None, name: str) -> Any:
    """A progress bar on a terminal (stderr); nothing when the output goes to a file or a pipe."""
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="frame", disable=not sys.stderr.isatty(), leave=False)


def cmd_batch(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from fer_core.batch import BatchProgress, BatchSettings, analyze_batch

    settings = BatchSettings(
        model=str(args.model) if args.model is not None else None,
        detector=args.detector,
        min_face=args.min_face,
        align=not args.no_align,
        threshold=args.threshold,
        smoothing=args.smoothing,
        every=args.every,
        fps=args.fps,
        max_pixels=args.max_pixels,
        segment_s=args.segment_seconds,
    )
    stop = threading.Event()

    def on_signal(number: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl+C: do not wait any longer
            raise KeyboardInterrupt
        print(f"{signal.Signals(number).name}: stopping (run the same command again to resume)", file=sys.stderr)
        stop.set()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, on_signal)
    bar = _progress(None, "files")
    bar.unit = "file"
    logged = [0.0]

    def on_progress(update: BatchProgress) -> None:
        bar.total = update.files_total
        bar.n = update.files_done
        bar.set_postfix(frames_s=f"{update.frames_per_s:.0f}", errors=update.files_errors, refresh=False)
        bar.refresh()
        if bar.disable and time.monotonic() - logged[0] >= 5.0:  # a log (the app's Batch page): a line now and then
            logged[0] = time.monotonic()
            eta = f", ETA {update.eta_s:.0f} s" if update.eta_s is not None else ""
            print(f"{update.files_done}/{update.files_total} files, {update.frames} frames{eta}", flush=True)

    with bar:
        summary = analyze_batch(
            args.inputs,
            args.out,
            settings,
            workers=args.workers,
            engine=args.engine,
            address=args.address,
            progress=on_progress,
            csv=args.csv,
            stop=stop,
        )
    if summary.message:
        print(summary.message)
    print(
        f"{summary.state}: {summary.files_ok} of {summary.files_total} files analysed"
        + (f" ({summary.files_skipped} by an earlier run)" if summary.files_skipped else "")
        + f", {summary.files_errors} with errors, {summary.frames} video frames, {summary.faces} faces "
        f"in {summary.elapsed_s:.1f} s -> {summary.out_dir}"
    )
    if summary.state == "stopped":
        return EXIT_STOPPED
    return 0 if summary.files_ok else EXIT_ERROR


COMMANDS = {"predict": cmd_predict, "video": cmd_video, "batch": cmd_batch}
