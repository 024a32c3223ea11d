"""``python -m training``: train, evaluate, list and resume runs from the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_core import native_log, run_layout
from fer_core.errors import DatasetError, FerError
from fer_core.run_layout import LAST_CHECKPOINT, is_run_folder
from fer_core.serving import QUANTIZATIONS
from training.errors import TrainingFailed
from training.records import ACTIVE_STATES, RunState

if TYPE_CHECKING:
    from fer_core.data import FaceDataset
    from training.config import TrainConfig
    from training.runs import Run

EXIT_FAILED = 1  # a training that ran and failed
EXIT_USAGE = 2  # bad input: nothing was trained


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train and evaluate FER models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model into a new run folder")
    train.add_argument("--config", type=Path, help="a TOML file of settings; flags given here override it")
    add_setting_flags(train)
    train.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="start even while another training runs in the same runs folder (by default one at a time)",
    )
    # The launcher creates the run folder first (so the page knows it at once) and hands it over here;
    # the settings then come from that folder's config.json.
    train.add_argument("--into", type=Path, help=argparse.SUPPRESS)

    evaluate = commands.add_parser("evaluate", help="accuracy, macro-F1, per-class scores and confusion matrix")
    evaluate.add_argument(
        "--model", type=Path, help="a .keras model or a run folder (default: the promoted model, else the shipped one)"
    )
    evaluate.add_argument(
        "--data", required=True, help="'demo', a FER2013 folder, a folder of class folders or fer2013.csv"
    )
    evaluate.add_argument("--split", default="test", help="split to evaluate (default test)")
    evaluate.add_argument("--tta", action="store_true", help="average with the horizontally flipped face")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object to stdout")

    listing = commands.add_parser("runs", help="list runs with status and validation and test accuracy")
    listing.add_argument("--run-dir", dest="runs_dir", help="folder that holds the runs")
    listing.add_argument("--json", action="store_true")

    average = commands.add_parser(
        "average",
        help="average the weights of models of one architecture and re-estimate batch-norm statistics",
        description="Average the weights of one or more models of one architecture (checkpoints of a run, "
        "warm restarts) and re-estimate their batch-norm statistics on the clean training faces; the "
        "validation accuracy of each input and of the result is printed. One model: recalibration only.",
    )
    average.add_argument("models", nargs="+", type=Path, help=".keras files or run folders")
    average.add_argument("--data", required=True, help="the data the models were trained on (its train split is used)")
    average.add_argument("--output", type=Path, required=True, help="the .keras file to write")
    average.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    average.add_argument(
        "--recalibrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="re-estimate batch-norm statistics on clean training faces (default on)",
    )
    average.add_argument(
        "--val-fraction",
        type=setting_type("val_fraction"),
        help="as in training (default: the inputs' runs' own, else the training default)",
    )
    average.add_argument(
        "--seed",
        type=setting_type("seed"),
        help="the seed of the validation split, as in training (--split-seed, else --seed): the same validation "
        "faces (default: the inputs' runs' own, else 42)",
    )
    average.add_argument("--json", action="store_true", help="print one JSON object to stdout")

    export = commands.add_parser(
        "export",
        help="write the LiteRT copy of a model that the app and fer_core serve, with its calibration",
        description="Convert a .keras model (or a run folder's model) to the LiteRT copy the app, the library and "
        "the CLIs run, check that it gives the Keras model's probabilities, and fit its calibration temperature "
        "on the validation faces of --data (a run's own data by default).",
    )
    export.add_argument("model", type=Path, help="a .keras file or a run folder")
    export.add_argument(
        "--data", help="the data the model was trained on (default: a run's own; without data the temperature is 1)"
    )
    export.add_argument(
        "--val-fraction",
        type=setting_type("val_fraction"),
        help="as in training (default: the run's own, else the training default)",
    )
    export.add_argument(
        "--seed",
        type=setting_type("seed"),
        help="the seed of the validation split, as in training (--split-seed, else --seed; default: the run's own, "
        "else the training default)",
    )
    export.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="float32",
        help="dynamic: int8 weights, activations quantized at run time (several times faster on CPUs with "
        "int8 dot products); kept only if it agrees with the float model on 97%% of the validation faces and "
        "loses at most 0.3 points of accuracy (needs --data or a run folder)",
    )

    finish = commands.add_parser(
        "finish", help="export, calibrate and evaluate a run trained under another Keras backend (the trainer runs it)"
    )
    finish.add_argument("run", type=Path, help="the run folder")
    finish.add_argument("--stopped", action="store_true", help="the run was stopped: export its best model only")

    resume = commands.add_parser("resume", help="continue a run from its last epoch checkpoint")
    resume.add_argument("run", type=Path, help="the run folder")
    resume.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)  # by training.launcher
    resume.add_argument(
        "--allow-concurrent", action="store_true", help="resume even while another training runs in its runs folder"
    )
    for command in commands.choices.values():
        command.add_argument(
            "--verbose", action="store_true", help="also show TensorFlow's and LiteRT's start-up log lines"
        )
    return parser


SETTING_PARSERS = {"int": int, "int | None": int, "float": float, "float | None": float, "str": str}


def setting_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` for setting ``name``: converts the text and applies the setting's own
    bounds and choices (see training.config), so a bad flag is refused before anything starts."""
    from training.config import KIND_WORDS, ConfigError, checked_value, kind_of

    convert = SETTING_PARSERS[kind_of(name)]

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {KIND_WORDS[kind_of(name)]}") from None
        try:
            return checked_value(name, value)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name} ")) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per training setting, from its declaration in TrainConfig (help, choices, bounds).
    Every default is None: a flag not given leaves the value of --config, else the default."""
    from training.config import FIELDS, TrainConfig, bound_text, kind_of, option

    defaults = TrainConfig()
    for name in FIELDS:
        declared = option(name)
        flag = declared.flag or "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        shown = declared.default_text or (
            {True: "on", False: "off"}.get(default) if kind_of(name) == "bool" else default
        )
        help_text = f"{declared.help} (default {shown})".replace("%", "%%")  # argparse formats help with %
        if kind_of(name) == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        if declared.bounded:
            help_text += f"; {bound_text(declared.minimum)} to {bound_text(declared.maximum)}"  # type: ignore[arg-type]
        choices = declared.allowed() or None
        parser.add_argument(
            flag,
            dest=name,
            type=str if choices else setting_type(name),
            choices=choices,
            metavar=None if choices else {"int": "N", "int | None": "N", "str": "TEXT"}.get(kind_of(name), "X"),
            help=help_text,
        )


# Commands that run TensorFlow: it is started first, with the lines a user cannot act on left out.
TENSORFLOW_COMMANDS = frozenset({"train", "evaluate", "average", "export", "resume"})


def start_tensorflow(*, verbose: bool) -> None:
    """Import TensorFlow and look for GPUs (where "failed call to cuInit" comes from on a machine
    without one) while :func:`fer_core.native_log.filtered_stderr` leaves out their start-up lines;
    afterwards only its warnings and errors are shown. ``verbose``: everything is shown."""
    native_log.VERBOSE = verbose
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":  # e.g. JAX on a machine without TensorFlow
        return
    with native_log.filtered_stderr():
        try:
            import tensorflow as tf
        except ImportError:  # the trainer names what is missing, in its own words
            return
        tf.config.list_physical_devices("GPU")


def requested_backend(args: argparse.Namespace) -> str:
    """The Keras backend a train or resume command will use: its flag, its --config file, or the run's
    own settings; ``tensorflow`` when none says (or what says cannot be read: the command reports that)."""
    from fer_core.records import RecordError
    from training.config import ConfigError, load_config_file
    from training.runs import Run

    try:
        if args.command == "train":
            if args.backend is not None:
                return str(args.backend)
            if args.into is not None:
                return Run(args.into).config().settings.backend
            if args.config:
                return load_config_file(args.config).backend
        if args.command == "resume" and is_run_folder(args.run):
            return Run(args.run).config().settings.backend
    except (ConfigError, RecordError, OSError):
        pass
    return "tensorflow"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    native_log.VERBOSE = args.verbose
    if requested_backend(args) == "jax":
        os.environ["KERAS_BACKEND"] = "jax"  # before anything imports Keras (select_backend checks it again)
    if args.command in TENSORFLOW_COMMANDS:
        start_tensorflow(verbose=args.verbose)
    try:
        return int(COMMANDS[args.command](args))
    except TrainingFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (FerError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # a folder that cannot be written, a disk that is full
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def select_backend(name: str) -> None:
    """Make ``name`` the Keras backend of this process (``KERAS_BACKEND``), before Keras is imported; a
    process that already imported Keras with another backend cannot switch, and says so."""
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        raise ValueError(f"Keras is already running on {keras.backend.backend()} in this process; cannot use {name}")
    if name == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise ValueError(
                "--backend jax needs JAX: pip install jax==0.10.2 (requirements-dev.txt pins it)"
            ) from None
    os.environ["KERAS_BACKEND"] = name


def cmd_finish(args: argparse.Namespace) -> int:
    from training.finish import finish_run

    select_backend("tensorflow")
    finish_run(args.run, stopped=args.stopped)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from fer_core.records import RecordError
    from training.config import TrainConfig, config_from_mapping, load_config_file
    from training.runs import Run
    from training.trainer import train

    if args.into is not None:  # started by training.launcher, which made the run folder
        try:
            settings = Run(args.into).config().settings
        except RecordError as error:
            raise ValueError(f"cannot train into {args.into}: {error}") from None
        select_backend(settings.backend)
        return _report_run(train(settings, args.into))
    config = load_config_file(args.config) if args.config else TrainConfig()
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "into", "allow_concurrent", "verbose") and value is not None
    }
    config = config_from_mapping(overrides, config)
    if config.init_from:  # a model that cannot be started from is refused before a run folder is made
        from training.trainer import check_initial_model

        check_initial_model(config.init_from)
    if config.distill_from:  # so is a teacher that is not there
        from training.trainer import teacher_paths

        teacher_paths(config.distill_from)
    select_backend(config.backend)
    run_dir = _new_run_folder(config, allow_concurrent=args.allow_concurrent)
    try:
        train(config, run_dir)
    except (FerError, ValueError):
        # Bad input (data that cannot be trained on, a model to start from that does not fit): no
        # epoch was trained, so the folder holds nothing worth keeping.
        if not (run_dir / LAST_CHECKPOINT).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return _report_run(run_dir)


def _new_run_folder(config: TrainConfig, *, allow_concurrent: bool) -> Path:
    """The run folder, made only while no other training runs in the runs folder (as in the app),
    unless ``allow_concurrent``; the check and the folder are made under the launcher's lock."""
    from training import launcher
    from training.trainer import create_run

    with launcher.launch_lock(config.runs_path):
        if not allow_concurrent:
            _refuse_if_busy(config.runs_path)
        return create_run(config)


