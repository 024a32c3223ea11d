"""The engines that run the work units: a local pool of ``forkserver`` processes, or Ray actors."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fer_core.batch.inputs import Unit, UnitResult
from fer_core.batch.settings import (
    CALLS_PER_WORKER,
    ERROR,
    LOCAL_PHOTOS_PER_CALL,
    RAY_MISSING,
    RAY_PHOTOS_PER_CALL,
    BatchError,
    BatchSettings,
    ModelFiles,
)
from fer_core.batch.worker import BatchWorker, _summary
from fer_core.face_table import PHOTO

# An engine runs ``units`` on ``workers`` workers, hands each result to ``on_result`` (in this process),
# calls ``should_stop`` at least twice a second and returns when done or told to stop, with its start-up
# time in seconds (until the first worker was ready).

_WORKER: BatchWorker | None = None
RETRYABLE = "the worker analysing it died (crashed or killed); the next run of the job retries it"


def _init_local_worker(model: ModelFiles, settings: BatchSettings, job_pid: int) -> None:
    global _WORKER
    _die_with_job(job_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job's process stops the pool; a Ctrl+C reaches it alone
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _WORKER = BatchWorker(model, settings)


def _die_with_job(job_pid: int) -> None:
    """End this worker as soon as the job's process is gone (kill -9 included), so that no orphan goes on
    analysing: a daemon thread looks once a second (the worker's parent is the forkserver, not the job)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(job_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="fer-batch-watch-job", daemon=True).start()


def _run_local_call(units: list[Unit]) -> list[UnitResult]:
    if _WORKER is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("the worker was not initialised")
    return [_WORKER.run(unit) for unit in units]


def _run_local(
    units: Sequence[Unit],
    model: ModelFiles,
    settings: BatchSettings,
    workers: int,
    on_result: Callable[[UnitResult], None],
    should_stop: Callable[[], bool],
    run_call: Callable[[list[Unit]], list[UnitResult]] = _run_local_call,
) -> float:
    """The units on a pool of ``workers`` processes: photos ``LOCAL_PHOTOS_PER_CALL`` a call, at most
    ``CALLS_PER_WORKER`` calls in flight per worker (so the job's process waits on a few futures, not on
    one per unit of the batch). A worker that dies (a crash in a decoder, the kernel's OOM killer) breaks
    the pool: the units that were in flight are then run again one at a time on a pool of one, and a unit
    that kills its worker there too becomes an error row; the others go on as before. ``run_call`` is what
    a worker runs (tests pass one that crashes)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    started = time.perf_counter()
    startup = 0.0
    queue = deque(group_calls(units, LOCAL_PHOTOS_PER_CALL))
    suspects: list[Unit] = []  # in flight when a worker died: run again alone
    # forkserver: workers forked from a clean, single-threaded server, never from this process, whose
    # threads (OpenCV's pool, FFmpeg's decoders, a caller's) a fork would copy mid-lock and hang on
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["fer_core.batch", "fer_core.inference", "fer_core.video"])
    while (queue or suspects) and not should_stop():
        alone = bool(suspects)
        calls = deque([unit] for unit in suspects) if alone else queue
        suspects = []
        size = 1 if alone else min(workers, sum(map(len, queue)))
        executor = ProcessPoolExecutor(
            max_workers=size,
            mp_context=context,
            initializer=_init_local_worker,
            initargs=(model, settings, os.getpid()),
        )
        pending: dict[Future[list[UnitResult]], list[Unit]] = {}
        broken = False
        try:
            while pending or (calls and not broken):
                while calls and not broken and len(pending) < (1 if alone else size * CALLS_PER_WORKER):
                    try:
                        pending[executor.submit(run_call, calls[0])] = calls[0]
                    except BrokenProcessPool:
                        broken = True
                    else:
                        calls.popleft()
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    call = pending.pop(future)
                    try:
                        results = future.result()
                    except BrokenProcessPool:
                        broken = True
                        if alone:  # it killed a worker twice, the second time on its own
                            summary = {**_summary(call[0]), "status": ERROR, "error": RETRYABLE, "retry": True}
                            results = [UnitResult(call[0], None, summary)]
                        else:
                            suspects += call
                            continue
                    # start-up: until the first worker was ready (its first call's own time taken off)
                    worked = sum(result.summary.get("seconds", 0.0) for result in results)
                    startup = startup or max(0.0, time.perf_counter() - started - worked)
                    for result in results:
                        on_result(result)
                if should_stop():
                    return startup
        finally:
            _stop_pool(executor)
        if alone:
            suspects = [unit for call in calls for unit in call]  # not run yet: another suspect broke this pool
    return startup


def _stop_pool(executor: Any) -> None:
    """Shut the pool down now: pending units cancelled, the workers (which ignore SIGTERM) killed."""
    processes = list(getattr(executor, "_processes", {}).values())  # the executor has no public terminate
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            if process.is_alive():
                process.kill()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=5)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BatchError(RAY_MISSING) from None
    return ray


class RayBatchWorker:
    """The Ray actor: one :class:`BatchWorker`, built once from the model bytes the object store sends."""

    def __init__(self, model: ModelFiles, settings: BatchSettings) -> None:
        self.worker = BatchWorker(model, settings)

    def ready(self) -> bool:
        return True

    def run(self, units: list[Unit]) -> list[UnitResult]:
        return [self.worker.run(unit) for unit in units]


def group_calls(units: Sequence[Unit], photos_per_call: int) -> list[list[Unit]]:
    """The units grouped into worker calls: photos ``photos_per_call`` at a time (a call's round trip costs
    about as much as a small photo's analysis), every video segment and error on its own."""
    calls: list[list[Unit]] = []
    for unit in units:
        if unit.kind == PHOTO and calls and calls[-1][0].kind == PHOTO and len(calls[-1]) < photos_per_call:
            calls[-1].append(unit)
        else:
            calls.append([unit])
    return calls


def ray_runtime_env() -> dict[str, Any]:
    """What Ray ships to each worker: the fer_core package (code only; the model and the detector's weights
    go through the object store). A caller that starts Ray itself passes it: ``ray.init(...,
    runtime_env=ray_runtime_env())`` (Ray uploads local folders only at that level)."""
    return {"py_modules": [str(Path(__file__).resolve().parents[1])]}  # fer_core/, above this batch/ folder


def _run_ray(
    units: Sequence[Unit],
    model: ModelFiles,
    settings: BatchSettings,
    workers: int | None,
    address: str | None,
    on_result: Callable[[UnitResult], None],
    should_stop: Callable[[], bool],
    timings: dict[str, Any] | None = None,
) -> float:
    """Run the units on Ray actors; returns the start-up seconds. Stopping a Ray started here is timed
    into ``timings["teardown_s"]`` (about a second and a half on 2 cores)."""
    ray = _import_ray()
    started = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, runtime_env=ray_runtime_env(), logging_level="WARNING", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise BatchError(f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {error}") from None
    actors: list[Any] = []
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        count = max(1, min(count, len(units)))
        if not units:
            return 0.0
        model_ref = ray.put(model)
        actor_class = ray.remote(num_cpus=1)(RayBatchWorker)
        actors = [actor_class.remote(model_ref, settings) for _ in range(count)]
        ray.get([actor.ready.remote() for actor in actors])
        startup = time.perf_counter() - started
        queue = group_calls(units, RAY_PHOTOS_PER_CALL)
        dead: list[Any] = []
        idle = [*actors, *actors]  # two calls queued per actor: the next units are there when one ends
        pending: dict[Any, tuple[Any, list[Unit]]] = {}
        while queue or pending:
            while idle and queue:
                actor, call = idle.pop(), queue.pop(0)
                pending[actor.run.remote(call)] = (actor, call)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for reference in ready:
                actor, call = pending.pop(reference)
                try:
                    results = ray.get(reference)
                    idle.append(actor)
                except ray.exceptions.RayError as error:
                    reason = f"{RETRYABLE} ({type(error).__name__}: {str(error)[:300]})"
                    results = [
                        UnitResult(unit, None, {**_summary(unit), "status": ERROR, "error": reason, "retry": True})
                        for unit in call
                    ]
                    if actor not in dead:  # its other queued call fails too: one replacement per actor
                        dead.append(actor)
                        with contextlib.suppress(Exception):
                            ray.kill(actor)
                        replacement = actor_class.remote(model_ref, settings)
                        actors.append(replacement)
                        idle += [replacement, replacement]
                for result in results:
                    on_result(result)
            if should_stop():
                break
        return startup
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started_here:
            stopping = time.perf_counter()
            ray.shutdown()
            if timings is not None:
                timings["teardown_s"] = round(time.perf_counter() - stopping, 3)
