"""What should the student's temperature be fitted on? A run fits it (``student.training.calibrate``) to
match the teacher's softmax on the sentences the student never trained on plus rule-made copies of them
(``Distillation.calibration_sentences``); here the same fit on the held-out sentences alone and on the
copies alone, and the oracle fitted on the test split's gold labels; for each, the student's test ECE and
NLL at that temperature:

    .venv/bin/python benchmarks/student_temperature.py runs/fewshot/q33-defaults/sara-40-s0/bilstm ...

Results: benchmarks/results/confidence/student-temperature.json (benchmarks/NOTES.md, "The student's
temperature fitted on the kept-back messages alone": not adopted).
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

FITS = ("run", "held_out", "copies", "oracle")


def student_temperatures(run: Path) -> dict:
    """Test ECE and NLL of ``run``'s student at the temperature of each fit in FITS."""
    from rasa_kd.distill.confidence import expected_calibration_error, fit_temperature
    from rasa_kd.distill.config import load_config
    from rasa_kd.distill.pipeline import Distillation
    from rasa_kd.models.predictions import softmax
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    config = load_config(run / "config.yml", {})
    distillation = Distillation(config, run, progress=False)  # read only: nothing is written into the run
    teacher = Teacher.load(Path(config.teacher.path) if config.teacher.path else run / "teacher")
    student = StudentModel.load(run / "student")
    student.temperature = 1.0  # raw logits; each fit below divides them by its own T
    split, texts, copies = distillation.calibration_sentences(teacher)
    held_out = (student.logits(texts), softmax(teacher.logits(texts)))
    copied = (student.logits([text for text, _ in copies]), softmax(teacher.logits([shown for _, shown in copies])))

    test_texts, test_intents = distillation.splits["test"]
    index = {label: i for i, label in enumerate(student.labels)}
    gold = np.array([index.get(intent, -1) for intent in test_intents])
    known = gold >= 0  # test intents the student has no label for count as wrong in ECE, not in NLL
    logits = student.logits(test_texts)
    temperatures = {
        "run": fit_temperature(np.concatenate([held_out[0], copied[0]]), np.concatenate([held_out[1], copied[1]])),
        "held_out": fit_temperature(*held_out),
        "copies": fit_temperature(*copied),
        "oracle": fit_temperature(logits[known], np.eye(len(index))[gold[known]]),
    }
    row = {"run": str(run), "fitted_on": split, "held_out": len(texts), "copies": len(copies),
           "accuracy": float((logits.argmax(axis=1) == gold).mean()), "recorded_temperature": StudentModel.load(run / "student").temperature}
    for fit, temperature in temperatures.items():
        probabilities = softmax(logits, temperature)
        nll = -np.log(np.clip(probabilities[known, gold[known]], 1e-12, None)).mean()
        row[fit] = {"temperature": temperature, "nll": float(nll),
                    "ece": expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == gold)}
    return row


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="distillation run folders (teacher, student, config)")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "confidence")
    args = parser.parse_args(argv)
    rows = []
    for run in args.runs:
        row = student_temperatures(run)
        rows.append(row)
        print(f"{run}: " + "; ".join(f"{fit} T {row[fit]['temperature']:.3f} ECE {row[fit]['ece']:.4f} NLL {row[fit]['nll']:.4f}"
                                     for fit in FITS), flush=True)
    for fit in FITS:
        print(f"mean over {len(rows)} runs, {fit}: ECE {np.mean([r[fit]['ece'] for r in rows]):.4f}, "
              f"NLL {np.mean([r[fit]['nll'] for r in rows]):.4f}")
    args.results.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/student_temperature.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(args.results / "student-temperature.json", {"date": datetime.date.today().isoformat(), "command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