def _refuse_if_busy(runs_dir: Path, besides: Path | None = None) -> None:
    """One training at a time per runs folder, as in the app: ``ValueError`` naming the one that runs
    (``besides``: a run that may be active itself, which ``resume`` reports in its own words)."""
    from training import launcher, runs

    busy = runs.active_run(runs_dir)
    if busy is not None and (besides is None or busy.path.resolve() != besides.resolve()):
        raise ValueError(f"{launcher.TrainingBusyError(busy)} (--allow-concurrent starts it anyway)")


def cmd_resume(args: argparse.Namespace) -> int:
    from training.trainer import resume

    if not is_run_folder(args.run):
        raise ValueError(f"{args.run} is not a run folder (no config.json)")
    from fer_core.records import RecordError
    from training.runs import Run

    with contextlib.suppress(RecordError):  # resume says what is wrong with the run
        select_backend(Run(args.run).config().settings.backend)
    if args.launched or args.allow_concurrent:  # the launcher has checked (and marked the run queued)
        return _report_run(resume(args.run, launched=args.launched))
    from training import launcher, runs

    run = runs.Run(args.run)
    if run.status().state == RunState.FINISHED:
        raise ValueError(f"{run.name} has already finished; start a new run to train further")
    with launcher.launch_lock(args.run.parent):  # checked and claimed at once, as the app's Resume does
        _refuse_if_busy(args.run.parent, besides=args.run)
        if run.status().state in ACTIVE_STATES:
            raise ValueError(f"{run.name} is still running")
        runs.update_status(args.run, state=RunState.QUEUED, **runs.process_identity(os.getpid()), error=None)
    return _report_run(resume(args.run, launched=True))


