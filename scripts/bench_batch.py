"""Benchmark: batch analysis (fer_core.batch) with 1 and 2 workers per engine, against the PyPI `fer`
library's pipeline (fer_pipeline.py) on the same photos and clips, in one run.

    photos/s     a folder of 640x480 photos, one FER2013 test face (170 px) each on a textured background
    frames/s     two clips (640x480, 25 fps) with one face drifting across
    start-up     until every worker had built its predictor (Ray: ray.init and the actors included)
    peak RSS     of the largest process: the job's, or one of its workers (local processes or Ray actors:
                 each reports its own peak with its results; job.json's "memory")

Each configuration runs as its own ``python -m fer_core batch`` process (a fresh job folder); photos/s and
frames/s count from the job's start, start-up included, as a user sees it, and also without start-up
(nor the ``ray.shutdown()`` of a Ray the job started: ``teardown_s`` in job.json). Ray runs two ways:
``ray``, each job starting a Ray of its own (as ``--engine ray`` alone does), and ``ray-cluster``, the
jobs joining a one-node Ray started before them (``ray start --head``, ``--address auto``), as on a
cluster that is already up: a Ray just started keeps starting its own processes for seconds after the
actors are ready, which the first way counts against the job.
`fer` runs one frame at a time in this process, as its ``detect_emotions`` does. Not a test: timings
on a shared machine are noisy: ``--repeats`` runs each configuration that many times and reports medians,
then the issue's targets as ratios of them; compare ratios.

    python scripts/bench_batch.py --photos 400 --clip-seconds 40 --repeats 3   # the README's table (medians)
    python scripts/bench_batch.py --photos 200 --clip-seconds 60 --fer-dir /tmp/ferpkg/unpacked/fer/data
    python scripts/bench_batch.py --photos 20 --clip-seconds 4 --engines local     # a quick look
    python scripts/bench_batch.py --long-clip-minutes 10 --skip-throughput        # memory over a long clip
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import numpy as np
from fer_pipeline import DEFAULT_FER_DIR, FerPipeline, fer_dir_or_exit
from scenes import load_faces, paste, textured_background

from fer_core.detect import Box
from fer_core.settings import PROJECT_ROOT, fer2013_location
from fer_core.video import AnnotatedVideoWriter, read_frames

FACE_SIZE = 170
CLIP_FPS = 25.0

JOB_SCRIPT = """
import json, sys, time
from fer_core.batch import analyze_batch, read_job, BatchSettings
started = time.perf_counter()
settings = BatchSettings(model=sys.argv[5] or None, every=int(sys.argv[6]))
summary = analyze_batch([sys.argv[1]], sys.argv[2], settings, workers=int(sys.argv[3]), engine=sys.argv[4],
                        address=sys.argv[7] or None)
elapsed = time.perf_counter() - started
job = read_job(sys.argv[2])
rss_mb = max(job.job_peak_rss_mb, job.worker_peak_rss_mb)  # each worker reports its own (job.json: memory)
print(json.dumps({"elapsed_s": elapsed, "startup_s": job.startup_s, "teardown_s": job.teardown_s, "files": summary.files_ok,
                  "frames": summary.frames, "faces": summary.faces, "peak_rss_mb": rss_mb}))
