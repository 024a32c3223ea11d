"""``python -m training``: train, evaluate, list and resume runs from the command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_core import native_log
from fer_core.errors import FerError
from fer_core.run_layout import LAST_CHECKPOINT, is_run_folder
from training.errors import TrainingFailed

if TYPE_CHECKING:
    from training.config import TrainConfig

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
        help="as in training: the same validation faces (default: the inputs' runs' own, else 42)",
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
        "--seed", type=setting_type("seed"), help="as in training (default: the run's own, else the training default)"
    )

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


SETTING_PARSERS = {"int": int, "float": float, "float | None": float, "str": str}


def setting_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` for setting ``name``: converts the text and applies the setting's own
    bounds and choices (see training.config), so a bad flag is refused before anything starts."""
    from training.config import ConfigError, checked_value, kind_of

    convert = SETTING_PARSERS[kind_of(name)]

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_KIND_WORDS[kind_of(name)]}") from None
        try:
            return checked_value(name, value)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{name} ")) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


_KIND_WORDS = {"int": "an integer", "float": "a number", "float | None": "a number", "str": "text"}


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
        help_text = f"{declared.help} (default {shown})"
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
            metavar=None if choices else {"int": "N", "str": "TEXT"}.get(kind_of(name), "X"),
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
    with native_log.filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    native_log.VERBOSE = args.verbose
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


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import TrainConfig, config_from_mapping, load_config_file
    from training.runs import RecordError, Run
    from training.trainer import train

    if args.into is not None:  # started by training.launcher, which made the run folder
        try:
            settings = Run(args.into).config().settings
        except RecordError as error:
            raise ValueError(f"cannot train into {args.into}: {error}") from None
        return _report_run(train(settings, args.into))
    config = load_config_file(args.config) if args.config else TrainConfig()
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "into", "allow_concurrent", "verbose") and value is not None
    }
    config = config_from_mapping(overrides, config)
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
    if args.launched or args.allow_concurrent:  # the launcher has checked (and marked the run queued)
        return _report_run(resume(args.run, launched=args.launched))
    from training import launcher, runs

    run = runs.Run(args.run)
    if run.status().state == "finished":
        raise ValueError(f"{run.name} has already finished; start a new run to train further")
    with launcher.launch_lock(args.run.parent):  # checked and claimed at once, as the app's Resume does
        _refuse_if_busy(args.run.parent, besides=args.run)
        if run.status().state in runs.ACTIVE_STATES:
            raise ValueError(f"{run.name} is still running")
        runs.update_status(args.run, state="queued", **runs.process_identity(os.getpid()), error=None)
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
    elif summary.state == "stopped":
        text += f" after {plural(summary.epochs_done, 'epoch')}; resume with `python -m training resume {run_dir}`"
    note = run.status().resume_note
    print(text + (f"\nnote: {note}" if note else ""))
    return 0 if summary.state in ("finished", "stopped") else EXIT_FAILED


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fer_core.datasets import resolve_dataset
    from fer_core.inference import resolve_model_path
    from training.model_files import check_keras_file
    from training.trainer import evaluate_served

    model_path = resolve_model_path(args.model)
    if model_path.suffix == ".keras":
        check_keras_file(model_path)  # says what is wrong with a bad file before its LiteRT copy is checked
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
    from fer_core.datasets import resolve_dataset
    from fer_core.inference import resolve_model_path
    from fer_core.serving import lite_path
    from training.averaging import combine_models
    from training.model_files import check_keras_file, load_keras_model, save_model_atomic
    from training.trainer import accuracy_on, export_served, split_for_training

    if args.output.exists() and not args.overwrite:
        raise ValueError(f"{args.output} exists: pass --overwrite to replace it")
    if args.output.suffix != ".keras":
        raise ValueError(f"{args.output} must end in .keras")
    paths = [resolve_model_path(path) for path in args.models]
    for path in paths:
        check_keras_file(path)  # every input, before minutes of loading data
    split = _validation_split(paths, seed=args.seed, val_fraction=args.val_fraction)
    train, val = split_for_training(resolve_dataset(args.data), split.val_fraction, split.seed)
    models = [load_keras_model(path) for path in paths]

    inputs = [
        {"model": str(path), "val_accuracy": accuracy_on(model, val)} for path, model in zip(paths, models, strict=True)
    ]
    combined = combine_models(models, train.images, recalibrate=args.recalibrate)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_model_atomic(combined, args.output)
    temperature = export_served(args.output, val)
    report = {
        "inputs": inputs,
        "output": str(args.output),
        "val_accuracy": accuracy_on(combined, val),
        "recalibrated_on": len(train) if args.recalibrate else 0,
        "val_faces": len(val),
        "seed": split.seed,
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
    from training.config import config_from_mapping
    from training.runs import RecordError, Run

    used = set()
    for path in paths:
        if not is_run_folder(path.parent):
            continue
        try:
            settings = Run(path.parent).config().settings
        except RecordError as error:
            raise ValueError(f"cannot tell which faces {path} was validated on: {error}") from None
        used.add((settings.seed, settings.val_fraction))
    if len(used) > 1 and (seed is None or val_fraction is None):
        raise ValueError(
            f"the models were trained with different validation splits (seed, share: {sorted(used)}); "
            "pass --seed and --val-fraction"
        )
    run_seed, run_fraction = used.pop() if used else (None, None)
    chosen = {
        "seed": seed if seed is not None else run_seed,
        "val_fraction": val_fraction if val_fraction is not None else run_fraction,
    }
    return config_from_mapping({key: value for key, value in chosen.items() if value is not None})


def cmd_export(args: argparse.Namespace) -> int:
    from fer_core.datasets import resolve_dataset
    from fer_core.serving import lite_path, read_record
    from training import runs
    from training.export import export_tflite
    from training.trainer import export_model, export_served, split_for_training

    model_path: Path = args.model
    data = args.data
    if is_run_folder(model_path):
        settings = runs.Run(model_path).config().settings
        if not (model_path / runs.EXPORTED_MODEL).is_file():
            if not (model_path / runs.BEST_CHECKPOINT).is_file():
                raise ValueError(f"{model_path} has no model yet: let the run finish an epoch")
            export_model(model_path / runs.BEST_CHECKPOINT, model_path / runs.EXPORTED_MODEL, settings.arch)
        model_path = model_path / runs.EXPORTED_MODEL
        data = data or settings.data
    elif model_path.suffix != ".keras":
        raise ValueError(f"{model_path} is neither a .keras file nor a run folder")
    if data:
        split = _validation_split([model_path], seed=args.seed, val_fraction=args.val_fraction)
        _, val = split_for_training(resolve_dataset(data), split.val_fraction, split.seed)
        temperature = export_served(model_path, val)
    else:
        temperature = 1.0
        export_tflite(model_path, temperature=temperature)
    record = read_record(model_path)
    print(
        f"wrote {lite_path(model_path)}: agrees with {model_path.name} within {record.max_difference:.1g} on "
        f"{record.check_faces} faces; calibration temperature {temperature:.3f}"
    )
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import dataclasses

    from fer_core.settings import default_runs_dir
    from training.runs import list_runs

    rows = []
    for run in list_runs(Path(args.runs_dir) if args.runs_dir else default_runs_dir()):
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


COMMANDS = {
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "average": cmd_average,
    "export": cmd_export,
    "runs": cmd_runs,
    "resume": cmd_resume,
}
