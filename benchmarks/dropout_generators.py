"""Does drawing dropout masks from checkpointable tf.random.Generator objects (what makes a resumed run
exact) change what the teacher learns? The example bot's teacher, defaults, a few seeds, with Keras'
legacy dropout ops and with the generators, each in its own process (the switch is process-wide).

    .venv/bin/python benchmarks/dropout_generators.py --seeds 42 1

Prints held-out accuracy on example_bot/tests/test_nlu.yml; writes benchmarks/results/dropout_generators.json.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(mode: str, seed: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    import rasa_kd.distill.teacher_training as teacher_training
    from rasa_kd.data.nlu_yaml import load_intent_examples
    from rasa_kd.models.teacher import TeacherSettings

    if mode == "legacy":
        teacher_training.use_checkpointable_dropout = lambda: None
    train = load_intent_examples(ROOT / "example_bot" / "data" / "nlu.yml")
    test = load_intent_examples(ROOT / "example_bot" / "tests" / "test_nlu.yml")
    started = time.perf_counter()
    teacher, _ = teacher_training.fine_tune_teacher([t for t, _ in train], [i for _, i in train],
                                                    TeacherSettings(random_seed=seed), progress=False)
    predicted = teacher.logits([t for t, _ in test]).argmax(axis=1)
    accuracy = float(np.mean([teacher.labels[p] == gold for p, (_, gold) in zip(predicted, test)]))
    return {"mode": mode, "seed": seed, "accuracy": accuracy, "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    parser.add_argument("--one", nargs=2, metavar=("MODE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]))))
        return 0
    env = {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2"}
    rows = []
    for mode in ("legacy", "generators"):
        for seed in args.seeds:
            out = subprocess.run([sys.executable, __file__, "--one", mode, str(seed)], env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{mode:<11} seed {seed:>3}: teacher held-out accuracy {100 * rows[-1]['accuracy']:.1f}% ({rows[-1]['seconds']} s)", flush=True)
    path = ROOT / "benchmarks" / "results" / "dropout_generators.json"
    path.write_text(json.dumps({"date": datetime.date.today().isoformat(), "command": "python benchmarks/dropout_generators.py "
                                + " ".join(sys.argv[1:]), "rows": rows}, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