"""


def make_inputs(folder: Path, fer2013: Path, photos: int, clip_seconds: float) -> tuple[Path, Path]:
    faces = load_faces(fer2013, "test", per_class=max(1, photos // 7 + 1), seed=3)
    photo_dir, clip_dir = folder / "photos", folder / "clips"
    photo_dir.mkdir()
    clip_dir.mkdir()
    rng = np.random.default_rng(3)
    for index in range(photos):
        frame = textured_background(rng)
        box = Box(int(rng.integers(0, 640 - FACE_SIZE)), int(rng.integers(0, 480 - FACE_SIZE)), FACE_SIZE, FACE_SIZE)
        paste(frame, faces[index % len(faces)][0], box)
        cv2.imwrite(str(photo_dir / f"photo{index:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
    for clip in range(2):
        make_clip(clip_dir / f"clip{clip}.mp4", faces, clip_seconds, rng, first_face=clip)
    return photo_dir, clip_dir


def make_clip(path: Path, faces: list[Any], seconds: float, rng: np.random.Generator, first_face: int = 0) -> Path:
    """A 640x480 clip at CLIP_FPS with one face drifting across a textured background."""
    background = textured_background(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    with AnnotatedVideoWriter(path, 640, 480, CLIP_FPS) as writer:
        for index in range(int(seconds * CLIP_FPS)):
            frame = background.copy()
            x = 40 + (index * 3) % (640 - FACE_SIZE - 80)
            paste(frame, faces[(first_face + index // 50) % len(faces)][0], Box(x, 150, FACE_SIZE, FACE_SIZE))
            writer.write(frame)
    return path


def memory_over_length(folder: Path, fer2013: Path, minutes: float, model: str) -> list[tuple[float, dict[str, float]]]:
    """Peak RSS of one local worker's job on a clip of ``minutes`` and on one a tenth as long (a frame a
    second analysed, every frame decoded): flat memory means the two peaks are close."""
    faces = load_faces(fer2013, "test", per_class=2, seed=3)
    rows = []
    for length in (minutes / 10, minutes):
        clip = make_clip(folder / f"long{length:g}" / "clip.mp4", faces, length * 60, np.random.default_rng(5))
        result = run_job(clip.parent, folder / f"long{length:g}-job", 1, "local", model, every=int(CLIP_FPS))
        rows.append((length, result))
        print(f"done: the {length:g}-minute clip", file=sys.stderr, flush=True)
    return rows


def run_job(inputs: Path, out: Path, workers: int, engine: str, model: str, every: int = 1) -> dict[str, float]:
    """One job in its own process; engine "ray-cluster" joins the Ray started by :func:`ray_cluster`."""
    address = "auto" if engine == "ray-cluster" else ""
    engine = "ray" if engine == "ray-cluster" else engine
    result = subprocess.run(
        [sys.executable, "-c", JOB_SCRIPT, str(inputs), str(out), str(workers), engine, model, str(every), address],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"{engine} x{workers} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def ray_cluster(cpus: int) -> Iterator[float]:
    """A one-node Ray cluster (``ray start --head``) for the jobs to join, as on a cluster that is already
    up; yields the seconds ``ray start`` took."""
    ray_command = str(Path(sys.executable).parent / "ray")
    started = time.perf_counter()
    subprocess.run(
        [ray_command, "start", "--head", f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    try:
        yield time.perf_counter() - started
    finally:
        subprocess.run([ray_command, "stop", "--force"], capture_output=True, check=False)


def fer_rates(fer: FerPipeline, photo_dir: Path, clip_dir: Path) -> tuple[float, float]:
    photos = sorted(photo_dir.glob("*.jpg"))
    started = time.perf_counter()
    for path in photos:
        fer.process(cv2.imread(str(path)))
    photo_rate = len(photos) / (time.perf_counter() - started)
    frames = 0
    started = time.perf_counter()
    for clip in sorted(clip_dir.glob("*.mp4")):
        for _, bgr_frame in read_frames(clip):
            fer.process(bgr_frame)
            frames += 1
    return photo_rate, frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--clip-seconds", type=float, default=20.0, help="length of each of the two clips")
    parser.add_argument(
        "--engines",
        default="local,ray,ray-cluster",
        help="local; ray (each job starts a Ray of its own); ray-cluster (the jobs join one started before them)",
    )
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration; the table has medians")
    parser.add_argument("--model", default="", help="a model file or run folder (default: promoted, else shipped)")
    parser.add_argument("--fer-dir", type=Path, default=DEFAULT_FER_DIR)
    parser.add_argument("--fer2013", type=Path, default=None)
    parser.add_argument(
        "--long-clip-minutes",
        type=float,
        default=0.0,
        help="also measure peak memory on a clip this long against one a tenth as long (e.g. 10)",
    )
    parser.add_argument("--skip-throughput", action="store_true", help="only the long-clip memory measurement")
    args = parser.parse_args()
    fer2013 = args.fer2013 or fer2013_location()
    if fer2013 is None:
        raise SystemExit("FER2013 is needed for the faces: pass --fer2013 or set FER2013_DIR")
    if args.long_clip_minutes > 0:
        with tempfile.TemporaryDirectory(prefix="bench-batch-long-") as temporary:
            memory = memory_over_length(Path(temporary), fer2013, args.long_clip_minutes, args.model)
        print("\n| clip | frames decoded | frames analysed | seconds | peak RSS MB |\n|---|---|---|---|---|")
        for minutes, result in memory:
            decoded = int(minutes * 60 * CLIP_FPS)
            print(
                f"| {minutes:g} min | {decoded} | {result['frames']} | {result['elapsed_s']:.0f} | {result['peak_rss_mb']:.0f} |"
            )
    if args.skip_throughput:
        return
    fer = FerPipeline(fer_dir_or_exit(args.fer_dir))
    measures: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as temporary:
        folder = Path(temporary)
        photo_dir, clip_dir = make_inputs(folder, fer2013, args.photos, args.clip_seconds)
        for engine in args.engines.split(","):
            with ray_cluster(2) if engine == "ray-cluster" else contextlib.nullcontext(0.0) as cluster_start_s:
                if cluster_start_s:
                    print(f"ray start --head: {cluster_start_s:.1f} s", file=sys.stderr, flush=True)
                for run in range(args.repeats):
                    for workers in map(int, args.workers.split(",")):
                        name = f"{engine}{workers}-{run}"
                        photos = run_job(photo_dir, folder / f"{name}-photos", workers, engine, args.model)
                        video = run_job(clip_dir, folder / f"{name}-clips", workers, engine, args.model)
                        measures.setdefault((engine, workers), []).append(rates(photos, video))
                        print(f"done: {engine} x{workers} ({run + 1}/{args.repeats})", file=sys.stderr, flush=True)
        fer_runs = [fer_rates(fer, photo_dir, clip_dir) for _ in range(args.repeats)]
    fer_photo_rate = statistics.median(photo for photo, _ in fer_runs)
    fer_frame_rate = statistics.median(frame for _, frame in fer_runs)
    runs = f", the median of {args.repeats} runs each" if args.repeats > 1 else ""
    print(f"\n{args.photos} photos, 2 clips of {args.clip_seconds:g} s at {CLIP_FPS:g} fps (640x480){runs}\n")
    print(
        "| engine | workers | photos/s | photos/s after start-up | frames/s | frames/s after start-up | start-up s | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    medians = {
        key: {field: statistics.median(run[field] for run in runs_) for field in runs_[0]}
        for key, runs_ in measures.items()
    }
    for (engine, workers), row in medians.items():
        print(
            f"| {engine} | {workers} | {row['photos']:.1f} | {row['photos_warm']:.1f} | {row['frames']:.1f} | "
            f"{row['frames_warm']:.1f} | {row['startup_s']:.2f} | {row['rss_mb']:.0f} |"
        )
    print(f"| fer pipeline | 1 (in process) | {fer_photo_rate:.1f} | | {fer_frame_rate:.1f} | | | |")
    print_ratios(medians, fer_photo_rate, fer_frame_rate)


def rates(photos: dict[str, float], video: dict[str, float]) -> dict[str, float]:
    """One run's measures: rates from the job's start, and "warm" ones without start-up and teardown."""
    return {
        "photos": photos["files"] / photos["elapsed_s"],
        "photos_warm": photos["files"] / max(1e-9, photos["elapsed_s"] - photos["startup_s"] - photos["teardown_s"]),
        "frames": video["frames"] / video["elapsed_s"],
        "frames_warm": video["frames"] / max(1e-9, video["elapsed_s"] - video["startup_s"] - video["teardown_s"]),
        "startup_s": max(photos["startup_s"], video["startup_s"]),
        "rss_mb": max(photos["peak_rss_mb"], video["peak_rss_mb"]),
    }


def print_ratios(medians: dict[tuple[str, int], dict[str, float]], fer_photos: float, fer_frames: float) -> None:
    """The issue's targets as ratios of the medians (after start-up)."""
    local1, local2 = medians.get(("local", 1)), medians.get(("local", 2))
    print()
    if local1 and local2:
        print(
            f"- local, 1 -> 2 workers: {local2['photos_warm'] / local1['photos_warm']:.2f}x on photos, "
            f"{local2['frames_warm'] / local1['frames_warm']:.2f}x on frames (target 1.8x)"
        )
    for engine in ("ray", "ray-cluster"):
        ray2 = medians.get((engine, 2))
        if ray2 and local2:
            print(
                f"- {engine} against local at 2 workers: {ray2['photos_warm'] / local2['photos_warm'] - 1:+.0%} on photos, "
                f"{ray2['frames_warm'] / local2['frames_warm'] - 1:+.0%} on frames (target within 15 %)"
            )
    if local2:
        print(
            f"- local at 2 workers against `fer`: {local2['photos_warm'] / fer_photos:.1f}x on photos "
            f"({local2['photos'] / fer_photos:.1f}x from the start), {local2['frames_warm'] / fer_frames:.1f}x on "
            "frames (target 4x on photos)"
        )


if __name__ == "__main__":
    main()