def _report_run(run_dir: Path) -> int:
    from training.runs import Run, plural

    run = Run(run_dir)
    summary = run.summary()
    if summary.problem:
        print(f"run {run_dir} {summary.state_text}")
        return EXIT_FAILED
    text = f"run {run_dir} {summary.state}"
    metrics = run.metrics()
    if metrics:
        text += f": {metrics.split} accuracy {metrics.accuracy:.4f}, macro-F1 {metrics.macro_f1:.4f}"
    elif summary.state == RunState.STOPPED:
        text += f" after {plural(summary.epochs_done, 'epoch')}; resume with `python -m training resume {run_dir}`"
    note = run.status().resume_note
    snapshots = _snapshots_note(run, summary.epochs_done)
    print(text + (f"\nnote: {note}" if note else "") + (f"\n{snapshots}" if snapshots else ""))
    return 0 if summary.state in (RunState.FINISHED, RunState.STOPPED) else EXIT_FAILED


def _snapshots_note(run: Run, epochs_done: int) -> str | None:
    """What --keep-last kept, and why fewer than asked when the run stopped before its last epoch."""
    from fer_core.run_layout import SNAPSHOTS_DIR
    from training.runs import plural, snapshot_epochs

    settings = run.config().settings
    if not settings.keep_last:
        return None
    kept = list(snapshot_epochs(run.path / SNAPSHOTS_DIR))
    if not kept:
        return f"snapshots: none kept (--keep-last {settings.keep_last}): no epoch was completed"
    epochs = f"epoch {kept[0]}" if len(kept) == 1 else f"epochs {kept[0]}-{kept[-1]}"
    text = f"snapshots: {plural(len(kept), 'model')} of the last epochs ({epochs}) in {run.path / SNAPSHOTS_DIR}"
    if len(kept) < settings.keep_last:
        state = run.status().state
        if state == RunState.FINISHED and epochs_done < settings.epochs:
            why = (
                f"early stopping ended the run after {plural(epochs_done, 'epoch')} of {settings.epochs} "
                f"(--patience {settings.patience})"
            )
        else:
            why = f"the run ended ({state}) after {plural(epochs_done, 'epoch')}"
        text += f"; {settings.keep_last} were asked for, but {why}"
    return text


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fer_core.datasets import resolve_dataset
    from fer_core.model_store import resolve_model_path
    from fer_core.serving import checked_lite_model
    from training.finish import evaluate_served
    from training.model_files import check_keras_file

    model_path = resolve_model_path(args.model)
    if model_path.suffix == ".keras":
        check_keras_file(model_path)  # says what is wrong with a bad file before its LiteRT copy is checked
    checked_lite_model(model_path)  # a model that cannot be served is refused before the data loads
    dataset = resolve_dataset(args.data, split=args.split).split(args.split)
    report, _ = evaluate_served(model_path, dataset, tta=args.tta)
    report.update(model=str(model_path), data=str(args.data), split=args.split, tta=args.tta)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"model {model_path}\ndata {args.data} [{args.split}], n={report['n']}")
    calibration = report["calibration"]
    print(f"accuracy {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   (LiteRT, as the app runs it)")
    print(
        f"calibration: temperature {calibration['temperature']:.3f}, expected calibration error "
        f"{calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after"
    )
    print(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for emotion, scores in report["per_class"].items():
        print(
            f"{emotion:<10}{scores['precision']:>10.3f}{scores['recall']:>10.3f}{scores['f1']:>10.3f}{scores['support']:>9}"
        )
    print("confusion (rows true, columns predicted):")
    for emotion, row in zip(report["labels"], report["confusion"], strict=True):
        print(f"{emotion:<10}" + "".join(f"{value:>6}" for value in row))
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from fer_core.model_store import resolve_model_path
    from fer_core.serving import lite_path, served_files
    from training.averaging import combine_models
    from training.export import save_served
    from training.finish import accuracy_on, export_served
    from training.model_files import check_destination, check_finite_weights, check_keras_file, load_keras_model

    if args.output.suffix != ".keras":
        raise ValueError(f"{args.output} must end in .keras")
    for destination in served_files(args.output):  # before any work: a folder, a read-only place, /proc
        check_destination(destination)
    if args.output.exists() and not args.overwrite:
        raise ValueError(f"{args.output} exists: pass --overwrite to replace it")
    paths = [resolve_model_path(path) for path in args.models]
    for path in paths:  # every input, before minutes of loading data
        check_keras_file(path)
        check_finite_weights(path)
    split = _validation_split(paths, seed=args.seed, val_fraction=args.val_fraction)
    train, val = _checked_split(args.data, split)
    models = [load_keras_model(path) for path in paths]
    for path, model in zip(paths, models, strict=True):
        if "backbone" in {layer.name for layer in model.layers}:  # a checkpoint of the neutral path
            raise ValueError(
                f"{path} is a training graph (augmentation, crop or teachers around the network): average the "
                "runs' exported model.keras files instead"
            )

    inputs = [
        {"model": str(path), "val_accuracy": accuracy_on(model, val)} for path, model in zip(paths, models, strict=True)
    ]
    combined = combine_models(models, train.images, recalibrate=args.recalibrate)  # refuses non-finite weights
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temperature = save_served(combined, args.output, lambda staged: export_served(staged, val))  # all or nothing
    report = {
        "inputs": inputs,
        "output": str(args.output),
        "val_accuracy": accuracy_on(combined, val),
        "recalibrated_on": len(train) if args.recalibrate else 0,
        "val_faces": len(val),
        "seed": split.validation_seed,
        "val_fraction": split.val_fraction,
        "served": str(lite_path(args.output)),
        "temperature": temperature,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    for row in inputs:
        print(f"val accuracy {row['val_accuracy']:.4f}  {row['model']}")
    what = "average" if len(models) > 1 else "copy"
    recalibrated = f", batch norm re-estimated on {len(train):,} training faces" if args.recalibrate else ""
    print(f"val accuracy {report['val_accuracy']:.4f}  {args.output} ({what}{recalibrated})")
    print(f"served copy {report['served']} (calibration temperature {temperature:.3f})")
    return 0


def _validation_split(paths: list[Path], *, seed: int | None, val_fraction: float | None) -> TrainConfig:
    """The seed and validation share to hold out, as a checked TrainConfig: those given, else those
    of the runs the models come from (a model inside a run folder), else the training defaults.
    Other validation faces would include faces the models were trained on."""
    from fer_core.records import RecordError
    from training.config import config_from_mapping
    from training.runs import Run

    used = set()
    for path in paths:
        if not is_run_folder(path.parent):
            continue
        try:
            settings = Run(path.parent).config().settings
        except RecordError as error:
            raise ValueError(f"cannot tell which faces {path} was validated on: {error}") from None
        used.add((settings.validation_seed, settings.val_fraction))
    if len(used) > 1 and (seed is None or val_fraction is None):
        raise ValueError(
            f"the models were trained with different validation splits (split seed, share: {sorted(used)}); "
            "pass --seed and --val-fraction"
        )
    run_seed, run_fraction = used.pop() if used else (None, None)
    chosen = {
        "split_seed": seed if seed is not None else run_seed,
        "val_fraction": val_fraction if val_fraction is not None else run_fraction,
    }
    return config_from_mapping({key: value for key, value in chosen.items() if value is not None})


def _checked_split(data: str, split: TrainConfig) -> tuple[FaceDataset, FaceDataset]:
    """The train and validation faces of ``data`` as ``split`` holds them out, with the checks of
    ``train``: data a classifier cannot be trained and validated on is refused here too (with one face
    per class no face is left to validate or calibrate on)."""
    from fer_core.datasets import resolve_dataset
    from training.splits import check_training_split, configured_split

    train, val = configured_split(resolve_dataset(data), split)
    try:
        check_training_split(train, val)
    except DatasetError as error:
        raise DatasetError(f"--data {data}: {error}") from None
    return train, val


def cmd_export(args: argparse.Namespace) -> int:
    from fer_core.serving import lite_path, read_serving_record, served_files
    from training import runs
    from training.export import export_tflite
    from training.finish import export_model, export_served
    from training.model_files import check_destination, check_keras_file

    model_path: Path = args.model
    data = args.data
    checkpoint: Path | None = None  # a run's best checkpoint to export first, when it has no model.keras yet
    if is_run_folder(model_path):
        settings = runs.Run(model_path).config().settings
        if not (model_path / run_layout.EXPORTED_MODEL).is_file():
            checkpoint = model_path / run_layout.BEST_CHECKPOINT
            if not checkpoint.is_file():
                raise ValueError(f"{model_path} has no model yet: let the run finish an epoch")
        model_path = model_path / run_layout.EXPORTED_MODEL
        data = data or settings.data
    elif model_path.suffix != ".keras":
        raise ValueError(f"{model_path} is neither a .keras file nor a run folder")
    else:
        check_keras_file(model_path)
    # Everything is checked before any work: where the files go, then the data.
    for destination in served_files(model_path)[0 if checkpoint else 1 :]:
        check_destination(destination)
    val = None
    if data:
        split = _validation_split([model_path], seed=args.seed, val_fraction=args.val_fraction)
        _, val = _checked_split(data, split)
    if args.quantize != "float32" and val is None:
        raise ValueError("a quantized copy is checked on the validation faces: give --data (or a run folder)")
    if checkpoint is not None:
        export_model(checkpoint, model_path, settings.arch, tta=settings.tta)
    if val is not None:
        temperature = export_served(model_path, val, quantization=args.quantize)
    else:
        temperature = 1.0
        export_tflite(model_path, temperature=temperature)
    record = read_serving_record(model_path)
    if record.quantized:
        agreement = (
            f"{record.quantization} quantization: the top emotion of {model_path.name} on {record.agreement:.1%} "
            f"of {record.check_faces:,} validation faces, accuracy {record.accuracy_delta * 100:+.2f} points"
        )
    else:
        agreement = f"agrees with {model_path.name} within {record.max_difference:.1g} on {record.check_faces} faces"
    print(f"wrote {lite_path(model_path)}: {agreement}; calibration temperature {temperature:.3f}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import dataclasses

    from fer_core.settings import default_runs_dir
    from training.runs import list_runs

    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if args.runs_dir:  # a folder asked for by name must be one (the default may not exist yet: no runs)
        problem = _runs_folder_problem(runs_dir)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_FAILED
    rows = []
    for run in list_runs(runs_dir):
        row = dataclasses.asdict(run.summary())
        rows.append({"run": row.pop("name"), **row})
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no runs yet: start one with `python -m training train --data demo`")
        return 0
    # val: the kept model's (after batch-norm re-estimation); best epoch: the best measured while training
    print(f"{'run':<34}{'state':<10}{'arch':<8}{'epochs':>7}{'val':>8}{'best epoch':>12}{'test':>8}")
    for row in rows:
        if row["problem"]:
            print(f"{row['run']:<34}unreadable: {row['problem']}")
            continue
        val, best, test = (
            f"{row[key]:.4f}" if row[key] is not None else "-"
            for key in ("val_accuracy", "best_val_accuracy", "test_accuracy")
        )
        print(
            f"{row['run']:<34}{row['state'] or '?':<10}{row['arch'] or '?':<8}{row['epochs_done']:>7}"
            f"{val:>8}{best:>12}{test:>8}"
        )
    return 0


def _runs_folder_problem(runs_dir: Path) -> str | None:
    """Why ``runs_dir`` cannot be listed as a runs folder, or None."""
    if not runs_dir.exists():
        return f"{runs_dir} does not exist: give the folder that holds the runs (--run-dir)"
    if not runs_dir.is_dir():
        return f"{runs_dir} is not a folder: give the folder that holds the runs (--run-dir)"
    try:
        next(runs_dir.iterdir(), None)
    except OSError as error:
        return f"{runs_dir} cannot be read: {error.strerror or error}"
    return None


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "average": cmd_average,
    "export": cmd_export,
    "runs": cmd_runs,
    "resume": cmd_resume,
    "finish": cmd_finish,
}
