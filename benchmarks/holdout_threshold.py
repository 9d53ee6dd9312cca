"""What the student's threshold picked without a dev split (on the training examples kept out of its
transfer set, student.json's `fallback_threshold`) does on test, against Rasa's default
FallbackClassifier threshold 0.3 and the oracle (95% of the test answers kept): in-scope answers kept
and out-of-scope messages caught.

    .venv/bin/python benchmarks/holdout_threshold.py --tag oe-holdout
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNS = ROOT / "runs" / "fewshot"
SETS = {  # set: (test file, out-of-scope file)
    "example_bot": (ROOT / "example_bot" / "tests" / "test_nlu.yml", ROOT / "example_bot" / "tests" / "out_of_scope.yml"),
    "snips-10-s0": (RUNS / "data" / "snips-10-s0" / "test.yml", ROOT / "runs" / "oos" / "snips_out_of_scope.txt"),
    "saranoos-10-s0": (RUNS / "data" / "sara-10-s0" / "test-no-oos.yml", RUNS / "data" / "sara-10-s0" / "out_of_scope.txt"),
}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="oe-holdout", help="fewshot.py tag whose BiLSTM students to read")
    args = parser.parse_args(argv)

    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.confidence import read_out_of_scope, top_intents
    from rasa_kd.models.student import StudentModel

    for name, (test, out_of_scope) in SETS.items():
        student = StudentModel.load(RUNS / args.tag / name / "bilstm" / "student")
        _, top = top_intents(student, [t for t, _ in load_intent_examples(test)])
        _, out = top_intents(student, read_out_of_scope(out_of_scope))
        picked = student.record["fallback_threshold"]
        for label, threshold in ((f"picked on {picked['messages']}", picked["threshold"]), ("rasa 0.3", 0.3),
                                 ("oracle", float(np.quantile(top, 0.05)))):
            print(f"{name:16s} {label:14s} {threshold:.2f} kept {100 * (top >= threshold).mean():.1f}% "
                  f"caught {100 * (out < threshold).mean():.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
