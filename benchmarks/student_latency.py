"""Batch-1 latency of a teacher and any number of students, timed in blocks that cycle through them.

For comparing student shapes (sweep results time each student in its own run):

    .venv/bin/python benchmarks/student_latency.py --teacher runs/bench/sara/bilstm/teacher \\
        --sentences runs/bench/sara/data/sara/test.yml runs/bench/sara/tinybert/student runs/sweeps/sara-tinybert/tb_4x128/student

Prints one line per model and saves benchmarks/results/student_latency.json.
"""
import argparse
import datetime
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rasa_kd.openblas import choose_kernels, kernels_in_use  # noqa: E402

choose_kernels()  # before NumPy loads: kernels this CPU runs well (rasa_kd/openblas.py)

from rasa_kd.data.nlu_yaml import load_intent_examples  # noqa: E402
from rasa_kd.io_utils import write_json  # noqa: E402
from run_task import batch_1_in_blocks  # noqa: E402  (benchmarks/ is on the path when run as a script)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("students", nargs="+", type=Path)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--sentences", type=Path, required=True, help="a Rasa YAML file whose texts are timed")
    parser.add_argument("--calls", type=int, default=1000, help="timed sentences per model")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "student_latency.json")
    args = parser.parse_args()

    from rasa_kd.models.student import StudentModel
    from rasa_kd.models.teacher import Teacher

    models = {"teacher": Teacher.load(args.teacher)}
    for folder in args.students:
        models[str(folder)] = StudentModel.load(folder)
    texts = [text for text, _ in load_intent_examples(args.sentences)]
    for model in models.values():  # warm-up: graphs traced, lookup tables filled
        model.logits(texts[:256])
        for text in texts[:50]:
            model.logits([text])
    times = batch_1_in_blocks({name: model.logits for name, model in models.items()}, texts, args.calls)
    teacher = statistics.median(times["teacher"])
    rows = []
    for name, model in models.items():
        p50 = statistics.median(times[name])
        params = model.parameter_count() if hasattr(model, "parameter_count") else None
        rows.append({"model": name, "p50_ms": round(p50, 3), "speedup_vs_teacher": round(teacher / p50, 2), "params": params})
        print(f"{name}: p50 {p50:.3f} ms, {teacher / p50:.1f}x faster than the teacher" + (f", {params:,} parameters" if params else ""))
    write_json(args.output, {"date": datetime.date.today().isoformat(), "sentences": str(args.sentences),
                             "command": " ".join(["python", "benchmarks/student_latency.py", *sys.argv[1:]]),
                             "openblas_kernels": kernels_in_use(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
