"""Could the calibration's sentences pick the fallback threshold? For each saved few-shot set (its students
calibrated as a run now does it), the threshold keeping 95% of the top confidences on: the examples kept out of
the transfer set (what a run without dev recorded before 2026-11-27, night), all of them (their lowest confidence:
what it records now), those with their rule-made copies (the calibration's sentences), the copies alone, the two
weighing half each; and the share of test answers each keeps, and of out-of-scope messages it catches.

    .venv/bin/python benchmarks/threshold_copies.py example_bot sara-10-s0 snips-10-s0 ...
    .venv/bin/python benchmarks/threshold_copies.py --work runs/fewshot/d1127-now sara-20-s0   # another run folder

Results: benchmarks/results/confidence/threshold-copies.json (benchmarks/NOTES.md, "The threshold without a dev
split": all the kept-back examples adopted, the copies not).
"""
import argparse
import datetime
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.io_utils import read_json, write_json  # noqa: E402


def out_of_scope_file(name: str) -> Optional[Path]:
    """The out-of-scope test messages of a set, as docs/confidence.md names them (none for Sara with the intent)."""
    if name == "example_bot":
        return ROOT / "example_bot" / "tests" / "out_of_scope.yml"
    return ROOT / "runs" / "oos" / "snips_out_of_scope.txt" if name.startswith("snips") else None


def threshold_balanced(held: np.ndarray, copies: np.ndarray, keep: float = 0.95) -> float:
    """The highest threshold keeping ``keep`` of a mix in which the kept-back examples and their copies weigh half each."""
    values = np.concatenate([held, copies])
    weights = np.concatenate([np.full(held.size, 0.5 / held.size), np.full(copies.size, 0.5 / copies.size)])
    order = np.argsort(values)
    dropped = np.cumsum(weights[order])  # weight at or below each value, lowest first
    # Drop the lowest values while what stays still weighs at least ``keep``.
    return float(values[order][np.searchsorted(dropped, 1.0 - keep + 1e-12, side="left")]) if held.size and copies.size else float("nan")


def thresholds(work: Path, name: str) -> dict:
    """Per student of set folder ``work``: each held-out choice's threshold, test answers kept, out of scope caught."""
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill import confidence as conf
    from rasa_kd.distill.config import load_config
    from rasa_kd.distill.pipeline import Distillation
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    test = ROOT / "example_bot" / "tests" / "test_nlu.yml" if name == "example_bot" else work.parent.parent / "data" / name / "test.yml"
    texts = [t for t, _ in load_intent_examples(test)]
    oos_path = out_of_scope_file(name)
    oos = conf.read_out_of_scope(oos_path) if oos_path and oos_path.is_file() else []
    teacher = Teacher.load(work / "bilstm" / "teacher")
    rows = {}
    for kind in ("bilstm", "tinybert"):
        student = StudentModel.load(work / kind / "student")
        # Read only: the constructor writes nothing into the run's folder.
        run = Distillation(load_config(work / kind / "config.yml", {}), work / kind, progress=False)
        if "calibration" not in student.record:
            run.calibrate_student(student, teacher)
        _, held, pairs = run.calibration_sentences(teacher)
        copies = [text for text, _ in pairs]
        held_conf, copies_conf = np.asarray(conf.top_intents(student, held)[1]), np.asarray(conf.top_intents(student, copies)[1])
        test_conf = np.asarray(conf.top_intents(student, texts)[1])
        oos_conf = np.asarray(conf.top_intents(student, oos)[1]) if oos else None
        row = {"oracle": conf.threshold_keeping(test_conf), "kept_back": len(held), "copies": len(copies)}
        choices = {"kept_back": conf.threshold_keeping(held_conf), "kept_back_all": conf.threshold_keeping(held_conf, 1.0),
                   "with_copies": conf.threshold_keeping(np.concatenate([held_conf, copies_conf])),
                   "copies_alone": conf.threshold_keeping(copies_conf), "balanced": threshold_balanced(held_conf, copies_conf)}
        for choice, threshold in choices.items():
            row[choice] = {"threshold": threshold, "test_kept": float((test_conf >= threshold).mean()),
                           "out_of_scope_caught": None if oos_conf is None else float((oos_conf < threshold).mean())}
        rows[kind] = row
        print(name, kind, f"oracle {row['oracle']:.2f}", "; ".join(
            f"{choice} {row[choice]['threshold']:.2f} keeps {100 * row[choice]['test_kept']:.0f}%"
            + ("" if oos_conf is None else f", catches {100 * row[choice]['out_of_scope_caught']:.0f}%")
            for choice in choices), flush=True)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", help="few-shot set names (folders of --work)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "fewshot" / "d1127")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "confidence" / "threshold-copies.json")
    args = parser.parse_args(argv)
    results = read_json(args.results) if args.results.is_file() else {}
    command = "python benchmarks/threshold_copies.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for name in args.sets:
        results[name] = {"date": datetime.date.today().isoformat(), "command": command, "work": str(args.work / name),
                         "students": thresholds(args.work / name, name)}
        write_json(args.results, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
