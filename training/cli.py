"""``python -m training``: train, evaluate, list and resume runs from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fer_core.errors import FerError
from fer_core.run_layout import is_run_folder

if TYPE_CHECKING:
    from training.config import TrainConfig

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from fer_core.models import architectures
    from training.config import TrainConfig

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="python -m training", description="Train and evaluate FER models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model into a new run folder")
    train.add_argument(
        "--data", default=defaults.data, help="'demo', a FER2013 folder (Kaggle layout or class folders) or fer2013.csv"
    )
    train.add_argument("--config", type=Path, help="a TOML file of settings; flags given here override it")
    train.add_argument("--arch", choices=sorted(architectures()), help=f"architecture (default {defaults.arch})")
    train.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    train.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    train.add_argument("--lr", type=float, help="peak learning rate (default: the architecture's own)")
    train.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {defaults.weight_decay})")
    train.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="flip/shift/rotate/zoom/brightness/contrast (default on)",
    )
    train.add_argument(
        "--class-weights",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="softened inverse-frequency class weights (default on)",
    )
    train.add_argument("--label-smoothing", type=float, help=f"default {defaults.label_smoothing}")
    train.add_argument("--patience", type=int, help=f"early-stopping patience in epochs (default {defaults.patience})")
    train.add_argument(
        "--val-fraction", type=float, help=f"validation share carved from train (default {defaults.val_fraction})"
    )
    train.add_argument("--run-dir", dest="runs_dir", help="folder that holds the runs (default: runs/ in the project)")
    train.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    train.add_argument(
        "--strategy", choices=["default", "mirrored"], help="'mirrored': MirroredStrategy over all visible devices"
    )
    train.add_argument(
        "--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"], help="default auto"
    )
    train.add_argument("--max-steps-per-epoch", type=int, help="cap steps per epoch (quick trials)")
    train.add_argument(
        "--init-from",
        help="start from the weights of this .keras model or run folder (same architecture): fine-tuning",
    )
    train.add_argument(
        "--keep-last",
        type=int,
        help="also keep the model of each of the last N epochs in snapshots/ (for `average`; default 0)",
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

    listing = commands.add_parser("runs", help="list runs with status and best validation accuracy")
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
        "--val-fraction", type=float, help="as in training (default: the inputs' runs' own, else the training default)"
    )
    average.add_argument(
        "--seed", type=int, help="as in training: the same validation faces (default: the inputs' runs' own, else 42)"
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
    export.add_argument("--val-fraction", type=float, help="as in training (default: the run's own, else 0.1)")
    export.add_argument("--seed", type=int, help="as in training (default: the run's own, else 42)")

    resume = commands.add_parser("resume", help="continue a run from its last epoch checkpoint")
    resume.add_argument("run", type=Path, help="the run folder")
    resume.add_argument("--launched", action="store_true", help=argparse.SUPPRESS)  # by training.launcher
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except (FerError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import TrainConfig, config_from_mapping, load_config_file
    from training.runs import Run
    from training.trainer import train

    if args.into is not None:
        settings = Run(args.into).config().get("settings")
        if not settings:
            raise ValueError(f"{args.into} is not a run folder (no config.json with settings)")
        return _report_run(train(config_from_mapping(settings), args.into))
    config = load_config_file(args.config) if args.config else TrainConfig()
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "config", "into") and value is not None
    }
    config = config_from_mapping(overrides, config)
    run_dir = train(config)
    return _report_run(run_dir)


def cmd_resume(args: argparse.Namespace) -> int:
    from training.trainer import resume

    if not is_run_folder(args.run):
        raise ValueError(f"{args.run} is not a run folder (no config.json)")
    return _report_run(resume(args.run, launched=args.launched))


def _report_run(run_dir: Path) -> int:
    from training.runs import Run

    run = Run(run_dir)
    status = run.status()
    metrics = run.metrics()
    summary = f"run {run_dir} {status.get('state')}"
    if metrics:
        summary += f": {metrics['split']} accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}"
    elif status.get("state") == "stopped":
        summary += f" after {len(run.history()['epochs'])} epoch(s); resume with `python -m training resume {run_dir}`"
    print(summary)
    return 0 if status.get("state") in ("finished", "stopped") else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fer_core.datasets import resolve_dataset
    from fer_core.inference import resolve_model_path
    from training.trainer import evaluate_served

    model_path = resolve_model_path(args.model)
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
    import keras

    from fer_core.datasets import resolve_dataset
    from fer_core.inference import resolve_model_path
    from fer_core.serving import lite_path
    from training.averaging import combine_models
    from training.trainer import accuracy_on, export_served, save_model_atomic, split_for_training

    if args.output.exists() and not args.overwrite:
        raise ValueError(f"{args.output} exists: pass --overwrite to replace it")
    if args.output.suffix != ".keras":
        raise ValueError(f"{args.output} must end in .keras")
    paths = [resolve_model_path(path) for path in args.models]
    split = _validation_split(paths, seed=args.seed, val_fraction=args.val_fraction)
    train, val = split_for_training(resolve_dataset(args.data), split.val_fraction, split.seed)
    models = [keras.models.load_model(path, compile=False) for path in paths]

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
    from training.config import TrainConfig, config_from_mapping
    from training.runs import Run

    used = set()
    for path in paths:
        settings = Run(path.parent).config().get("settings") if is_run_folder(path.parent) else None
        if isinstance(settings, dict):
            defaults = TrainConfig()
            used.add((settings.get("seed", defaults.seed), settings.get("val_fraction", defaults.val_fraction)))
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
        run = runs.Run(model_path)
        settings = run.config().get("settings") or {}
        if not (model_path / runs.EXPORTED_MODEL).is_file():
            if not (model_path / runs.BEST_CHECKPOINT).is_file():
                raise ValueError(f"{model_path} has no model yet: let the run finish an epoch")
            export_model(model_path / runs.BEST_CHECKPOINT, model_path / runs.EXPORTED_MODEL, str(settings["arch"]))
        model_path = model_path / runs.EXPORTED_MODEL
        data = data or settings.get("data")
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
    print(f"{'run':<34}{'state':<10}{'arch':<8}{'epochs':>7}{'best val':>10}{'test':>8}")
    for row in rows:
        best = f"{row['best_val_accuracy']:.4f}" if row["best_val_accuracy"] is not None else "-"
        test = f"{row['test_accuracy']:.4f}" if row["test_accuracy"] is not None else "-"
        print(
            f"{row['run']:<34}{row['state'] or '?':<10}{row['arch'] or '?':<8}{row['epochs_done']:>7}{best:>10}{test:>8}"
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
