"""Could a teacher be calibrated without held-out messages? Its temperature fitted on rule-made copies of
its training sentences (their source intent as label; it trained on the originals, never on the copies),
then its in-scope test ECE at that temperature, at 1 and at the oracle fitted on test itself:

    .venv/bin/python benchmarks/teacher_temperature.py runs/fewshot/d1127/sara-20-s0/bilstm ...

Results: benchmarks/results/confidence/teacher-temperature.json (benchmarks/NOTES.md, "Students calibrated
to their teachers": not adopted).
"""
import argparse
import datetime
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import write_json  # noqa: E402

COPIES = 3  # rule-made copies per training sentence


def teacher_temperatures(run: Path) -> dict:
    """ECE of ``run``'s teacher on its test split at T = 1, at T fitted on copies, at the test's own T."""
    from rasa_kd.distill.confidence import expected_calibration_error, fit_temperature
    from rasa_kd.distill.config import load_config
    from rasa_kd.distill.pipeline import Distillation, _rule_augmenter
    from rasa_kd.models.predictions import softmax
    from rasa_kd.models.teacher import Teacher

    config = load_config(run / "config.yml", {})
    teacher = Teacher.load(Path(config.teacher.path) if config.teacher.path else run / "teacher")
    splits = Distillation(config, run, progress=False).splits  # read only: nothing is written into the run
    texts, intents = splits["train"]
    rng = np.random.default_rng(7)
    augmenter = _rule_augmenter(teacher, config.transfer_set.rules, rng)
    picks = rng.integers(0, len(texts), size=COPIES * len(texts))
    index = {label: i for i, label in enumerate(teacher.labels)}
    gold = np.array([index.get(intents[i], -1) for i in picks])
    known = gold >= 0
    fitted = fit_temperature(teacher.logits([augmenter(texts[i]) for i in picks])[known], np.eye(len(index))[gold[known]])
    test_texts, test_intents = splits["test"]
    test_gold = np.array([index.get(i, -1) for i in test_intents])
    logits = teacher.logits(test_texts)
    oracle = fit_temperature(logits[test_gold >= 0], np.eye(len(index))[test_gold[test_gold >= 0]])

    def ece(temperature: float) -> float:
        probabilities = softmax(logits, temperature)
        return expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == test_gold)

    return {"run": str(run), "copies": int(known.sum()), "accuracy": float((logits.argmax(axis=1) == test_gold).mean()),
            "ece": ece(1.0), "fitted_temperature": fitted, "ece_fitted": ece(fitted), "oracle_temperature": oracle,
            "ece_oracle": ece(oracle)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="distillation run folders (their teacher and config)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "confidence")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        row = teacher_temperatures(run)
        rows.append(row)
        print(f"{run}: ECE {row['ece']:.3f}; T {row['fitted_temperature']:.2f} on copies: {row['ece_fitted']:.3f}; "
              f"oracle T {row['oracle_temperature']:.2f}: {row['ece_oracle']:.3f}", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/teacher_temperature.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(args.results / "teacher-temperature.json", {"date": datetime.date.today().isoformat(), "command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
