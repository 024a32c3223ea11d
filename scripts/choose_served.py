"""Choose and export the served form of the trunks in some models for the fast and the quality budget
(see :mod:`training.served_choice` for the rule). The test split is not read: evaluate the results with
``python -m training evaluate`` or ``scripts/bench_model.py`` once, afterwards.

    python scripts/choose_served.py models/fer_default.keras models/fer_fast.keras --data <fer2013> --out DIR

writes ``DIR/candidates.json`` (every candidate: members, views, quantization, latency, validation
accuracy) and, per budget, ``DIR/fer_fast.keras`` and ``DIR/fer_default.keras`` with their checked,
calibrated LiteRT copies, ready to be copied into ``models/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


BUDGETS_MS = {"fer_fast": 1.5, "fer_default": 40.0}  # issue #17: fast (Live) and quality (everything else)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help=".keras models whose trunks are the material")
    parser.add_argument("--data", required=True, help="the data the trunks were trained on (validation is carved)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--views", default="center,flip,crops", help="view sets to try (comma-separated)")
    parser.add_argument("--quantizations", default="float32,dynamic", help="float32 and/or dynamic")
    args = parser.parse_args()

    from fer_core.data import load_dataset
    from training.export import as_float32
    from training.model_files import load_keras_model
    from training.served_choice import distinct_trunks, evaluate_candidates, export_choice, other_validation_splits
    from training.splits import split_for_training

    problems = other_validation_splits(args.models, args.seed, args.val_fraction)
    if problems:
        print("refused: " + "; ".join(problems), file=sys.stderr)
        return 2
    _, val = split_for_training(load_dataset(args.data), args.val_fraction, args.seed)
    trunks = distinct_trunks([(path, as_float32(load_keras_model(path))) for path in args.models])
    print(f"{len(val):,} validation faces; trunks: {', '.join(trunk.name for trunk in trunks)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, flush=True)  # noqa: E731
    candidates = evaluate_candidates(
        trunks,
        val,
        max(BUDGETS_MS.values()),
        views=args.views.split(","),
        quantizations=args.quantizations.split(","),
        log=log,
    )
    chosen = {}
    for stem, budget in BUDGETS_MS.items():
        candidate, temperature = export_choice(candidates, trunks, budget, val, args.out / f"{stem}.keras", log=log)
        chosen[stem] = {"budget_ms": budget, "temperature": temperature, **candidate.as_dict()}
        print(f"{stem}: {candidate.name}, {candidate.latency_ms:.2f} ms, validation {candidate.val_accuracy:.4f}")
    report = {
        "rule": "per budget, the best validation accuracy of the served copy among the candidates within it",
        "validation": {"faces": len(val), "val_fraction": args.val_fraction, "seed": args.seed},
        "tried": {"views": args.views.split(","), "quantizations": args.quantizations.split(",")},
        "candidates": [candidate.as_dict() for candidate in candidates],
        "chosen": chosen,
    }
    (args.out / "candidates.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
