"""Sara's `out_of_scope` intent as an ordinary intent or as outliers: teacher and BiLSTM of one few-shot
run scored on the in-scope test messages against the intent's test messages (top confidence as the
score; `benchmarks/confidence.py`'s figures), and how many of those a model answers `out_of_scope`.

    .venv/bin/python benchmarks/oos_intent.py runs/fewshot/defaults/sara-10-s0
    .venv/bin/python benchmarks/oos_intent.py runs/fewshot/oe-oosintent/sara-10-s0
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="a fewshot.py set folder (bilstm/teacher, bilstm/student)")
    parser.add_argument("--test", type=Path, default=ROOT / "runs" / "fewshot" / "data" / "sara-10-s0" / "test.yml")
    parser.add_argument("--intent", default="out_of_scope")
    args = parser.parse_args(argv)

    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.distill.confidence import confidence_scores, top_intents
    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    pairs = load_intent_examples(args.test)
    in_scope = [(t, i) for t, i in pairs if i != args.intent]
    out_of_scope = [t for t, i in pairs if i == args.intent]
    for name, model in (("teacher", Teacher.load(args.work / "bilstm" / "teacher")),
                        ("bilstm", StudentModel.load(args.work / "bilstm" / "student"))):
        predicted, top = top_intents(model, [t for t, _ in in_scope])
        out_predicted, out_top = top_intents(model, out_of_scope)
        correct = [p == g for p, (_, g) in zip(predicted, in_scope)]
        r = confidence_scores(top, correct, out_top)
        by_name = f"{100 * np.mean([p == args.intent for p in out_predicted]):.1f}%" if args.intent in model.labels else "-"
        print(f"{name}: in-scope accuracy {100 * np.mean(correct):.1f}, ECE {r['ece']:.3f}, AUROC {r['auroc']:.3f}, "
              f"caught at 95% kept {100 * r['out_of_scope_recall']:.1f}%, answered {args.intent} {by_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
